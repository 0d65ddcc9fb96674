import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.blocks import BlockGrid, merge, merge_tensor, pad, split, split_tensor


@given(h=st.integers(1, 300), w=st.integers(1, 300), block=st.sampled_from([1, 8, 16, 64, 128]),
       channels=st.sampled_from([None, 1, 3]), seed=st.integers(0, 2**31 - 1))
def test_split_merge_exact_inverse(h, w, block, channels, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    g = BlockGrid(h, w, block)
    b = split(x, block)
    assert b.shape[:3] == (g.n_blocks, block, block)
    assert g.grid_h == -(-h // block) and g.grid_w == -(-w // block)
    np.testing.assert_array_equal(merge(b, g), x)


@given(h=st.integers(1, 200), w=st.integers(1, 200))
def test_padding_replicates_edges(h, w):
    x = np.arange(h * w, dtype=np.int64).reshape(h, w)
    p = pad(x, 64)
    assert p.shape == (-(-h // 64) * 64, -(-w // 64) * 64)
    np.testing.assert_array_equal(p[:h, :w], x)
    np.testing.assert_array_equal(p[h:, :w], np.broadcast_to(x[-1], (p.shape[0] - h, w)))
    np.testing.assert_array_equal(p[:, w:], np.broadcast_to(p[:, w - 1:w], (p.shape[0], p.shape[1] - w)))


def test_raster_order():
    x = np.zeros((256, 384), dtype=np.uint8)
    for i in range(2):
        for j in range(3):
            x[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = i * 3 + j
    b = split(x)
    assert [int(t[0, 0]) for t in b] == list(range(6))


def test_tensor_split_merge_match_numpy():
    x = torch.rand(1, 3, 256, 384)
    bt = split_tensor(x, 128)
    bn = split(x[0].permute(1, 2, 0).numpy(), 128)
    np.testing.assert_array_equal(bt.permute(0, 2, 3, 1).numpy(), bn)
    torch.testing.assert_close(merge_tensor(bt, 2, 3), x)


def test_valid_fraction_and_mask():
    g = BlockGrid(200, 130, 128)
    np.testing.assert_allclose(g.valid_fraction(), [1.0, 1 * 2 / 128, 72 / 128 * 1, 72 / 128 * 2 / 128])
    m = g.valid_mask()
    np.testing.assert_allclose(m.reshape(4, -1).mean(1), g.valid_fraction())


def test_bad_sizes():
    with pytest.raises(ValueError):
        BlockGrid(0, 5)
    with pytest.raises(ValueError):
        merge(np.zeros((3, 128, 128)), BlockGrid(256, 256))
