"""The colour convention (bbmr_stream.colour) and video PSNR-Y tied to FFmpeg's psnr filter."""


import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.colour import frame_to_rgb, luma, rgb_to_yuv420, video_frame, yuv_to_rgb
from tests.media import smooth_picture


@pytest.mark.parametrize("matrix", ["bt709", "bt601", "bt2020"])
@pytest.mark.parametrize("full", [False, True])
def test_luma_of_converted_rgb_is_the_y_plane(matrix, full):
    """RGB -> YUV -> RGB by the exact conversion: the luma of the RGB is the Y plane to within RGB rounding
    (swscale's default path is off by about a code value on average)."""
    y, u, v = rgb_to_yuv420(smooth_picture(), matrix, full)
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
    rgb = np.ascontiguousarray(np.repeat(np.repeat(smooth_picture(27, 48), 10, 0), 10, 1))  # 270 x 480
    fr = video_frame(rgb, "bt709", False)
    assert (fr.width, fr.height, fr.format.name) == (480, 270, "yuv420p")
    back, y = frame_to_rgb(fr, "bt709", False)
    np.testing.assert_array_equal(y, rgb_to_yuv420(rgb, "bt709", False)[0])
    assert np.abs(back.astype(int) - rgb).mean() < 1.5


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
