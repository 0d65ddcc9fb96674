import numpy as np
import torch

from bbmr_stream.allocate import allocate, budget
from bbmr_stream.blocks import BlockGrid, pad_tensor, split_tensor
from bbmr_stream.downscale import all_tiles, downscale_blocks
from bbmr_stream.evaluate import rescale
from bbmr_stream.resize import downscale, to_tensor, to_uint8, upscale
from bbmr_stream.score import BicubicScorer
from bbmr_stream.upscale import BicubicUpscaler


def photo(h=300, w=420):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:h, :w])


def test_frame_mode_tiles_are_cut_from_the_whole_frame():
    x = pad_tensor(to_tensor(photo()), 128)
    t = all_tiles(x, 4, 128, "frame")
    whole = (downscale(x, 4) * 255 + 0.5).floor() / 255
    torch.testing.assert_close(t, split_tensor(whole, 32))
    tb = all_tiles(x, 4, 128, "block")
    assert (t - tb).abs().max() > 0  # block mode differs at block edges


def test_uniform_context_is_whole_frame_bicubic():
    img = photo()
    g = BlockGrid(*img.shape[:2])
    x = pad_tensor(to_tensor(img), 128)
    lr = downscale_blocks(x, g, np.full(g.n_blocks, 4, np.uint8))
    rec = BicubicUpscaler("context")(lr)
    ref = upscale((downscale(x, 4) * 255 + 0.5).floor() / 255, 4)
    torch.testing.assert_close(rec, ref)


def test_lr_pixels_match_allocation_and_budget():
    img = photo()
    g = BlockGrid(*img.shape[:2])
    dist = BicubicScorer().score(to_tensor(img))
    assert dist.shape == (g.n_blocks, 3)
    assert (dist[:, 0] <= dist[:, 2]).mean() > 0.8  # finer scale -> lower error on a photo
    f = allocate("optimal", dist, weights=g.valid_fraction())
    r = rescale(img, f, BicubicUpscaler())
    assert r.lr_pixels <= budget(g.n_blocks)
    assert r.image.shape == img.shape and r.image.dtype == np.uint8


def test_scorer_predicts_reconstruction_error_exactly_for_uniform():
    # the scorer's per-block error at x4 equals the error of the real uniform-x4 reconstruction
    from bbmr_stream.metrics import block_mse_y

    img = photo(256, 384)
    g = BlockGrid(*img.shape[:2])
    dist = BicubicScorer().score(to_tensor(img))
    r = rescale(img, np.full(g.n_blocks, 4, np.uint8), BicubicUpscaler())
    m = block_mse_y(split_tensor(to_tensor(img), 128), split_tensor(to_tensor(r.image), 128))
    np.testing.assert_allclose(dist[:, 1], m, rtol=1e-9)


def test_to_uint8_round_trip():
    img = photo(17, 23)
    np.testing.assert_array_equal(to_uint8(to_tensor(img)), img)
