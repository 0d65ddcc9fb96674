"""HDR -> SDR tone mapping (bbmr_stream.tonemap) against FFmpeg's zscale + tonemap recipe, and HDR side data."""

import subprocess

import av
import imageio_ffmpeg
import numpy as np
import pytest

from bbmr_stream.colour import luma, rgb_to_yuv420
from bbmr_stream.metrics import psnr_plane
from bbmr_stream.tonemap import (
    HdrMeta,
    ToneMap,
    frame_planes,
    frame_transfer,
    hdr_metadata,
    tonemap_frame,
    tonemap_planes,
)

H, W, FRAMES = 96, 128, 3
RECIPE = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0:peak={},"
          "zscale=t=bt709:m=bt709:r=tv,format=yuv420p")
FF_TRC = {"pq": "smpte2084", "hlg": "arib-std-b67"}
X265_MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def _scene(seed: int, peak: float, h: int = H, w: int = W) -> np.ndarray:
    """(h, w, 3) linear BT.2020 display light in nits: a smooth tinted gradient (0.5..~250 nits), colour patches
    (some saturated beyond BT.709, some bright) and small highlights up to ``peak``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], np.float64)[:, None, None]
    wave = np.stack([np.sin(6 * yy + seed), np.cos(4 * xx + yy), np.sin(3 * xx * yy + 2)], -1) ** 2
    img = (0.5 + 250 * xx[..., None] ** 2.2 * np.array([1.0, 0.9, 0.8])) * (0.6 + 0.4 * wave)
    for _ in range(8):
        y0, x0 = rng.integers(0, h - 12), rng.integers(0, w - 16)
        img[y0:y0 + 12, x0:x0 + 16] = rng.uniform(0, 1, 3) ** 2 * rng.choice([50, 300, 1000, peak])
    for _ in range(6):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        img[y0:y0 + 4, x0:x0 + 4] = peak * rng.uniform(0.5, 1.0)
    return img


def _encode(nits: np.ndarray, transfer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display light (nits) -> 10-bit limited-range BT.2020 NCL 4:2:0 planes (uint16). HLG: the inverse of zimg's
    per-channel HLG EOTF (1000 nits * E^1.2), so the highlights land where intended."""
    if transfer == "pq":
        m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 32, 3424 / 4096, 2413 / 128, 2392 / 128
        p = np.clip(nits / 10000, 0, 1) ** m1
        e = ((c1 + c2 * p) / (1 + c3 * p)) ** m2
    else:
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        s = np.clip(nits / 1000, 0, 1) ** (1 / 1.2)
        e = np.where(s <= 1 / 12, np.sqrt(3 * s), a * np.log(np.maximum(12 * s - b, 1e-9)) + c)
    kr, kb = 0.2627, 0.0593
    yp = kr * e[..., 0] + (1 - kr - kb) * e[..., 1] + kb * e[..., 2]
    cb, cr = (e[..., 2] - yp) / (2 * (1 - kb)), (e[..., 0] - yp) / (2 * (1 - kr))
    q = lambda x: np.clip(np.round(x), 0, 1023).astype(np.uint16)  # noqa: E731
    half = lambda c: (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) / 4  # noqa: E731
    return q(64 + 876 * yp), q(512 + 896 * half(cb)), q(512 + 896 * half(cr))


def _ffmpeg_y(frames, transfer: str, peak_nits: float) -> np.ndarray:
    """FFmpeg's recipe on raw 10-bit planes (tagged BT.2020 / PQ or HLG / limited) -> (n, H, W) uint8 Y planes."""
    h, w = frames[0][0].shape
    raw = b"".join(p.astype("<u2").tobytes() for f in frames for p in f)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le",
           "-s", f"{w}x{h}", "-color_primaries", "bt2020", "-color_trc", FF_TRC[transfer], "-colorspace", "bt2020nc",
           "-color_range", "tv", "-i", "-", "-vf", RECIPE.format(f"{peak_nits / 100:g}"), "-f", "rawvideo",
           "-pix_fmt", "yuv420p", "-"]
    out = subprocess.run(cmd, input=raw, capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(len(frames), h * w * 3 // 2)[:, :h * w].reshape(-1, h, w)


@pytest.mark.parametrize("transfer, peak", [("pq", 1000.0), ("pq", 4000.0), ("hlg", 1000.0)])
def test_matches_ffmpeg_recipe(transfer, peak):
    """Our R'G'B' vs FFmpeg 9.0 (zimg) on the same planes, compared on the BT.709 Y plane.

    - Exact path (``clip=False``): round(luma) is FFmpeg's Y to within 1 code value at < 0.5 % of the pixels,
      PSNR-Y >= 70 dB (measured: 0.01-0.17 % of the pixels off by one, 76-88 dB; rounding ties between our
      float32 and zimg's own approximations). Not bit-exact by design.
    - The project's path (clip to [0, 255], round RGB to uint8, :func:`rgb_to_yuv420`): PSNR-Y >= 54 dB and
      max |dY| <= 3 (measured 56.0-56.4 dB, max 1-3): rounding RGB to 8 bits moves luma by up to half a code, so
      ~15 % of Y values are off by one; clipping R'G'B' > 1 (4:2:0 overshoot next to highlights at the peak,
      which zscale keeps as Y > 235) costs up to 3.
    - The comparison can fail: a peak 10 % off puts > 5 % of the exact path's Y values off (measured 47-55 dB).
    """
    frames = [_encode(_scene(seed, peak), transfer) for seed in range(FRAMES)]
    tm = ToneMap(transfer, peak)
    assert tm.ffmpeg_filter == RECIPE.format(f"{peak / 100:g}")
    ref = _ffmpeg_y(frames, transfer, peak).astype(np.int16)
    exact = np.stack([np.floor(luma(tonemap_planes(*f, tm, clip=False), "bt709") + 0.5) for f in frames])
    d = np.abs(exact - ref)
    assert d.max() <= 1 and np.mean(d > 0) < 0.005, (d.max(), np.mean(d > 0))
    assert psnr_plane(ref.reshape(-1, W), exact.reshape(-1, W)) >= 70.0
    ours = np.stack([rgb_to_yuv420(np.floor(tonemap_planes(*f, tm) + 0.5).astype(np.uint8), "bt709")[0]
                     for f in frames])
    psnr = psnr_plane(ref.reshape(-1, W), ours.reshape(-1, W))
    assert psnr >= 54.0 and np.abs(ours - ref).max() <= 3, (psnr, np.abs(ours - ref).max())
    off = ToneMap(transfer, peak * 1.1)
    wrong = np.stack([np.floor(luma(tonemap_planes(*f, off, clip=False), "bt709") + 0.5) for f in frames])
    assert np.mean(wrong != ref) > 0.05

def test_values_and_shapes():
    """Output layout and range; black stays black, PQ 100 nits grey maps to hable(1) / hable(peak)."""
    y = np.full((4, 6), 64, np.uint16)
    c = np.full((2, 3), 512, np.uint16)
    out = tonemap_planes(y, c, c, ToneMap("pq", 1000))
    assert out.shape == (4, 6, 3) and out.dtype == np.float32 and np.all(out == 0)
    e100 = 0.508078  # PQ code of 100 nits
    y[:] = round(64 + 876 * e100)
    hable = lambda x: (x * (0.15 * x + 0.05) + 0.004) / (x * (0.15 * x + 0.5) + 0.06) - 0.02 / 0.3  # noqa: E731
    grey = tonemap_planes(y, c, c, ToneMap("pq", 1000))
    assert np.allclose(grey, 255 * (hable(1.0) / hable(10.0)) ** (1 / 2.4), rtol=2e-3)
    with pytest.raises(ValueError):
        tonemap_planes(y[:3], c, c, ToneMap("pq"))
    with pytest.raises(ValueError):
        ToneMap("sdr")
    with pytest.raises(ValueError):
        ToneMap("pq", 1000, "reinhard")
    assert ToneMap("pq").name == "hable (FFmpeg tonemap, desat 0, peak 1000 nits)"


def test_hdr_metadata_and_frame(tmp_path):
    """A 2-frame lossless HEVC Main10 clip by libx265 with HDR10 SEI: the decoded frame's side data parse back to
    the x265 parameters, and tonemap_frame of the decoded frame equals tonemap_planes of the source planes."""
    planes = _encode(_scene(5, 1000.0, 64, 64), "pq")
    path = tmp_path / "hdr10.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p10le"
        s.codec_context.options = {"preset": "ultrafast", "x265-params": (
            f"log-level=error:lossless=1:hdr10=1:master-display={X265_MASTER}:max-cll=1000,400:colorprim=bt2020:"
            "transfer=smpte2084:colormatrix=bt2020nc")}
        for i in range(2):
            fr = av.VideoFrame(64, 64, "yuv420p10le")
            for dst, src in zip(fr.planes, planes):
                buf = np.zeros((dst.height, dst.line_size // 2), np.uint16)
                buf[:, :src.shape[1]] = src
                dst.update(buf)
            fr.pts = i
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    with av.open(str(path)) as inp:
        frame = next(inp.decode(video=0))
        meta = hdr_metadata(frame)
        assert meta == HdrMeta(max_luminance_nits=1000.0, min_luminance_nits=0.005, max_cll=1000, max_fall=400,
                               master_display_x265=X265_MASTER)
        assert frame_transfer(frame) == "pq"
        for a, b in zip(frame_planes(frame), planes):
            np.testing.assert_array_equal(a, b)
        tm = ToneMap("pq", 1000.0)
        np.testing.assert_array_equal(tonemap_frame(frame, tm), tonemap_planes(*planes, tm))
    assert hdr_metadata(av.VideoFrame(16, 16, "yuv420p10le")) == HdrMeta()
