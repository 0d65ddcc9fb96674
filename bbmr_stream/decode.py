"""Decode: any FFmpeg-readable video -> RGB frames (H, W, 3) uint8 with their timestamps.

Colour policy: the YUV->RGB matrix and range are read from the stream (``colorspace``, ``color_range``);
when unspecified, HD and larger (height >= 720) is taken as BT.709 and smaller as BT.601, limited range
(what players assume). The same matrix/range is written to the manifest and used for the LR streams, so
nothing silently switches to BT.601. 10-bit (and other high bit-depth) input is converted to 8-bit RGB by
swscale (accurate rounding); PQ/HLG HDR is passed through without tone mapping, with a warning.
Rotation metadata (display matrix) is applied, so frames come out upright. Timestamps are kept
(``pts`` in ``time_base``), so VFR input stays VFR.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import numpy as np

from bbmr_stream.colour import AV_TO_MATRIX, frame_to_rgb
from bbmr_stream.errors import InputError
from bbmr_stream.imageio import check_input_file

# FFmpeg AVColorTransferCharacteristic values
_HDR_TRC = {16: "PQ", 18: "HLG"}


@dataclass
class SourceInfo:
    path: str
    width: int  # upright (after rotation)
    height: int
    fps: Fraction
    time_base: Fraction
    frames: int  # container's count, or an estimate from the duration (0 if unknown)
    duration_s: float
    codec: str
    pix_fmt: str
    bit_depth: int
    matrix: str  # "bt709" | "bt601" | "bt2020"
    full_range: bool
    rotation: int  # degrees, counter-clockwise, applied on decode
    has_audio: bool
    notes: list[str] = field(default_factory=list)
    frames_exact: bool = False  # ``frames`` is the container's count (MP4 sample table), not an estimate


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
        matrix = AV_TO_MATRIX.get(int(first.colorspace))
        if matrix is None:
            matrix = "bt709" if first.height >= 720 else "bt601"
            notes.append(f"colour matrix unspecified: assuming {matrix} for {first.height} lines")
        full = int(first.color_range) == 2
        if int(first.color_trc) in _HDR_TRC:
            notes.append(f"{_HDR_TRC[int(first.color_trc)]} HDR input: converted to 8 bits without tone mapping")
        rot = int(round(getattr(first, "rotation", 0) or 0)) % 360
        w, h = (first.height, first.width) if rot in (90, 270) else (first.width, first.height)
        return SourceInfo(path=str(path), width=w, height=h, fps=Fraction(fps), time_base=Fraction(tb),
                          frames=frames, duration_s=dur, codec=cc.name, pix_fmt=fmt.name if fmt else "?",
                          bit_depth=bit_depth, matrix=matrix, full_range=full, rotation=rot,
                          has_audio=bool(c.streams.audio), notes=notes, frames_exact=int(s.frames) > 0)
    finally:
        c.close()


@dataclass
class Frame:
    index: int
    pts: int  # in SourceInfo.time_base
    rgb: np.ndarray  # (H, W, 3) uint8, by the exact conversion of bbmr_stream.colour
    y: np.ndarray  # (H, W) uint8: the source's own luma plane (the reference of video PSNR-Y)


def frames(info: SourceInfo, max_frames: int | None = None, strict: bool = False) -> Iterator[Frame]:
    """Decoded frames in presentation order, converted with the source's matrix/range, upright. A decode
    error ends the frames with a warning, or (``strict``) raises InputError, as does (``strict``) a file that
    ends before the frame count its container declares (a truncated MP4)."""
    import av

    c = _open(info.path)
    try:
        n = 0
        last_pts = None
        for fr in c.decode(video=0):
            if max_frames is not None and n >= max_frames:
                break
            rgb, y = frame_to_rgb(fr, info.matrix, info.full_range)
            if info.rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=info.rotation // 90))
                y = np.ascontiguousarray(np.rot90(y, k=info.rotation // 90))
            pts = fr.pts if fr.pts is not None else (0 if last_pts is None else last_pts + 1)
            last_pts = pts
            yield Frame(n, int(pts), rgb, y)
            n += 1
    except av.error.FFmpegError as e:
        if strict:
            raise InputError(f"{info.path}: decoding stopped after {n} frames ({e}): the file is damaged or "
                             f"truncated") from None
        warnings.warn(f"{info.path}: decoding stopped after {n} frames ({e})")
    else:
        want = min(info.frames, max_frames) if max_frames is not None else info.frames
        if strict and info.frames_exact and n + 2 < want:  # edit lists may hide a frame or two
            raise InputError(f"{info.path}: only {n} of the {info.frames} frames its container declares could be "
                             f"decoded: the file is truncated or damaged")
    finally:
        c.close()
