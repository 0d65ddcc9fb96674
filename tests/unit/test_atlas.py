import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.allocate import allocate
from bbmr_stream.atlas import layout, pack, unpack


def _no_overlap(lay, n_channels=1):
    cover = np.zeros((lay.height, lay.width), np.int32)
    for b, s in enumerate(lay.size.tolist()):
        cover[lay.y[b]:lay.y[b] + s, lay.x[b]:lay.x[b] + s] += 1
    return cover.max() <= 1


@st.composite
def allocator_maps(draw):
    """Maps the allocators emit: optimal/paper/uniform on random distortion tables."""
    gh, gw = draw(st.integers(1, 12)), draw(st.integers(1, 16))
    n = gh * gw
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dist = np.cumsum(rng.gamma(draw(st.floats(0.2, 3)), 50.0, size=(n, 3)), axis=1)
    name = draw(st.sampled_from(["optimal", "paper", "uniform"]))
    return allocate(name, dist, (2, 4, 8), 4), gh, gw


@given(allocator_maps())
def test_layout_valid_for_allocator_maps(m):
    f, gh, gw = m
    lay = layout(f, gh, gw)
    assert lay.cols == (max(gw, 2) if (f == 2).any() else gw) and lay.rows >= gh and lay.extra_rows == lay.rows - gh
    assert _no_overlap(lay)
    assert (lay.y + lay.size <= lay.height).all() and (lay.x + lay.size <= lay.width).all()
    # tiles sit on their own grid: x2 on 2-slot squares, x4 on slots, x8 on quarter slots
    assert ((lay.y % lay.size) == 0).all() and ((lay.x % lay.size) == 0).all()
    # only grids with no room for 2x2 squares grow, and by the fewest rows
    if gh >= 2 and gw >= 2 and gh % 2 == 0 and gw % 2 == 0:
        assert lay.extra_rows == 0
    if lay.extra_rows:
        with pytest.raises(Exception):
            _fits_in(f, gh, gw, lay.rows - 1)


def _fits_in(f, gh, gw, rows):
    from bbmr_stream.atlas import _try_place

    cols = max(gw, 2) if (np.asarray(f) == 2).any() else gw
    if _try_place(np.asarray(f, np.int64), rows, cols, 32, 128, 4) is None:
        raise ValueError("does not fit")


@given(allocator_maps(), st.integers(0, 1000))
def test_pack_unpack_round_trip(m, seed):
    f, gh, gw = m
    lay = layout(f, gh, gw)
    rng = np.random.default_rng(seed)
    tiles = [rng.integers(0, 256, (128 // k, 128 // k, 3), dtype=np.uint8) for k in f]
    atlas = pack(tiles, lay)
    assert atlas.shape == (lay.height, lay.width, 3)
    for a, b in zip(unpack(atlas, lay), tiles):
        np.testing.assert_array_equal(a, b)


def test_uniform_is_x4_frame_and_deterministic():
    f = np.full(6, 4)
    lay = layout(f, 2, 3)
    assert (lay.height, lay.width, lay.extra_rows) == (64, 96, 0)
    lay2 = layout(f.copy(), 2, 3)
    np.testing.assert_array_equal(lay.y, lay2.y)


def test_one_row_grid_grows():
    f = np.array([2, 8, 8, 8, 8])  # one x2 tile cannot fit in a 1-slot-high atlas
    lay = layout(f, 1, 5)
    assert lay.extra_rows == 1 and _no_overlap(lay)
