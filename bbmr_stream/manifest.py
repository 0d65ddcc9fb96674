"""Stream manifest: ``manifest.json`` describes a stream directory completely (nothing is guessed from
file names). Versioned; :func:`load` validates types, limits and paths so that a manifest can neither make
a player read outside its directory nor allocate unbounded memory.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from bbmr_stream.errors import ManifestError

SCHEMA_VERSION = 1
MAX_RENDITIONS = 64
MAX_SEGMENTS = 100_000
MAX_SIDE = 16384  # pixels, source and LR pictures
MAX_SEGMENT_BYTES = 1 << 30
MAX_SEGMENT_FRAMES = 3600  # frames per segment (2 min at 30 fps): bounds concealment and decode work
MAX_FPS = 1000
MATRICES = ("bt709", "bt601", "bt2020")
MAX_MODELS = 4096  # model files per rendition (a model stream: one per chunk of segments)
MAX_MODEL_BYTES = 16 << 20  # one model file (models.title.MAX_MODEL_BYTES)
RATE_PARTS = ("video", "map", "model")
MODEL_KINDS = ("plain-sr",)  # the families whose renditions may carry per-title models
CONTAINERS = ("fmp4", "mpegts")  # HLS segment formats: fragmented MP4 (CMAF-style, EXT-X-MAP) or MPEG-TS
MAX_INIT_BYTES = 1 << 20  # an fMP4 initialization segment (moov, no samples)
MAX_WEB_MODEL_BYTES = 64 << 20  # one ONNX graph for the browser player (OmniSR-light x2 at 1080p: ~1.6 MB)
WEB_ARCHS = ("fastsr", "omnisr")  # the networks a web model may be (models/archs.py names)
VIDEO_RANGES = ("SDR", "PQ", "HLG")  # HLS VIDEO-RANGE of a rendition (its transfer: BT.709-like, SMPTE 2084, ARIB B67)
MAX_AUDIO_TRACKS = 16


@dataclass
class ModelRef:
    """A per-title SR model file a rendition needs (models/title.py): the client fetches it before segment
    ``first_segment`` and uses it for ``segments`` segments from there."""

    file: str  # relative to the stream directory
    bytes: int
    sha256: str  # hex
    arch: str  # models/archs.py name of the network ("fastsr", "omnisr")
    scale: int
    first_segment: int
    segments: int
    base: str  # the shipped weights id it was fine-tuned from (the fallback when it cannot be used)


@dataclass
class InitRef:
    """An fMP4 rendition's initialization segment (ftyp + moov: the tracks and codec configuration, no media):
    the client fetches it once and prepends it to each media segment it decodes."""

    file: str  # relative to the stream directory
    bytes: int


@dataclass
class WebModelRef:
    """The client model of an SR rendition as an ONNX graph for the browser player (``bbmr-play --web``,
    player/web): the generic weights the rendition was measured with (``weights``), exported by the packager.
    ``input`` is the LR size it takes, ``[width, height]``, or None when the graph takes any size. Not in
    ``bitrate_kbps``: it is the browser's copy of the weights the Python player installs (one file per
    network, the same for every title: cached), like them it is not per-title data."""

    file: str  # relative to the stream directory
    bytes: int
    sha256: str  # hex
    arch: str  # WEB_ARCHS
    scale: int
    input: list | None = None  # [width, height] of a fixed-shape graph


@dataclass
class AudioTrack:
    """One audio stream of the source as an HLS alternative audio rendition (RFC 8216 4.3.4.1, EXT-X-MEDIA
    TYPE=AUDIO, one group for every video rendition): its own media playlist and segments (the manifest's
    container). The client plays the ``default`` one, or the one its user picks by ``language``."""

    playlist: str  # relative to the stream directory
    name: str  # NAME: the stream's title, else its language, else "Audio N"
    language: str | None  # the source's language tag (ISO 639-2, e.g. "eng"), None when untagged
    codecs: str  # RFC 6381, e.g. "mp4a.40.2"
    channels: int
    kbps: float  # its segments (and fMP4 init segment) * 8 / duration / 1000: downloaded beside any rendition
    peak_kbps: float  # the highest segment rate (part of every variant's BANDWIDTH)
    default: bool
    source_stream: int  # index among the source's audio streams
    copied: bool  # the source's coded audio as is (False: transcoded to AAC, said by a note)


@dataclass
class Segment:
    file: str  # relative to the stream directory
    duration_s: float
    bytes: int
    first_frame: int
    frames: int


@dataclass
class Rendition:
    name: str
    kind: str  # the rung family (bbmr_stream.family): "plain" | "plain-sr" | "uniform" | "bbmr"
    codec: str  # "h264" | "hevc"
    crf: float
    layout: str  # "atlas" | "planes" | "plain"
    scales: list[int]
    overall: int
    lr_width: int
    lr_height: int
    bitrate_kbps: float
    playlist: str
    segments: list[Segment]
    psnr_y: float | None = None  # mean PSNR-Y of the reconstruction (see Manifest.conventions)
    psnr_y_upscaler: str | None = None
    psnr_y_generic: float | None = None  # with per-title models: PSNR-Y with the generic weights (the fallback)
    niqe: float | None = None  # mean NIQE of the first measured frames (MATLAB niqe.m), None if not measured
    weights: dict | None = None  # {"id", "sha256"} the player should use, None for bicubic
    share: dict = field(default_factory=dict)  # fraction of blocks per scale over the stream
    pictures: list = field(default_factory=list)  # [width, height] of each video stream (planes: one per scale)
    codecs: str | None = None  # RFC 6381 CODECS of the first video stream (HLS master playlist)
    es_kbps: float | None = None  # bytes of the coded video (elementary streams, no container) * 8 / duration
    models: list[ModelRef] = field(default_factory=list)  # per-title SR models, in segment order
    parts_kbps: dict = field(default_factory=dict)  # bitrate_kbps split: "video" (segments and the fMP4 init
    # segment, less the SEI maps), "map" (scale-map SEI payloads), "model" (model files); bytes * 8 / duration / 1000
    init: InitRef | None = None  # fMP4: the initialization segment (None for MPEG-TS)
    refine: str | None = None  # LR refined through the client upscaler (models/hcd.py), e.g. "hcd3"; the
    # settings are in Manifest.conventions["refine"]; the player needs nothing (the LR is still a picture)
    web_model: WebModelRef | None = None  # the client model as ONNX for the browser player (plain-sr)
    video_range: str = "SDR"  # VIDEO_RANGES: PQ / HLG renditions carry the source's HDR signal (plain, 10-bit)
    bit_depth: int = 8  # of the coded samples (10: HEVC Main10 / H.264 High10)

    def model_for(self, segment: int) -> ModelRef | None:
        """The model that serves segment ``segment`` (None: the generic weights)."""
        return next((m for m in self.models if m.first_segment <= segment < m.first_segment + m.segments), None)

    def segment_model_bytes(self) -> list[float]:
        """Per segment, the model bytes it carries in the rate: each model's bytes spread over the segments it
        serves in proportion to their durations."""
        out = [0.0] * len(self.segments)
        for m in self.models:
            segs = range(m.first_segment, min(m.first_segment + m.segments, len(self.segments)))
            dur = sum(self.segments[i].duration_s for i in segs) or 1.0
            for i in segs:
                out[i] += m.bytes * self.segments[i].duration_s / dur
        return out

    def segment_extra_bytes(self) -> list[float]:
        """Per segment, the bytes besides its own file that it carries in the rate: its share of the model files
        (:meth:`segment_model_bytes`) and of the fMP4 init segment (spread over all segments by duration)."""
        out = self.segment_model_bytes()
        if self.init is not None:
            dur = sum(s.duration_s for s in self.segments) or 1.0
            out = [v + self.init.bytes * s.duration_s / dur for v, s in zip(out, self.segments)]
        return out


@dataclass
class Manifest:
    source: dict  # {"file", "width", "height", "fps": [num, den], "frames", "duration_s", "matrix", "full_range"}
    block: int
    overall: int
    scales: list[int]
    resize: str
    container: str  # CONTAINERS: "fmp4" (every rendition has an init segment) or "mpegts"
    segment_s: float
    realloc: str
    scorer: str
    allocator: str
    renditions: list[Rendition]
    conventions: dict = field(default_factory=dict)
    audio: list[AudioTrack] = field(default_factory=list)  # the source's audio streams, as HLS audio renditions
    version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _safe_rel(p: str, what: str) -> str:
    if not isinstance(p, str) or not p or "\x00" in p or "\\" in p:
        raise ManifestError(f"{what}: bad path {p!r}")
    pp = PurePosixPath(p)
    if pp.is_absolute() or any(part in ("..", "") for part in pp.parts) or p.startswith("~"):
        raise ManifestError(f"{what}: path {p!r} leaves the stream directory")
    return p


def _es_kbps(r: dict) -> float | None:
    """A rendition's optional elementary-stream rate: above 0, at most its rate as shipped."""
    v = r.get("es_kbps")
    return None if v is None else float(_num(v, "es_kbps", 1e-6, float(r["bitrate_kbps"]) + 0.01))


def _models(r: dict, n_segments: int) -> list[ModelRef]:
    """A rendition's model files: safe paths, bounded sizes, hex sha256, segment ranges in order without overlap."""
    ms = r.get("models", [])
    if not isinstance(ms, list) or len(ms) > MAX_MODELS:
        raise ManifestError(f"rendition {r.get('name')!r}: models must be a list of at most {MAX_MODELS}")
    if ms and r.get("kind") not in MODEL_KINDS:
        raise ManifestError(f"rendition {r.get('name')!r}: a {r.get('kind')} rendition has no per-title models")
    out, nxt = [], 0
    for m in ms:
        ref = ModelRef(_safe_rel(m["file"], "model"), int(_num(m["bytes"], "model bytes", 1, MAX_MODEL_BYTES)),
                       str(m["sha256"]), str(m["arch"]), int(_num(m["scale"], "model scale", 1, 16)),
                       int(_num(m["first_segment"], "model first_segment", 0, MAX_SEGMENTS)),
                       int(_num(m["segments"], "model segments", 1, MAX_SEGMENTS)), str(m["base"]))
        if ref.scale != r.get("overall"):
            raise ManifestError(f"model {ref.file}: x{ref.scale} for an x{r.get('overall')} rendition")
        if not re.fullmatch(r"[0-9a-f]{64}", ref.sha256):
            raise ManifestError(f"model {ref.file}: sha256 must be 64 lower-case hex digits")
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", ref.arch) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", ref.base):
            raise ManifestError(f"model {ref.file}: bad arch or base name")
        if ref.first_segment < nxt or ref.first_segment + ref.segments > n_segments:
            raise ManifestError(f"model {ref.file}: segments {ref.first_segment}+{ref.segments} overlap another "
                                f"model or pass the rendition's {n_segments} segments")
        nxt = ref.first_segment + ref.segments
        out.append(ref)
    return out


def _init(r: dict, container: str) -> InitRef | None:
    """An fMP4 rendition's init segment (required), none for MPEG-TS."""
    v = r.get("init")
    if (v is None) != (container == "mpegts"):
        raise ManifestError(f"rendition {r.get('name')!r}: an {container} rendition "
                            f"{'has no' if container == 'mpegts' else 'needs an'} init segment")
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ManifestError(f"rendition {r.get('name')!r}: init must be {{file, bytes}}")
    return InitRef(_safe_rel(v["file"], "init"), int(_num(v["bytes"], "init bytes", 1, MAX_INIT_BYTES)))


def _web_model(r: dict) -> WebModelRef | None:
    """A plain-sr rendition's optional ONNX client model: safe path, bounded size, hex sha256, a known network at
    the rendition's factor, a bounded fixed input size."""
    v = r.get("web_model")
    if v is None:
        return None
    name = r.get("name")
    if not isinstance(v, dict) or r.get("kind") != "plain-sr":
        raise ManifestError(f"rendition {name!r}: web_model is a {{file, bytes, sha256, arch, scale}} map of a "
                            "plain-sr rendition")
    ref = WebModelRef(_safe_rel(v["file"], "web_model"), int(_num(v["bytes"], "web_model bytes", 1,
                                                                  MAX_WEB_MODEL_BYTES)),
                      str(v["sha256"]), str(v["arch"]), int(_num(v["scale"], "web_model scale", 1, 16)))
    if not re.fullmatch(r"[0-9a-f]{64}", ref.sha256) or ref.arch not in WEB_ARCHS or ref.scale != r.get("overall"):
        raise ManifestError(f"rendition {name!r}: web_model needs a 64-hex sha256, an arch in "
                            f"{', '.join(WEB_ARCHS)} and the rendition's factor")
    inp = v.get("input")
    if inp is not None:
        if not (isinstance(inp, list) and len(inp) == 2):
            raise ManifestError(f"rendition {name!r}: web_model input is [width, height] or null")
        ref.input = [int(_num(x, "web_model input", 1, MAX_SIDE)) for x in inp]
    return ref


def _video_range(r: dict) -> str:
    v = r.get("video_range", "SDR")
    if v not in VIDEO_RANGES:
        raise ManifestError(f"rendition {r.get('name')!r}: video_range {v!r} is not one of {', '.join(VIDEO_RANGES)}")
    if v != "SDR" and r.get("kind") != "plain":
        raise ManifestError(f"rendition {r.get('name')!r}: an HDR ({v}) rendition is plain")
    return v


def _audio(v) -> list[AudioTrack]:
    """The audio renditions: a list (a manifest before them had one file name here, or nothing: no tracks)."""
    if v is None or isinstance(v, str):
        return []
    if not isinstance(v, list) or len(v) > MAX_AUDIO_TRACKS:
        raise ManifestError(f"audio: a list of at most {MAX_AUDIO_TRACKS} tracks")
    out = []
    for a in v:
        if not isinstance(a, dict):
            raise ManifestError("audio: each track is a map")
        lang = _token(a.get("language"), "audio language", r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?")
        name = a["name"]
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or any(c in name for c in '"\n\r'):
            raise ManifestError(f"audio name {name!r}: 1..64 characters, no quotes or line breaks")
        out.append(AudioTrack(_safe_rel(a["playlist"], "audio playlist"), name, lang,
                              _token(a["codecs"], "audio codecs", r"[A-Za-z0-9.]{3,40}"),
                              int(_num(a["channels"], "audio channels", 1, 64)),
                              float(_num(a["kbps"], "audio kbps", 0, 10**5)),
                              float(_num(a["peak_kbps"], "audio peak_kbps", 0, 10**6)), a["default"] is True,
                              int(_num(a["source_stream"], "audio source_stream", 0, 1000)), a["copied"] is True))
    return out


def _opt_db(r: dict, key: str) -> float | None:
    """An optional quality figure in dB: None, a number in [0, 1000], or +inf (a lossless picture)."""
    v = r.get(key)
    if v is None or v == math.inf:
        return v
    return float(_num(v, key, 0, 1000))


def _parts(r: dict) -> dict:
    parts = r.get("parts_kbps", {})
    if not isinstance(parts, dict) or not set(parts) <= set(RATE_PARTS):
        raise ManifestError(f"parts_kbps: a map of {', '.join(RATE_PARTS)}")
    return {k: float(_num(v, f"parts_kbps.{k}", 0, 10**7)) for k, v in parts.items()}


def _num(v, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ManifestError(f"{what}: {v!r} is not a number in [{lo}, {hi}]")
    return v


def _pictures(r: dict) -> list:
    pics = r.get("pictures", [[r["lr_width"], r["lr_height"]]])
    if not isinstance(pics, list) or not 1 <= len(pics) <= 16:
        raise ManifestError("pictures: 1..16 [width, height] pairs expected")
    return [[int(_num(w, "picture width", 1, MAX_SIDE)), int(_num(h, "picture height", 1, MAX_SIDE))]
            for w, h in pics]


def _token(v, key: str, pattern: str) -> str | None:
    """An optional short string field: None, or a str matching ``pattern`` whole."""
    if v is None:
        return None
    if not isinstance(v, str) or not re.fullmatch(pattern, v):
        raise ManifestError(f"{key}: bad value {v!r}")
    return v


def _codecs(v) -> str | None:
    return _token(v, "codecs", r"[A-Za-z0-9.]{4,40}")


def _refine(v) -> str | None:
    return _token(v, "refine", r"[a-z][a-z0-9.-]{0,39}")


def _source(src: dict) -> dict:
    _num(src["width"], "source.width", 1, MAX_SIDE)
    _num(src["height"], "source.height", 1, MAX_SIDE)
    _num(src["frames"], "source.frames", 0, 10**8)
    fps = src["fps"]
    if not (isinstance(fps, list) and len(fps) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in fps) and 0 < fps[0] <= MAX_FPS * fps[1]
            and 0 < fps[1] <= 10**6):
        raise ManifestError(f"source.fps: {fps!r} is not [num, den] with 0 < num/den <= {MAX_FPS}")
    if "max_fps" in src:  # a variable-rate source: its highest frame rate (bounds frames per second of a segment)
        _num(src["max_fps"], "source.max_fps", fps[0] / fps[1] * 0.999, MAX_FPS)
    if src["matrix"] not in MATRICES:
        raise ManifestError(f"source.matrix: {src['matrix']!r} is not one of {', '.join(MATRICES)}")
    if not isinstance(src["full_range"], bool):
        raise ManifestError("source.full_range: true or false expected")
    return src


def _check_segments(segs: list[Segment], src: dict, name: str) -> None:
    """Segments tile the source's frames in order, each no longer than its duration allows."""
    fps = src.get("max_fps", src["fps"][0] / src["fps"][1])
    n = 0
    for s in segs:
        if s.first_frame != n:
            raise ManifestError(f"rendition {name!r}: segment {s.file} starts at frame {s.first_frame}, expected {n}")
        if s.frames > s.duration_s * fps + 2:
            raise ManifestError(f"rendition {name!r}: segment {s.file} declares {s.frames} frames in "
                                f"{s.duration_s} s at {fps:g} fps")
        n += s.frames
    if n != src["frames"]:
        raise ManifestError(f"rendition {name!r}: segments hold {n} frames, source.frames is {src['frames']}")


def from_dict(d: dict) -> Manifest:
    if not isinstance(d, dict):
        raise ManifestError("manifest is not a JSON object")
    if d.get("version") != SCHEMA_VERSION:
        raise ManifestError(f"unsupported manifest version {d.get('version')!r} (this player reads {SCHEMA_VERSION})")
    try:
        src = _source(d["source"])
        block = int(_num(d["block"], "block", 8, 1024))
        scales = [int(_num(k, "scales[]", 1, 256)) for k in d["scales"]]
        if not scales or scales != sorted(set(scales)) or any(block % (2 * k) for k in scales):
            raise ManifestError(f"scales {scales}: strictly increasing factors whose double divides block {block}")
        overall = int(_num(d["overall"], "overall", 1, 64))
        if not scales[0] <= overall <= scales[-1]:
            raise ManifestError(f"overall {overall} outside the scale set {scales}")
        container = d["container"]
        if container not in CONTAINERS:
            raise ManifestError(f"container {container!r} is not one of {', '.join(CONTAINERS)}")
        rends = d["renditions"]
        if not isinstance(rends, list) or not 1 <= len(rends) <= MAX_RENDITIONS:
            raise ManifestError(f"renditions: 1..{MAX_RENDITIONS} expected")
        out = []
        for r in rends:
            segs = r["segments"]
            if not isinstance(segs, list) or len(segs) > MAX_SEGMENTS:
                raise ManifestError(f"rendition {r.get('name')!r}: too many segments")
            seg_objs = [Segment(_safe_rel(s["file"], "segment"), float(_num(s["duration_s"], "duration", 0, 3600)),
                                int(_num(s["bytes"], "bytes", 0, MAX_SEGMENT_BYTES)),
                                int(_num(s["first_frame"], "first_frame", 0, 10**8)),
                                int(_num(s["frames"], "frames", 0, MAX_SEGMENT_FRAMES))) for s in segs]
            _check_segments(seg_objs, src, str(r.get("name")))
            _num(r["lr_width"], "lr_width", 1, MAX_SIDE)
            _num(r["lr_height"], "lr_height", 1, MAX_SIDE)
            if r["codec"] not in ("h264", "hevc"):
                raise ManifestError(f"unknown codec {r['codec']!r}")
            _num(r["crf"], "crf", 0, 63)
            _num(r["bitrate_kbps"], "bitrate_kbps", 0, 10**7)
            if not isinstance(r["scales"], list) or not 1 <= len(r["scales"]) <= 16 or not all(
                    isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 256 for k in r["scales"]):
                raise ManifestError(f"rendition {r.get('name')!r}: scales {r['scales']!r} are not 1..16 factors")
            _num(r["overall"], "rendition overall", 1, 64)
            if not isinstance(r["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", r["name"]):
                raise ManifestError(f"bad rendition name {r['name']!r}")
            out.append(Rendition(name=str(r["name"]), kind=str(r["kind"]), codec=r["codec"], crf=float(r["crf"]),
                                 layout=str(r["layout"]), scales=[int(k) for k in r["scales"]],
                                 overall=int(r["overall"]), lr_width=int(r["lr_width"]), lr_height=int(r["lr_height"]),
                                 bitrate_kbps=float(r["bitrate_kbps"]), playlist=_safe_rel(r["playlist"], "playlist"),
                                 segments=seg_objs, psnr_y=_opt_db(r, "psnr_y"),
                                 psnr_y_upscaler=r.get("psnr_y_upscaler"), psnr_y_generic=_opt_db(r, "psnr_y_generic"),
                                 weights=r.get("weights"), share=r.get("share", {}), niqe=r.get("niqe"),
                                 pictures=_pictures(r), codecs=_codecs(r.get("codecs")),
                                 es_kbps=_es_kbps(r), models=_models(r, len(seg_objs)), parts_kbps=_parts(r),
                                 init=_init(r, container), refine=_refine(r.get("refine")),
                                 web_model=_web_model(r), video_range=_video_range(r),
                                 bit_depth=int(_num(r.get("bit_depth", 8), "bit_depth", 8, 16))))
        return Manifest(source=src, block=block, overall=overall, scales=scales, resize=str(d["resize"]),
                        container=container, segment_s=float(d["segment_s"]), realloc=str(d["realloc"]),
                        scorer=str(d["scorer"]), allocator=str(d["allocator"]), renditions=out,
                        conventions=d.get("conventions", {}), audio=_audio(d.get("audio")))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"malformed manifest ({e.__class__.__name__}: {e})") from None


def load(stream_dir: str | os.PathLike, max_bytes: int = 16 << 20) -> Manifest:
    p = Path(stream_dir) / "manifest.json"
    if not p.exists():
        raise ManifestError(f"{stream_dir}: no manifest.json (not a stream directory)")
    if p.stat().st_size > max_bytes:
        raise ManifestError(f"{p}: manifest larger than {max_bytes} bytes")
    try:
        d = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{p}: not valid JSON ({e})") from None
    return from_dict(d)
