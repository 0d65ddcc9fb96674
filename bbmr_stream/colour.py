"""Colour: the one YUV <-> RGB convention of the project, exact (float) both ways.

swscale's default YUV -> RGB path is inexact (its Y, recomputed from the RGB it gives, is off by about one
code value), so the project does the matrix itself:

- matrices by name (``bt709``, ``bt601``, ``bt2020``), luma coefficients Kr, Kb of ITU-R BT.709 / BT.601 /
  BT.2020; 8-bit code values, limited range (Y 16..235, C 16..240) or full range (0..255);
- 4:2:0 chroma is MPEG-2/H.264 "left" sited: co-sited with even luma columns, vertically between two rows.
  Up: linear interpolation at those positions (edges replicated). Down: [1, 2, 1] / 4 horizontally at even
  columns, the mean of two rows vertically;
- :func:`luma` is the exact luma of an RGB picture in a given matrix, unrounded, on the 8-bit code scale:
  for a picture converted from YUV by :func:`yuv_to_rgb` it gives back the Y plane up to RGB rounding.

Video PSNR-Y (:func:`bbmr_stream.metrics.psnr_luma`) compares a source's own decoded Y plane with this luma
of the reconstruction, as FFmpeg's ``psnr`` filter and libvmaf compare Y planes (tested against ``psnr``).
"""

from __future__ import annotations

import numpy as np
import torch

MATRICES: dict[str, tuple[float, float]] = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114),
                                            "bt2020": (0.2627, 0.0593)}  # (Kr, Kb)
AV_COLORSPACE = {"bt709": 1, "bt601": 6, "bt2020": 9}  # FFmpeg AVColorSpace written into the VUI
AV_TO_MATRIX = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
SWS_NAME = {"bt709": "ITU709", "bt601": "ITU601", "bt2020": "BT2020"}  # PyAV reformat names (non-4:2:0 input)


def _coeffs(matrix: str) -> tuple[float, float, float]:
    try:
        kr, kb = MATRICES[matrix]
    except KeyError:
        raise ValueError(f"unknown colour matrix {matrix!r} (one of {', '.join(MATRICES)})") from None
    return kr, 1.0 - kr - kb, kb


def _ranges(full_range: bool) -> tuple[float, float, float]:
    """(Y offset, Y span, C span) in 8-bit code values."""
    return (0.0, 255.0, 255.0) if full_range else (16.0, 219.0, 224.0)


def luma(rgb: np.ndarray, matrix: str, full_range: bool = False) -> np.ndarray:
    """(H, W, 3) RGB (uint8, or float on [0, 255]) -> (H, W) float64 luma code values, unrounded."""
    kr, kg, kb = _coeffs(matrix)
    off, span, _ = _ranges(full_range)
    x = np.asarray(rgb, dtype=np.float64) * (span / 255.0)
    return off + kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]


def _round_u8(a: np.ndarray) -> np.ndarray:
    """Code values -> uint8 by the project's one rounding rule (half up, clamped: resize.levels8)."""
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


def _round_u8_t(a: torch.Tensor) -> torch.Tensor:
    """:func:`_round_u8` in torch (the same float32 operations, multithreaded)."""
    return a.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420(rgb: np.ndarray, matrix: str, full_range: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB (H, W even) -> Y (H, W), U, V (H/2, W/2) uint8 planes.

    float32 arithmetic in torch (threads), operation for operation as the numpy definition in
    tests/unit/test_colour.py, so the planes are bit-identical to it."""
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs an even size, got {w}x{h}")
    kr, kg, kb = _coeffs(matrix)
    off, yspan, cspan = _ranges(full_range)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32,
                                                                          memory_format=torch.contiguous_format)
    r, g, b = x.div_(255.0).unbind(0)  # planar: element-wise ops on contiguous planes
    yp = (r * kr).add_(g * kg).add_(b * kb)
    pb = (b - yp).div_(2.0 * (1.0 - kb))
    pr = (r - yp).div_(2.0 * (1.0 - kr))
    planes = [_round_u8_t((yp * yspan).add_(off)).numpy()]
    for c in (pb, pr):
        v = (c[0::2] + c[1::2]).mul_(0.5)  # vertical: between the two rows
        left = torch.cat([v[:, :1], v[:, 1:-1:2]], dim=1)  # column 2i-1 (edge replicated)
        hz = (left * 0.25).add_(v[:, 0::2] * 0.5).add_(v[:, 1::2] * 0.25)  # [1, 2, 1] / 4 on column 2i
        planes.append(_round_u8_t((hz * cspan).add_(128.0)).numpy())
    return planes[0], planes[1], planes[2]


def _upsample_chroma(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(ceil(h/2), ceil(w/2)) left-sited 4:2:0 chroma (float32) -> (h, w) by linear interpolation."""
    # vertical: chroma row j sits at luma row 2j + 0.5
    up = torch.cat([c[:1], c[:-1]], dim=0)
    dn = torch.cat([c[1:], c[-1:]], dim=0)
    v = torch.empty((2 * c.shape[0], c.shape[1]), dtype=torch.float32)
    v[0::2] = (c * 0.75).add_(up * 0.25)
    v[1::2] = (c * 0.75).add_(dn * 0.25)
    # horizontal: chroma column i sits at luma column 2i
    right = torch.cat([v[:, 1:], v[:, -1:]], dim=1)
    out = torch.empty((v.shape[0], 2 * v.shape[1]), dtype=torch.float32)
    out[:, 0::2] = v
    out[:, 1::2] = (v + right).mul_(0.5)
    return out[:h, :w]


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str, full_range: bool = False) -> np.ndarray:
    """Y (H, W) and U, V planes (4:2:0 or 4:4:4, 8-bit) -> (H, W, 3) uint8 RGB (float32 in torch, bit-identical
    to the numpy definition in tests/unit/test_colour.py)."""
    kr, kg, kb = _coeffs(matrix)
    off, yspan, cspan = _ranges(full_range)
    h, w = y.shape
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32)  # noqa: E731
    uf, vf = t(u), t(v)
    if u.shape != y.shape:  # 4:2:0 (planes_of turns every other layout into 4:4:4)
        uf, vf = _upsample_chroma(uf, h, w), _upsample_chroma(vf, h, w)
    yp = t(y).sub_(off).div_(yspan)
    pb = uf.sub_(128.0).div_(cspan)
    pr = vf.sub_(128.0).div_(cspan)
    r = yp + pr * (2.0 * (1.0 - kr))
    b = yp + pb * (2.0 * (1.0 - kb))
    g = (yp - r * kr).sub_(b * kb).div_(kg)
    return _round_u8_t(torch.stack([r, g, b], dim=-1).mul_(255.0)).numpy()


def planes_of(frame, matrix: str, full_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit planar Y, U, V of a decoded PyAV frame. 8-bit planar YUV is read as it is; anything else (10-bit,
    RGB, packed) is converted to yuv444p by swscale first (the only place swscale touches colour)."""
    name = frame.format.name
    if name not in ("yuv420p", "yuvj420p", "yuv444p", "yuvj444p"):
        frame = frame.reformat(format="yuv444p", dst_colorspace=SWS_NAME[matrix],
                               dst_color_range="JPEG" if full_range else "MPEG")
    out = []
    for p in frame.planes[:3]:
        a = np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size)[:, : p.width]
        out.append(a)
    return out[0], out[1], out[2]


def frame_to_rgb(frame, matrix: str, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """A decoded PyAV frame -> ((H, W, 3) uint8 RGB by the exact conversion, (H, W) uint8 Y plane). An HDR frame
    (PQ or HLG transfer tag) is tone-mapped to SDR BT.709 first (:func:`sdr_of_hdr`): ``matrix`` is then the
    SDR picture's (bt709) and the Y plane is that picture's luma in it."""
    from bbmr_stream.tonemap import frame_transfer

    if frame_transfer(frame) is not None:
        return sdr_of_hdr(frame, matrix, full_range)
    y, u, v = planes_of(frame, matrix, full_range)
    return yuv_to_rgb(y, u, v, matrix, full_range), y.copy()


def sdr_of_hdr(frame, matrix: str = "bt709", full_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An HDR PyAV frame (10-bit BT.2020, PQ or HLG) -> its SDR picture: the tone mapping of its transfer
    (bbmr_stream.tonemap: hable, FFmpeg's ``tonemap`` with a fixed 1000-nit peak, so that the packager and
    every player map a title alike), RGB uint8 in BT.709 primaries and transfer, and the luma plane of that
    picture in ``matrix`` (rounded)."""
    from bbmr_stream.tonemap import ToneMap, frame_transfer, tonemap_frame

    rgb = _round_u8(tonemap_frame(frame, ToneMap(frame_transfer(frame))))
    return rgb, _round_u8(luma(rgb, matrix, full_range))


def video_frame(rgb: np.ndarray, matrix: str, full_range: bool):
    """(H, W, 3) uint8 RGB (even size) -> a yuv420p PyAV frame by the exact conversion."""
    return video_frame_from_planes(rgb_to_yuv420(rgb, matrix, full_range))


def video_frame_from_planes(planes: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """Y (H, W), U, V (H/2, W/2) uint8 planes -> a yuv420p PyAV frame."""
    import av

    h, w = planes[0].shape
    fr = av.VideoFrame(w, h, "yuv420p")
    for dst, src in zip(fr.planes, planes):
        pad = dst.line_size - src.shape[1]
        dst.update(np.ascontiguousarray(np.pad(src, ((0, 0), (0, pad))) if pad else src))
    return fr
