"""Decode: any FFmpeg-readable video -> RGB frames (H, W, 3) uint8 with their timestamps.

Colour policy: the YUV->RGB matrix and range are read from the stream (``colorspace``, ``color_range``);
when unspecified, HD and larger (height >= 720) is taken as BT.709 and smaller as BT.601, limited range
(what players assume). The same matrix/range is written to the manifest and used for the LR streams, so
nothing silently switches to BT.601. 10-bit (and other high bit-depth) SDR input is reduced to 8-bit by swscale
(its ordered dither); PQ/HLG HDR input is tone-mapped to SDR BT.709 (:func:`bbmr_stream.colour.sdr_of_hdr`), so
the frames of an HDR source are its SDR picture, ``matrix`` bt709, and ``transfer`` says what the source was
(the packager's 10-bit rungs, packager/deep.py, keep the HDR signal itself).
Rotation metadata (display matrix) is applied, so frames come out upright. Timestamps are kept
(``pts`` in ``time_base``), so VFR input stays VFR: :func:`probe` reads every video packet's timestamp (no
decoding; once per file and version: cached) and marks a source whose frame durations differ by more than
:data:`VFR_TOLERANCE` (and one tick) as variable-rate, with its frame times (:func:`media_seconds` gives the real
duration of its first N frames).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from bbmr_stream.colour import AV_TO_MATRIX, frame_to_rgb
from bbmr_stream.errors import InputError
from bbmr_stream.imageio import check_input_file
from bbmr_stream.tonemap import AV_TRC

# FFmpeg AVColorTransferCharacteristic values
VFR_TOLERANCE = 0.1  # relative spread of frame durations above which a source is variable-rate (and more than one
# tick: a 1/1000 time base gives a 30 fps source 33 and 34 ms frames, a 120 fps one 8 and 9 ms)


@dataclass
class SourceInfo:
    path: str
    width: int  # upright (after rotation), in square pixels (a non-square SAR is resampled to the display width)
    height: int
    fps: Fraction
    time_base: Fraction
    frames: int  # container's count, or an estimate from the duration (0 if unknown)
    duration_s: float
    codec: str
    pix_fmt: str
    bit_depth: int
    matrix: str  # "bt709" | "bt601" | "bt2020" of the frames :func:`frames` gives (bt709 for an HDR source)
    full_range: bool
    rotation: int  # degrees, counter-clockwise, applied on decode
    has_audio: bool
    notes: list[str] = field(default_factory=list)
    frames_exact: bool = False  # ``frames`` is the container's count (MP4 sample table), not an estimate
    sar: Fraction = Fraction(1)  # the coded pictures' sample aspect ratio (frames come out at square pixels)
    transfer: str = "SDR"  # "SDR" | "PQ" | "HLG" (manifest VIDEO_RANGES)
    colour_tags: tuple[int, int, int] = (2, 2, 2)  # FFmpeg's (primaries, transfer, matrix) enums; 2 = unspecified
    hdr: object | None = None  # HDR source: its static metadata (bbmr_stream.tonemap.HdrMeta)
    start_s: float = 0.0  # the first frame's presentation time (its pts in seconds)
    frame_times: tuple[float, ...] | None = None  # variable-rate source: each frame's start, seconds from the first
    max_fps: float | None = None  # variable-rate source: its highest frame rate (1 / the shortest frame duration)
    first_pts: int | None = None  # the first decoded frame's pts (frames hidden by an edit list come before it)

    @property
    def vfr(self) -> bool:
        return self.frame_times is not None


def _open(path: str):
    import av

    p = check_input_file(path, "a video file")
    try:
        c = av.open(str(p))
    except Exception as e:  # av.error.* (InvalidDataError, ...) and OSErrors
        raise InputError(f"{path}: not a readable media file ({e.__class__.__name__}: {e})") from None
    if not c.streams.video:
        c.close()
        raise InputError(f"{path}: has no video stream")
    return c


def probe(path: str) -> SourceInfo:
    c = _open(path)
    try:
        s = c.streams.video[0]
        cc = s.codec_context
        fps = s.average_rate or s.guessed_rate or Fraction(30)
        tb = s.time_base or Fraction(1, 90000)
        dur = float(s.duration * tb) if s.duration else (c.duration / 1e6 if c.duration else 0.0)
        frames = int(s.frames) or int(round(dur * float(fps)))
        fmt = cc.format
        bit_depth = max((comp.bits for comp in fmt.components), default=8) if fmt else 8
        try:
            first = next(c.decode(video=0))
        except StopIteration:
            raise InputError(f"{path}: the video stream has no frames") from None
        except Exception as e:
            raise InputError(f"{path}: cannot decode video ({e.__class__.__name__}: {e})") from None
        notes = []
        tags = (int(first.color_primaries), int(first.color_trc), int(first.colorspace))
        transfer = AV_TRC.get(tags[1], "sdr").upper()
        matrix = AV_TO_MATRIX.get(tags[2])
        if transfer != "SDR":
            from bbmr_stream.tonemap import hdr_metadata

            matrix, hdr = "bt709", hdr_metadata(first)
            if int(first.color_range) == 2:
                raise InputError(f"{path}: full-range {transfer} HDR video is not supported (HDR10 and HLG are "
                                 f"limited range)")
        elif matrix is None:
            matrix = "bt709" if first.height >= 720 else "bt601"
            notes.append(f"colour matrix unspecified: assuming {matrix} for {first.height} lines")
        full = int(first.color_range) == 2 and transfer == "SDR"
        rot = int(round(getattr(first, "rotation", 0) or 0)) % 360
        sar = _sar(first, s)
        cw = first.width if sar == 1 else 2 * max(1, int(round(first.width * sar / 2)))
        if sar != 1:
            notes.append(f"non-square pixels (SAR {sar.numerator}:{sar.denominator}): {first.width}x{first.height} "
                         f"resampled to the display size {cw}x{first.height}")
        w, h = (first.height, cw) if rot in (90, 270) else (cw, first.height)
        info = SourceInfo(path=str(path), width=w, height=h, fps=Fraction(fps), time_base=Fraction(tb),
                          frames=frames, duration_s=dur, codec=cc.name, pix_fmt=fmt.name if fmt else "?",
                          bit_depth=bit_depth, matrix=matrix, full_range=full, rotation=rot,
                          has_audio=bool(c.streams.audio), notes=notes, frames_exact=int(s.frames) > 0,
                          sar=sar, transfer=transfer, colour_tags=tags, hdr=hdr if transfer != "SDR" else None,
                          first_pts=first.pts)
    finally:
        c.close()
    _timing(info)
    return info


def _sar(frame, stream) -> Fraction:
    """The sample aspect ratio of the coded pictures (frame, else stream, else 1: square)."""
    for v in (getattr(frame, "sample_aspect_ratio", None), stream.sample_aspect_ratio):
        if v and v.numerator > 0 and v.denominator > 0 and Fraction(v) != 1 and 0.1 <= Fraction(v) <= 10:
            return Fraction(v)
    return Fraction(1)


def display_width(info: SourceInfo) -> int:
    """The width of a coded picture at square pixels, in the coded orientation (before rotation)."""
    return info.height if info.rotation in (90, 270) else info.width


def square_plane(a: np.ndarray, width: int, peak: float) -> np.ndarray:
    """A plane of code values on [0, ``peak``] with non-square pixels resampled to ``width`` (the display width):
    bicubic, antialiased when shrinking (bbmr_stream.resize), unrounded float64."""
    import torch

    from bbmr_stream.resize import resize_to

    x = torch.from_numpy(np.asarray(a, np.float64) / peak)[None, None]
    return resize_to(x, a.shape[0], width)[0, 0].numpy() * peak


def upright(a: np.ndarray, info: SourceInfo) -> np.ndarray:
    """A picture or plane in the coded orientation turned as the source's display matrix says."""
    return np.ascontiguousarray(np.rot90(a, k=info.rotation // 90)) if info.rotation else a


def _display(rgb: np.ndarray, y: np.ndarray, info: SourceInfo) -> tuple[np.ndarray, np.ndarray]:
    """A decoded frame (RGB uint8 and its Y plane) at square pixels (:func:`square_plane`; RGB likewise, rounded
    to code values) and upright."""
    if info.sar != 1:
        from bbmr_stream.resize import resize_to, to_tensor, to_uint8

        w = display_width(info)
        rgb = to_uint8(resize_to(to_tensor(rgb), rgb.shape[0], w))
        y = np.clip(np.floor(square_plane(y, w, 255.0) + 0.5), 0, 255).astype(np.uint8)
    return upright(rgb, info), upright(y, info)


def _timing(info: SourceInfo) -> None:
    """Mark a variable-rate source (``frame_times``, ``max_fps``, the real ``duration_s``) from its packets'
    timestamps (:func:`packet_times`), and say so in its notes."""
    p = Path(info.path)
    st = p.stat()
    pts = packet_times(str(p.resolve()), st.st_size, st.st_mtime_ns)
    if pts:
        info.start_s = float(pts[0] * info.time_base)
    if len(pts) < 3:
        return
    d = np.diff(np.asarray(pts, np.int64))
    d = d[d > 0]
    if not len(d) or (d.max() - d.min()) <= max(VFR_TOLERANCE * float(np.median(d)), 1):
        return
    tb = float(info.time_base)
    times = tuple((v - pts[0]) * tb for v in pts)
    info.frame_times = times
    info.max_fps = 1.0 / (float(d.min()) * tb)
    info.duration_s = times[-1] + float(np.median(d)) * tb
    info.notes.append(f"variable frame rate ({1 / (float(d.max()) * tb):.3g} to {info.max_fps:.3g} fps, "
                      f"{info.fps.numerator / info.fps.denominator:.4g} on average): each frame keeps its timestamp")


@functools.lru_cache(maxsize=8)
def packet_times(path: str, size: int, mtime_ns: int) -> tuple[int, ...]:
    """The presentation timestamps of a file's first video stream, sorted, from its packets (a read of the whole
    file, no decoding); cached per path, size and modification time (the auto ladder probes a source once per
    candidate run)."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        return tuple(sorted(p.pts for p in c.demux(s) if p.pts is not None and p.size))


def media_seconds(info: SourceInfo, n_frames: int) -> float:
    """Seconds the first ``n_frames`` frames of the source last: n / fps, or for a variable-rate source from its
    frame times (the last frame lasting the median frame duration)."""
    if info.frame_times is None or n_frames <= 0:
        return n_frames / float(info.fps)
    if n_frames < len(info.frame_times):
        return info.frame_times[n_frames]
    return info.duration_s + (n_frames - len(info.frame_times)) / float(info.fps)


@dataclass
class Frame:
    index: int
    pts: int  # in SourceInfo.time_base
    rgb: np.ndarray  # (H, W, 3) uint8, by the exact conversion of bbmr_stream.colour
    y: np.ndarray  # (H, W) uint8: the source's own luma plane (the reference of video PSNR-Y)
    duration: int = 0  # in SourceInfo.time_base, from the container (0: unknown)


def frames(info: SourceInfo, max_frames: int | None = None, strict: bool = False) -> Iterator[Frame]:
    """Decoded frames in presentation order, converted with the source's matrix/range, upright. A decode
    error ends the frames with a warning, or (``strict``) raises InputError, as does (``strict``) a file that
    ends before the frame count its container declares (a truncated MP4)."""
    yield from frames_from(info, 0, max_frames, strict)


def frames_from(info: SourceInfo, start: int, count: int | None = None, strict: bool = False,
                seek: int | None = None) -> Iterator[Frame]:
    """:func:`frames` from the ``start``-th frame (indices count from the first frame, as :func:`frames` numbers
    them), at most ``count`` of them. The decoder seeks to the keyframe before the frame when the packets'
    timestamps place it (``seek``: its pts, else :func:`seek_pts`) and decoding from that keyframe reaches it;
    otherwise it decodes from the start and skips (the same frames, slower). Strictness as :func:`frames`."""
    import av

    c = _open(info.path)
    try:
        n, last_pts = start, None
        it = _seeked(c, info, start, seek)
        if it is None:
            if start:  # a fresh demuxer and decoder after an untrusted seek
                c.close()
                c = _open(info.path)
            it = c.decode(video=0)
            for _ in range(start):
                if next(it, None) is None:
                    return
        for fr in it:
            if count is not None and n - start >= count:
                break
            rgb, y = _display(*frame_to_rgb(fr, info.matrix, info.full_range), info)
            pts = fr.pts if fr.pts is not None else (n if last_pts is None else last_pts + 1)
            last_pts = pts
            yield Frame(n, int(pts), rgb, y, int(fr.duration or 0))
            n += 1
    except av.error.FFmpegError as e:
        if strict:
            raise InputError(f"{info.path}: decoding stopped after {n} frames ({e}): the file is damaged or "
                             f"truncated") from None
        warnings.warn(f"{info.path}: decoding stopped after {n} frames ({e})")
    else:
        want = info.frames if count is None else min(info.frames, start + count)
        if strict and info.frames_exact and n + 2 < want:  # edit lists may hide a frame or two
            raise InputError(f"{info.path}: only {n} of the {info.frames} frames its container declares could be "
                             f"decoded: the file is truncated or damaged")
    finally:
        c.close()


def seek_pts(info: SourceInfo, index: int) -> int | None:
    """The pts of the ``index``-th frame from the packets' timestamps (:func:`packet_times`, skipping those
    before the first decoded frame: an edit list's hidden frames), or None when they cannot say: no first pts,
    repeated timestamps, or (a container that counts its frames) more or fewer packets than frames."""
    p = Path(info.path)
    st = p.stat()
    pts = packet_times(str(p.resolve()), st.st_size, st.st_mtime_ns)
    if info.first_pts is None or info.first_pts not in pts or len(set(pts)) != len(pts):
        return None
    first = pts.index(info.first_pts)
    if info.frames_exact and len(pts) - first != info.frames:
        return None
    i = first + index
    return pts[i] if i < len(pts) else None


def _seeked(c, info: SourceInfo, start: int, target: int | None = None):
    """Frames decoded from the keyframe before the ``start``-th frame (pts ``target``, else :func:`seek_pts`),
    beginning with it; None when the seek cannot be trusted: no target, a decoder error, or the first frame
    decoded after the seek is not a keyframe at or before the target (an open GOP's leading pictures) or the
    target is not among the frames that follow it."""
    import av

    if start == 0:
        return None
    target = seek_pts(info, start) if target is None else target
    if target is None:
        return None
    s = c.streams.video[0]
    try:
        c.seek(target, stream=s, backward=True, any_frame=False)
        it = c.decode(s)
        first = True
        for fr in it:
            if first and (not fr.key_frame or fr.pts is None or fr.pts > target):
                return None
            first = False
            if fr.pts is None or fr.pts > target:
                return None
            if fr.pts == target:
                return itertools.chain([fr], it)
    except av.error.FFmpegError:
        return None
    return None
