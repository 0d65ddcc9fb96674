import math

import numpy as np
import pytest
import torch
from skimage import data

from bbmr_stream.metrics import block_mse_y, matlab_imresize, niqe, psnr_y, psnr_y_torch, rgb_to_y

# BasicSR 1.4.2 calculate_niqe(img, crop_border=0, convert_to='y') on skimage.data images
NIQE_REFERENCE = {"astronaut": 3.06495, "coffee": 4.11524, "chelsea": 2.62552, "rocket": 6.96915,
                  "camera": 3.15522}


@pytest.mark.parametrize("name", sorted(NIQE_REFERENCE))
def test_niqe_matches_basicsr(name):
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    assert niqe(img) == pytest.approx(NIQE_REFERENCE[name], abs=1e-3)


def test_niqe_orders_blur():
    img = data.astronaut()
    from PIL import Image, ImageFilter

    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(3)))
    assert niqe(blurred) > niqe(img) + 1.0


def test_niqe_too_small():
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(np.zeros((50, 200, 3), np.uint8))


def test_y_convention():
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)


def test_psnr_y_known_value_and_crop():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b += 1  # Y moves by (65.481 + 128.553 + 24.966) / 255 = 219/255
    expect = 10 * math.log10(255.0**2 / (219 / 255) ** 2)
    assert psnr_y(a, b) == pytest.approx(expect)
    c = a.copy()
    c[:2] = 0  # damage only the border: crop 2 ignores it
    assert psnr_y(a, c, crop=2) == math.inf
    assert psnr_y(a, c, crop=1) < 30
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255
    assert float(psnr_y_torch(ta, tb)[0]) == pytest.approx(expect)


def test_block_mse_valid_mask():
    hr = torch.zeros(2, 3, 4, 4)
    rec = hr.clone()
    rec[:, :, :, 2:] = 1.0  # error only in the right half
    valid = np.zeros((2, 4, 4), bool)
    valid[0] = True
    valid[1, :, :2] = True
    m = block_mse_y(hr, rec, valid)
    assert m[0] == pytest.approx(219.0**2 / 2)
    assert m[1] == 0.0


def test_matlab_imresize_half_matches_interior_of_torch_antialias():
    # same kernel (a = -0.5, stretched by 2) away from the border; borders differ (mirror vs renormalise)
    from bbmr_stream.resize import downscale

    rng = np.random.default_rng(0)
    x = rng.random((64, 48))
    m = matlab_imresize(x, 0.5)
    t = downscale(torch.from_numpy(x)[None, None], 2)[0, 0].numpy()
    assert m.shape == (32, 24)
    np.testing.assert_allclose(m[3:-3, 3:-3], np.clip(t, 0, 1)[3:-3, 3:-3], atol=1e-6)
