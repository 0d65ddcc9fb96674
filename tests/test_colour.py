"""The colour convention (bbmr_stream.colour) and video PSNR-Y tied to FFmpeg's psnr filter."""

import re
import subprocess

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.colour import frame_to_rgb, luma, rgb_to_yuv420, video_frame, yuv_to_rgb
from bbmr_stream.metrics import psnr_luma


def _smooth(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    from skimage import data

    img = np.asarray(data.astronaut())
    y, x = np.random.default_rng(seed).integers(0, 200, 2)
    return np.ascontiguousarray(img[y:y + h, x:x + w])


@pytest.mark.parametrize("matrix", ["bt709", "bt601", "bt2020"])
@pytest.mark.parametrize("full", [False, True])
def test_luma_of_converted_rgb_is_the_y_plane(matrix, full):
    """RGB -> YUV -> RGB by the exact conversion: the luma of the RGB is the Y plane to within RGB rounding
    (swscale's default path is off by about a code value on average)."""
    y, u, v = rgb_to_yuv420(_smooth(), matrix, full)
    rgb = yuv_to_rgb(y, u, v, matrix, full)
    err = np.abs(luma(rgb, matrix, full) - y)
    assert err.mean() < 0.3 and np.percentile(err, 99) < 0.7 and err.max() < 2.0  # > 0.5: gamut clipping only


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_flat_colour_round_trip(r, g, b):
    """A flat colour survives RGB -> 8-bit 4:2:0 -> RGB within 2 code values per channel (a Cr code step is
    ~1.8 RGB levels of R in limited range: half a step of Y, Cb and Cr rounding adds up to < 2.5)."""
    img = np.empty((4, 6, 3), np.uint8)
    img[:] = (r, g, b)
    back = yuv_to_rgb(*rgb_to_yuv420(img, "bt709", False), "bt709", False)
    assert np.abs(back.astype(int) - img).max() <= 2


def test_video_frame_round_trip_odd_chroma_height():
    """A 4:2:0 frame whose chroma height is odd (270 lines) goes into PyAV and back unchanged."""
    rgb = np.ascontiguousarray(np.repeat(np.repeat(_smooth(27, 48), 10, 0), 10, 1))  # 270 x 480
    fr = video_frame(rgb, "bt709", False)
    assert (fr.width, fr.height, fr.format.name) == (480, 270, "yuv420p")
    back, y = frame_to_rgb(fr, "bt709", False)
    np.testing.assert_array_equal(y, rgb_to_yuv420(rgb, "bt709", False)[0])
    assert np.abs(back.astype(int) - rgb).mean() < 1.5


def _encode(path, frames, crf):
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.codec_context.options = {"qp": "0"} if crf is None else {"crf": str(crf)}
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1  # BT.709, limited
        for i, img in enumerate(frames):
            f = video_frame(img, "bt709", False)
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def test_psnr_luma_matches_ffmpeg_psnr_filter(tmp_path):
    """Per frame, FFmpeg's psnr filter (y) on the two files == psnr_plane on the decoded Y planes, and ==
    psnr_luma(source Y, decoded RGB) (what the packager and player measure) within 0.01 dB."""
    import imageio_ffmpeg

    from bbmr_stream.decode import frames, probe
    from bbmr_stream.metrics import psnr_plane

    # a natural picture, saturation and contrast reduced so that coded values stay inside the RGB gamut:
    # RGB clamps Y outside 16..235 and out-of-gamut colours (coding overshoot), the one way the luma of a
    # displayed picture departs from its Y plane (by ~0.06 dB on the full-range picture)
    src_frames = [(0.3 * im + 0.3 * im.mean(axis=2, keepdims=True) + 60).astype(np.uint8)
                  for im in (_smooth(128, 192, i).astype(np.float64) for i in range(6))]
    ref, dist = tmp_path / "ref.mkv", tmp_path / "dist.mkv"
    _encode(ref, src_frames, None)
    _encode(dist, src_frames, 30)
    stats = tmp_path / "psnr.log"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(dist), "-i", str(ref),
                    "-lavfi", f"[0:v][1:v]psnr=stats_file={stats.name}", "-f", "null", "-"],
                   check=True, cwd=tmp_path)
    # the stats file prints mse_y with 2 decimals (psnr_y with only 2 decimals of dB): PSNR from mse_y
    want = [10 * np.log10(255.0**2 / float(re.search(r"mse_y:([0-9.]+)", line).group(1)))
            for line in stats.read_text().splitlines()]
    r, d = probe(str(ref)), probe(str(dist))
    pairs = list(zip(frames(r), frames(d)))
    planes = [psnr_plane(a.y, b.y) for a, b in pairs]
    got = [psnr_luma(a.y, b.rgb, d.matrix, d.full_range) for a, b in pairs]
    assert len(got) == len(want) == 6
    assert 25 < min(want) < 45  # a real distortion, not a trivial match
    np.testing.assert_allclose(planes, want, atol=0.002)
    # the luma of the displayed 8-bit RGB adds its rounding noise (~0.1 code values RMS)
    np.testing.assert_allclose(got, want, atol=0.03)


def _ffmpeg_psnr_y(dist: str, ref: str, cwd) -> list[float]:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", dist, "-i", ref,
                    "-lavfi", "[0:v][1:v]psnr=stats_file=psnr.log", "-f", "null", "-"], check=True, cwd=cwd)
    return [10 * np.log10(255.0**2 / float(re.search(r"mse_y:([0-9.]+)", line).group(1)))
            for line in (cwd / "psnr.log").read_text().splitlines()]


def test_manifest_psnr_of_a_plain_rung_is_ffmpegs(tmp_path):
    """The packager's PSNR-Y of a full-size plain rung (mean of per-frame PSNR) == FFmpeg's psnr filter on
    the shipped segments against the source, within 0.01 dB (full-range picture, coding overshoot and all)."""
    from bbmr_stream.manifest import load
    from packager.cli import main as package

    src = tmp_path / "src.mkv"
    _encode(src, [_smooth(128, 192, i) for i in range(8)], None)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--ladder", "plain:32", "--segment", "0.4", "--device", "cpu"]) == 0
    rend = load(out).renditions[0]
    cat = tmp_path / "all.ts"
    cat.write_bytes(b"".join((out / s.file).read_bytes() for s in rend.segments))
    want = _ffmpeg_psnr_y(str(cat), str(src), tmp_path)
    assert len(want) == 8 and 25 < np.mean(want) < 45
    assert abs(rend.psnr_y - float(np.mean(want))) < 0.01


# The numpy definition of the conversions (float32, the project's rounding); bbmr_stream.colour computes the
# same operations in torch for speed and must stay bit-identical to it.
def _np_round(a):
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


def _np_rgb_to_yuv420(rgb, matrix, full):
    from bbmr_stream.colour import _coeffs, _ranges

    kr, kg, kb = _coeffs(matrix)
    off, yspan, cspan = _ranges(full)
    x = rgb.astype(np.float32) / 255.0
    yp = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    pb = (x[..., 2] - yp) / (2.0 * (1.0 - kb))
    pr = (x[..., 0] - yp) / (2.0 * (1.0 - kr))
    planes = [_np_round(off + yspan * yp)]
    for c in (pb, pr):
        v = 0.5 * (c[0::2] + c[1::2])
        left = np.concatenate([v[:, :1], v[:, 1:-1:2]], axis=1)
        hz = 0.25 * left + 0.5 * v[:, 0::2] + 0.25 * v[:, 1::2]
        planes.append(_np_round(128.0 + cspan * hz))
    return planes


def _np_up(c, h, w):
    c = c.astype(np.float32)
    up = np.concatenate([c[:1], c[:-1]], axis=0)
    dn = np.concatenate([c[1:], c[-1:]], axis=0)
    v = np.empty((2 * c.shape[0], c.shape[1]), np.float32)
    v[0::2] = 0.75 * c + 0.25 * up
    v[1::2] = 0.75 * c + 0.25 * dn
    right = np.concatenate([v[:, 1:], v[:, -1:]], axis=1)
    out = np.empty((v.shape[0], 2 * v.shape[1]), np.float32)
    out[:, 0::2] = v
    out[:, 1::2] = 0.5 * (v + right)
    return out[:h, :w]


def _np_yuv_to_rgb(y, u, v, matrix, full):
    from bbmr_stream.colour import _coeffs, _ranges

    kr, kg, kb = _coeffs(matrix)
    off, yspan, cspan = _ranges(full)
    h, w = y.shape
    if u.shape != y.shape:
        u, v = _np_up(u, h, w), _np_up(v, h, w)
    yp = (y.astype(np.float32) - off) / yspan
    pb = (np.asarray(u, np.float32) - 128.0) / cspan
    pr = (np.asarray(v, np.float32) - 128.0) / cspan
    r = yp + 2.0 * (1.0 - kr) * pr
    b = yp + 2.0 * (1.0 - kb) * pb
    g = (yp - kr * r - kb * b) / kg
    return _np_round(np.stack([r, g, b], axis=-1) * 255.0)


@pytest.mark.parametrize("matrix", ["bt709", "bt601", "bt2020"])
@pytest.mark.parametrize("full", [False, True])
def test_torch_conversions_are_bit_identical_to_the_numpy_definition(matrix, full):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    rgb[:4] = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8)[:, None, :]
    for got, want in zip(rgb_to_yuv420(rgb, matrix, full), _np_rgb_to_yuv420(rgb, matrix, full)):
        assert np.array_equal(got, want)
    # every (Y, U, V) triple at 4:4:4, and random 4:2:0 planes with odd sizes
    y, u, v = (a.reshape(4096, 4096).astype(np.uint8) for a in np.meshgrid(*[np.arange(256)] * 3, indexing="ij"))
    assert np.array_equal(yuv_to_rgb(y, u, v, matrix, full), _np_yuv_to_rgb(y, u, v, matrix, full))
    y = rng.integers(0, 256, (271, 481), dtype=np.uint8)
    u, v = (rng.integers(0, 256, (136, 241), dtype=np.uint8) for _ in range(2))
    assert np.array_equal(yuv_to_rgb(y, u, v, matrix, full), _np_yuv_to_rgb(y, u, v, matrix, full))
