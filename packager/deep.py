"""10-bit rungs: plain renditions coded from the source's own 10-bit samples, beside the 8-bit ladder.

- **HDR source** (PQ or HLG transfer): HEVC Main10 rungs that carry its signal (primaries, transfer, matrix, and
  for PQ the mastering-display and content-light-level metadata), HLS ``VIDEO-RANGE=PQ|HLG``. The 8-bit ladder
  beside them is the source tone-mapped to SDR BT.709 (:func:`bbmr_stream.colour.sdr_of_hdr`) with every rung
  family, for SDR-only clients. ``PackageConfig.ranges``: ``sdr-only`` ships that ladder alone, ``hdr-only`` the
  10-bit rungs alone. The SR families stay out of the HDR ladder: their models are trained on 8-bit SDR pictures.
- **10-bit SDR source**: plain rungs in HEVC Main10 (``ten_bit`` ``hevc``, the default) or H.264 High10 (``h264``:
  few players decode it) beside the 8-bit ladder, which swscale reduces from the source with its ordered dither;
  ``off``: the 8-bit ladder alone. A note says which.

The rungs take the sizes and CRFs of the 8-bit ladder's plain renditions (what the ladder search chose), else
(``hdr-only``, or a ladder without plain rungs) :data:`DEFAULT_RUNGS`. FFmpeg (the imageio-ffmpeg binary) makes
them: its scaler in 10 bits (bicubic; rotation applied, non-square pixels resampled to the display size as the
8-bit ladder does), libx265 / libx264 with the packager's closed GOPs of ``gop`` frames, every frame's timestamp
passed through; then they are segmented like every rung (packager.segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbmr_stream.decode import media_seconds
from bbmr_stream.errors import InputError
from bbmr_stream.manifest import InitRef, Rendition
from bbmr_stream.progress import Progress
from packager.config import PackageConfig
from packager.encode import codecs_of
from packager.segment import gop_segments, run_ffmpeg_args, segment_hls

DEFAULT_RUNGS = ((1.0, 23.0), (0.5, 28.0))  # (fraction of the source size, CRF) without plain rungs to follow
PSNR_10BIT = ("10-bit renditions (bit_depth 10): PSNR-Y of the coded 10-bit Y plane, bicubic-resized to the source "
              "size, against the source's own 10-bit Y plane (upright, square pixels), peak 1023, mean of per-frame "
              "PSNR over the measured frames; an HDR rendition's PSNR-Y is on its PQ / HLG code values")
# FFmpeg's names of the AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace values a 10-bit rung keeps
PRIMARIES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020", 11: "smpte431", 12: "smpte432"}
TRANSFERS = {1: "bt709", 6: "smpte170m", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
             18: "arib-std-b67"}
MATRICES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc", 10: "bt2020c"}


@dataclass(frozen=True)
class DeepRung:
    """One 10-bit plain rung: coded size (even), CRF, codec and the HLS VIDEO-RANGE it carries."""

    width: int
    height: int
    crf: float
    codec: str  # "hevc" (Main10) | "h264" (High10)
    video_range: str  # "SDR" | "PQ" | "HLG"

    @property
    def name(self) -> str:
        kind = "hdr" if self.video_range != "SDR" else "sdr10"
        return f"{kind}_{self.width}x{self.height}_crf{self.crf:g}"


def deep_codec(cfg: PackageConfig, info) -> str | None:
    """The codec of the source's 10-bit rungs, or None when it gets none: HDR -> hevc (unless ``sdr-only``);
    10-bit SDR -> ``cfg.ten_bit`` (None for ``off`` or ``sdr-only``)."""
    if info.transfer != "SDR":
        return None if cfg.ranges == "sdr-only" else "hevc"
    if info.bit_depth <= 8 or cfg.ranges == "sdr-only" or cfg.ten_bit == "off":
        return None
    return cfg.ten_bit


def source_notes(cfg: PackageConfig, info) -> list[str]:
    """What happens to an HDR or 10-bit source, one line each (printed before any work)."""
    from bbmr_stream.tonemap import ToneMap

    if info.transfer != "SDR":
        sdr = f"an SDR ladder tone-mapped to BT.709 ({ToneMap(info.transfer.lower()).name})"
        hdr = f"10-bit {info.transfer} rungs (HEVC Main10, plain: the SR families are SDR-only)"
        what = {"sdr-only": sdr + " only (--sdr-only)", "hdr-only": hdr + " only (--hdr-only)"}.get(
            cfg.ranges, f"{hdr} and {sdr}")
        return [f"{info.transfer} HDR source: {what}"]
    if info.bit_depth > 8:
        reduced = f"{info.bit_depth}-bit SDR source: the 8-bit ladder is reduced from it by swscale (ordered dither)"
        codec = deep_codec(cfg, info)
        if codec is None:
            return [f"{reduced}; no 10-bit rungs (--ten-bit off{' / --sdr-only' if cfg.ranges == 'sdr-only' else ''})"]
        return [f"{reduced}; 10-bit plain rungs beside it ({'HEVC Main10' if codec == 'hevc' else 'H.264 High10'}, "
                f"--ten-bit {codec})"]
    return []


def plan(cfg: PackageConfig, info, renditions: list[Rendition], specs=()) -> list[DeepRung]:
    """The 10-bit rungs of this run: one per plain rendition of the 8-bit ladder (size, CRF), or without one
    (``hdr-only``) per plain rung of ``specs``, else :data:`DEFAULT_RUNGS`."""
    codec = deep_codec(cfg, info)
    if codec is None:
        return []
    rng = info.transfer
    plain = {(r.lr_width, r.lr_height, r.crf) for r in renditions if r.kind == "plain"}
    if not renditions:
        plain = {(*(s.size or (info.width, info.height)), s.crf) for s in specs if s.family == "plain"}
    plain = sorted(plain, reverse=True)
    if not plain:
        plain = [(_even(info.width * f), _even(info.height * f), crf) for f, crf in DEFAULT_RUNGS]
    return [DeepRung(w, h, crf, codec, rng) for w, h, crf in plain]


def _even(v: float) -> int:
    return max(2, 2 * int(round(v / 2)))


def _tags(info) -> list[str]:
    """FFmpeg's colour options of a 10-bit rung: the source's primaries, transfer and matrix; an unspecified
    matrix is the one the 8-bit ladder assumed (decode.probe), as its rungs say too."""
    prim, trc, mat = info.colour_tags
    if mat not in MATRICES:
        mat = {"bt709": 1, "bt601": 6, "bt2020": 9}[info.matrix]
    out = []
    for opt, names, v in (("-color_primaries", PRIMARIES, prim), ("-color_trc", TRANSFERS, trc),
                          ("-colorspace", MATRICES, mat)):
        if v in names:
            out += [opt, names[v]]
    return out


def ffmpeg_args(info, rung: DeepRung, gop: int, n_frames: int | None, preset: str, lossless: bool,
                out: Path) -> list[str]:
    """The FFmpeg arguments that code ``rung`` from the source into MPEG-TS ``out``: the source's timestamps
    (``-copyts``, no muxer delay: the 8-bit ladder's encoder, PyAV, adds none), so every variant has one
    timeline."""
    from bbmr_stream.x264 import with_asm

    args = ["-y", "-copyts", "-i", info.path, "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough"]
    if n_frames is not None:
        args += ["-frames:v", str(n_frames)]
    args += ["-vf", f"scale={rung.width}:{rung.height}:flags=bicubic,setsar=1,format=yuv420p10le",
             "-color_range", "tv", *_tags(info)]
    gop_params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes=2"
    if rung.codec == "hevc":
        params = f"{gop_params}:log-level=error" + (":lossless=1" if lossless else "")
        meta = info.hdr
        if rung.video_range == "PQ" and meta is not None:
            params += ":hdr10=1:hdr10-opt=0"
            if meta.master_display_x265:
                params += f":master-display={meta.master_display_x265}"
            if meta.max_cll:
                params += f":max-cll={meta.max_cll},{meta.max_fall or 0}"
        args += ["-c:v", "libx265", "-preset", preset, *([] if lossless else ["-crf", f"{rung.crf:g}"]),
                 "-x265-params", params]
    else:
        args += ["-c:v", "libx264", "-profile:v", "high10", "-preset", preset,
                 *(["-qp", "0"] if lossless else ["-crf", f"{rung.crf:g}"]),
                 "-x264-params", with_asm({"x264-params": gop_params})["x264-params"]]
    return args + ["-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts", str(out)]


def encode(info, rung: DeepRung, gop: int, n_frames: int | None, preset: str, lossless: bool, out: Path) -> None:
    """Code one rung (:func:`ffmpeg_args`): a full disk is the ``OSError`` FFmpeg reported, a source FFmpeg
    cannot read (its decoders differ from PyAV's) a one-line InputError."""
    said = run_ffmpeg_args(ffmpeg_args(info, rung, gop, n_frames, preset, lossless, out), out)
    if said:
        raise InputError(f"{info.path}: FFmpeg could not make the 10-bit rendition {rung.name} ({said})")


def ts_frames(ts: Path) -> tuple[int, str, int]:
    """(video frames, RFC 6381 CODECS, coded video bytes) of an MPEG-TS file."""
    import av

    n, codecs, size = 0, None, 0
    with av.open(str(ts), format="mpegts") as c:
        st = c.streams.video[0]
        name = "hevc" if st.codec_context.name == "hevc" else "h264"
        for p in c.demux(st):
            if p.size:
                n += 1
                size += p.size
                codecs = codecs or codecs_of(bytes(p), name)
    return n, codecs or "", size


def deep_renditions(cfg: PackageConfig, info, rungs: list[DeepRung], gop: int, n_frames: int | None, tmp: Path,
                    progress: Progress) -> tuple[list[Rendition], int]:
    """Code and segment ``rungs`` into ``tmp``: (their renditions, the frames each holds). ``n_frames``: the 8-bit
    ladder's frame count (the 10-bit rungs must hold as many), None to code the whole source (up to
    ``cfg.max_frames``); rates over the frames' real duration (:func:`~bbmr_stream.decode.media_seconds`)."""
    work = tmp / "work10"
    work.mkdir(exist_ok=True)
    limit = n_frames if n_frames is not None else cfg.max_frames
    out = []
    with progress.task(f"encoding {len(rungs)} 10-bit renditions", len(rungs)) as task:
        for rung in rungs:
            task.describe(f"encoding {rung.name}")
            ts = work / f"{rung.name}.ts"
            encode(info, rung, gop, limit, cfg.preset, cfg.lossless, ts)
            n, codecs, es = ts_frames(ts)
            if n_frames is not None and n != n_frames:
                raise RuntimeError(f"{rung.name}: FFmpeg coded {n} frames, the 8-bit ladder {n_frames}")
            n_frames = n
            out.append(_rendition(rung, segment_hls(ts, tmp, rung.name, cfg.segment, cfg.container), n, gop, codecs,
                                  es, media_seconds(info, n)))
            ts.unlink()
            task.advance()
    work.rmdir()
    return out, n_frames or 0


def _rendition(rung: DeepRung, cut, n: int, gop: int, codecs: str, es: int, dur: float) -> Rendition:
    segs = gop_segments(cut, n, gop, rung.name)
    init = InitRef(cut.init.file, cut.init.bytes) if cut.init else None
    kbps = (sum(s.bytes for s in segs) + (init.bytes if init else 0)) * 8 / dur / 1000
    return Rendition(rung.name, "plain", rung.codec, rung.crf, "plain", [1], 1, rung.width, rung.height,
                     round(kbps, 2), cut.playlist, segs, pictures=[[rung.width, rung.height]], codecs=codecs,
                     es_kbps=round(es * 8 / dur / 1000, 2), parts_kbps={"video": round(kbps, 3), "map": 0.0},
                     init=init, video_range=rung.video_range, bit_depth=10)


def source_y10(info, wanted: set[int]) -> dict[int, np.ndarray]:
    """The source's 10-bit Y planes (float64 code values) of frames ``wanted``, at square pixels and upright as
    the 8-bit ladder's frames (bbmr_stream.decode)."""
    import av

    from bbmr_stream.decode import display_width, square_plane, upright
    from bbmr_stream.tonemap import frame_planes

    out: dict = {}
    with av.open(info.path) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i > max(wanted, default=-1):
                break
            if i in wanted:
                y = frame_planes(fr)[0].astype(np.float64)
                out[i] = upright(square_plane(y, display_width(info), 1023.0) if info.sar != 1 else y, info)
    return out


def measure_deep(renditions: list[Rendition], info, measured: list[int], tmp: Path, progress: Progress) -> None:
    """Set ``psnr_y`` (:data:`PSNR_10BIT`) of each 10-bit rendition on the ``measured`` frames."""
    import torch

    from bbmr_stream.demux import init_path, segment_frames
    from bbmr_stream.resize import resize_to
    from bbmr_stream.tonemap import frame_planes

    ref = source_y10(info, set(measured))
    with progress.task("measuring 10-bit renditions", len(measured) * len(renditions)) as task:
        for rend in renditions:
            vals = []
            for seg in rend.segments:
                for i, (frs, _) in enumerate(segment_frames(tmp / seg.file, 1, init_path(tmp, rend))):
                    k = seg.first_frame + i
                    if k not in ref:
                        continue
                    y = torch.from_numpy(frame_planes(frs[0])[0].astype(np.float32) / 1023.0)[None, None]
                    up = resize_to(y, info.height, info.width)[0, 0].double().numpy() * 1023.0
                    mse = float(np.mean((ref[k] - up) ** 2))
                    vals.append(10 * np.log10(1023.0 ** 2 / mse) if mse > 0 else float("inf"))
                    task.advance()
            if len(vals) != len(measured):
                raise RuntimeError(f"{rend.name}: decoded {len(vals)} of {len(measured)} measured frames")
            rend.psnr_y = round(float(np.mean(vals)), 4)
            rend.psnr_y_upscaler = "bicubic"
