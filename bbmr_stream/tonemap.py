"""HDR (PQ / HLG, BT.2020) -> SDR (BT.709) tone mapping: FFmpeg's canonical recipe in numpy float32.

The recipe (:attr:`ToneMap.ffmpeg_filter`, with ``peak = peak_nits / 100``)::

    zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0:peak=P,
    zscale=t=bt709:m=bt709:r=tv,format=yuv420p

step by step, as FFmpeg 9.0 with zimg does it (measured, tests/unit/test_tonemap.py):

1. 10-bit limited-range BT.2020 non-constant-luminance Y'CbCr 4:2:0 -> R'G'B'. Chroma is MPEG-2 "left" sited
   (zscale's default for untagged or ``left`` input) and upsampled linearly (zscale's default bilinear filter;
   edges replicated), the same positions and weights as :mod:`bbmr_stream.colour`. Sources tagged ``topleft``
   (some UHD discs) are still read as ``left`` here (not checked against zscale: a quarter chroma row apart).
2. Linear light, 1.0 = 100 nits (``npl=100``). PQ: the ST 2084 EOTF. HLG: zimg's *display-referred* HLG for a
   1000-nit display applied **per channel**, ``L = 1000 nits * E^1.2`` with E the HLG inverse OETF of each of
   R', G', B' -- not BT.2100's luminance OOTF ``Ys^0.2 * E`` (saturated colours come out more saturated; this
   is what zscale does, so we do it too). The HLG nominal peak is thus always 1000 nits, whatever ``peak_nits``.
3. BT.2020 -> BT.709 primaries by the 3x3 matrix of the xy chromaticities (D65); out-of-gamut negatives kept.
4. FFmpeg ``tonemap``, hable, ``desat=0``: ``sig = max(R, G, B, 1e-6)``, every channel scaled by
   ``hable(sig) / hable(peak) / sig`` (peak in units of 100 nits), hence ratios (hue) preserved.
5. ``zscale=t=bt709`` is display-referred in zimg: the BT.1886 inverse EOTF ``V = L^(1/2.4)`` (negatives -> 0),
   *not* the inverse of the BT.709 OETF (a scene-referred conversion). Nothing is clipped above 1 by zimg:
   pixels above the peak (or 4:2:0 overshoot next to highlights) give R'G'B' > 1, hence Y > 235.

Then zscale converts to BT.709 limited-range 8-bit YUV itself; we stop at float R'G'B' on the 0..255 scale so
the caller quantises with the project's convention (:func:`bbmr_stream.colour.rgb_to_yuv420`).

Peak: FFmpeg's ``tonemap`` without ``peak=`` would read the HDR side data, but ``zscale=t=linear`` drops it and
tags the frame linear, so the recipe without ``peak=`` tone-maps *every* source as 1000 nits (PQ with MaxCLL 4000
included). The project maps every title with :data:`DEFAULT_PEAK_NITS` (1000 nits: the HLG reference display, the
most common HDR10 mastering peak, and what the recipe does without ``peak=``), whatever its metadata says, so
that the packager and every player map a title alike (per-frame metadata, when present, need not be on every
frame); :func:`hdr_metadata` reads that metadata for the 10-bit rungs, which carry it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

DEFAULT_PEAK_NITS = 1000.0
TRANSFERS = ("pq", "hlg")
AV_TRC = {16: "pq", 18: "hlg"}  # FFmpeg AVColorTransferCharacteristic: SMPTE ST 2084, ARIB STD-B67

# ST 2084
_M1, _M2 = 2610 / 16384, 2523 / 32
_C1, _C2, _C3 = 3424 / 4096, 2413 / 128, 2392 / 128
# ARIB STD-B67 / BT.2100 HLG
_HA, _HB, _HC = 0.17883277, 0.28466892, 0.55991073
_KR, _KB = 0.2627, 0.0593  # BT.2020 luma coefficients
_KG = 1.0 - _KR - _KB
_BT2020 = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
_BT709 = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
_D65 = (0.3127, 0.3290)


def _rgb_to_xyz(primaries, white=_D65) -> np.ndarray:
    p = np.array([[x / y, 1.0, (1.0 - x - y) / y] for x, y in primaries]).T
    w = np.array([white[0] / white[1], 1.0, (1.0 - white[0] - white[1]) / white[1]])
    return p * np.linalg.solve(p, w)


BT2020_TO_BT709 = np.linalg.solve(_rgb_to_xyz(_BT709), _rgb_to_xyz(_BT2020)).astype(np.float32)  # linear RGB


def _hable(x):
    a, b, c, d, e, f = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30
    return (x * (x * a + b * c) + d * e) / (x * (x * a + b) + d * f) - e / f


@dataclass(frozen=True)
class ToneMap:
    """One HDR -> SDR conversion.

    transfer: ``"pq"`` (SMPTE ST 2084) or ``"hlg"`` (ARIB STD-B67) of the 10-bit BT.2020 source.
    peak_nits: the signal's peak in cd/m2, mapped to SDR white (``tonemap`` ``peak = peak_nits / 100``); see
        :data:`DEFAULT_PEAK_NITS` for every title (the module's docstring says why).
    operator: FFmpeg ``tonemap`` algorithm; only ``"hable"`` (with ``desat=0``).
    """

    transfer: str
    peak_nits: float = DEFAULT_PEAK_NITS
    operator: str = "hable"

    def __post_init__(self):
        if self.transfer not in TRANSFERS:
            raise ValueError(f"unknown HDR transfer {self.transfer!r} (one of {', '.join(TRANSFERS)})")
        if self.operator != "hable":
            raise ValueError(f"unsupported tone-mapping operator {self.operator!r} (only 'hable')")
        if not (math.isfinite(self.peak_nits) and self.peak_nits > 0):
            raise ValueError(f"peak_nits must be a positive number, got {self.peak_nits!r}")

    @property
    def name(self) -> str:
        """For notes, e.g. ``hable (FFmpeg tonemap, desat 0, peak 1000 nits)``."""
        return f"{self.operator} (FFmpeg tonemap, desat 0, peak {self.peak_nits:g} nits)"

    @property
    def ffmpeg_filter(self) -> str:
        """The equivalent FFmpeg filter chain (input tagged bt2020 / smpte2084 or arib-std-b67 / bt2020nc / tv)."""
        return (f"zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
                f"tonemap=tonemap={self.operator}:desat=0:peak={self.peak_nits / 100:g},"
                f"zscale=t=bt709:m=bt709:r=tv,format=yuv420p")


def _upsample(c: np.ndarray) -> np.ndarray:
    """(h, w) left-sited 4:2:0 chroma (float32) -> (2h, 2w): linear, edges replicated (as colour._upsample_chroma)."""
    up = np.concatenate([c[:1], c[:-1]])
    dn = np.concatenate([c[1:], c[-1:]])
    v = np.empty((2 * c.shape[0], c.shape[1]), np.float32)
    np.multiply(c, 0.75, out=v[0::2])
    v[0::2] += up * 0.25
    np.multiply(c, 0.75, out=v[1::2])
    v[1::2] += dn * 0.25
    out = np.empty((v.shape[0], 2 * v.shape[1]), np.float32)
    out[:, 0::2] = v
    np.add(v[:, :-1], v[:, 1:], out=out[:, 1:-1:2])
    out[:, 1:-1:2] *= 0.5
    out[:, -1] = v[:, -1]
    return out


def _pq_eotf(e: np.ndarray) -> np.ndarray:
    """PQ R'G'B' -> linear, 1.0 = 100 nits (in place where it can)."""
    p = np.power(np.clip(e, 0.0, 1.9, out=e), 1.0 / _M2, out=e)  # 1.9: keeps C2 - C3 p > 0 (illegal codes only)
    num = np.maximum(p - _C1, 0.0)
    den = np.multiply(p, -_C3, out=p)
    den += _C2
    num /= den
    lin = np.power(num, 1.0 / _M1, out=num)
    lin *= 10000.0 / 100.0
    return lin


def _hlg_eotf(e: np.ndarray) -> np.ndarray:
    """HLG R'G'B' -> linear, 1.0 = 100 nits: zimg's per-channel display light 1000 * E^1.2 (in place)."""
    np.maximum(e, 0.0, out=e)
    high = np.exp((e - _HC) * (1.0 / _HA))
    high += _HB
    high *= 1.0 / 12.0
    low = np.square(e)
    low *= 1.0 / 3.0
    lin = np.where(e <= 0.5, low, high)
    np.power(lin, 1.2, out=lin)
    lin *= 1000.0 / 100.0
    return lin


def tonemap_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, tm: ToneMap, clip: bool = True) -> np.ndarray:
    """10-bit limited-range BT.2020 NCL 4:2:0 planes -> (H, W, 3) float32 BT.709 R'G'B' on the 0..255 scale.

    y: (H, W) and u, v: (H/2, W/2) integer code values (uint16; H, W even). The result has BT.709 primaries and
    the BT.1886 inverse EOTF (zimg's ``t=bt709``) applied, unrounded. ``clip=True`` clips to [0, 255] (what an
    RGB picture can hold); ``clip=False`` keeps values above 255 as zscale does (signal above the peak, or
    chroma overshoot next to highlights) so that :func:`bbmr_stream.colour.luma` gives FFmpeg's Y plane up to
    rounding. 1920x1080: ~0.09 s on one thread of the project's Xeon (numpy's AVX-512 power/exp; lookup
    tables were slower than these vectorised functions).
    """
    h, w = y.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs an even size, got {w}x{h}")
    if u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
        raise ValueError(f"chroma planes {u.shape}, {v.shape} do not match a {w}x{h} 4:2:0 picture")
    cb = _upsample((u.astype(np.float32) - 512.0) * (1.0 / 896.0))
    cr = _upsample((v.astype(np.float32) - 512.0) * (1.0 / 896.0))
    rgb = np.empty((3, h, w), np.float32)
    yp = np.subtract(y, 64.0, out=rgb[1], dtype=np.float32)
    yp *= 1.0 / 876.0
    np.add(yp, cr * (2.0 * (1.0 - _KR)), out=rgb[0])
    np.add(yp, cb * (2.0 * (1.0 - _KB)), out=rgb[2])
    yp -= cr * (2.0 * _KR * (1.0 - _KR) / _KG)  # G' = Y' - (Kr R' + Kb B' - (Kr + Kb) Y') / Kg
    yp -= cb * (2.0 * _KB * (1.0 - _KB) / _KG)
    lin = (_pq_eotf if tm.transfer == "pq" else _hlg_eotf)(rgb).reshape(3, -1)
    lin = BT2020_TO_BT709 @ lin
    sig = np.maximum(lin.max(axis=0), 1e-6)
    scale = _hable(sig)
    scale /= sig * _hable(np.float32(tm.peak_nits / 100.0))
    lin *= scale
    np.maximum(lin, 0.0, out=lin)
    np.power(lin, 1.0 / 2.4, out=lin)
    lin *= 255.0
    if clip:
        np.minimum(lin, 255.0, out=lin)
    return np.ascontiguousarray(lin.reshape(3, h, w).transpose(1, 2, 0))


def frame_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V uint16 planes (views) of a 10-bit 4:2:0 PyAV frame (other 10-bit 4:2:0 layouts such as p010le
    are repacked to yuv420p10le by swscale first: a lossless shuffle)."""
    if frame.format.name != "yuv420p10le":
        frame = frame.reformat(format="yuv420p10le")
    return tuple(np.frombuffer(memoryview(p), np.uint16).reshape(p.height, p.line_size // 2)[:, :p.width]
                 for p in frame.planes[:3])


def tonemap_frame(frame, tm: ToneMap, clip: bool = True) -> np.ndarray:
    """A decoded limited-range BT.2020 10-bit 4:2:0 PyAV frame -> :func:`tonemap_planes` R'G'B'."""
    if getattr(frame, "color_range", 0) == 2:
        raise ValueError("full-range (JPEG) HDR input is not supported")
    return tonemap_planes(*frame_planes(frame), tm, clip)


def frame_transfer(frame) -> str | None:
    """``"pq"`` / ``"hlg"`` from a PyAV frame's transfer tag (``color_trc``), else None."""
    return AV_TRC.get(getattr(frame, "color_trc", None))


@dataclass(frozen=True)
class HdrMeta:
    """Static HDR metadata of a frame; None where absent.

    max_luminance_nits, min_luminance_nits: mastering display luminance range (cd/m2, SMPTE ST 2086).
    max_cll, max_fall: content light level (cd/m2, CTA-861.3; 0 means unknown).
    master_display_x265: x265's ``master-display`` string ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``
        (chromaticities in 0.00002, luminance in 0.0001 cd/m2; x265 lists G, B, R where FFmpeg stores R, G, B).
    """

    max_luminance_nits: float | None = None
    min_luminance_nits: float | None = None
    max_cll: int | None = None
    max_fall: int | None = None
    master_display_x265: str | None = None


def _side_data(frame, kind: str) -> bytes | None:
    for sd in frame.side_data:  # PyAV >= 14: SideData objects with a .type enum, raw struct in the buffer
        if getattr(sd.type, "name", str(sd.type)) == kind:
            return bytes(sd)
    return None


def hdr_metadata(frame) -> HdrMeta:
    """Mastering display colour volume and content light level side data of a decoded PyAV frame.

    PyAV exposes them as raw C structs (little endian): AVMasteringDisplayMetadata = 10 AVRational
    (int num, den): display_primaries[3][2] (R, G, B; x, y), white_point[2], min_luminance, max_luminance;
    then int has_primaries, has_luminance (88 bytes). AVContentLightMetadata = unsigned MaxCLL, MaxFALL."""
    fields: dict = {}
    md = _side_data(frame, "MASTERING_DISPLAY_METADATA")
    if md is not None and len(md) >= 88:
        v = struct.unpack_from("<22i", md)
        q = [Fraction(v[2 * i], v[2 * i + 1]) if v[2 * i + 1] else Fraction(0) for i in range(10)]
        has_primaries, has_luminance = v[20], v[21]
        if has_luminance:
            fields["min_luminance_nits"], fields["max_luminance_nits"] = float(q[8]), float(q[9])
        if has_primaries and has_luminance:
            xy = [round(c * 50000) for c in q[:8]]  # Rx Ry Gx Gy Bx By WPx WPy
            lum = [round(c * 10000) for c in (q[9], q[8])]
            fields["master_display_x265"] = (f"G({xy[2]},{xy[3]})B({xy[4]},{xy[5]})R({xy[0]},{xy[1]})"
                                             f"WP({xy[6]},{xy[7]})L({lum[0]},{lum[1]})")
    cll = _side_data(frame, "CONTENT_LIGHT_LEVEL")
    if cll is not None and len(cll) >= 8:
        fields["max_cll"], fields["max_fall"] = struct.unpack_from("<2I", cll)
    return HdrMeta(**fields)
