import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.allocate import allocate, allocate_optimal, allocate_paper, budget, group_sizes, lr_pixels, total_error


def psnr_to_mse(p):
    return 255.0**2 / 10 ** (np.asarray(p, dtype=np.float64) / 10)


# Hand-computed example for Alg. 1 (scales 2/4/8, a:c = 1:4, 10 blocks -> at most 2 groups).
# PSNR per block at x2, x4, x8; earn = P2 - P4, pay = P4 - P8.
TABLE = np.array([
    [40.0, 30.0, 28.0],   # b0 earn 10   pay 2
    [35.0, 30.0, 29.0],   # b1 earn 5    pay 1
    [31.0, 30.0, 29.5],   # b2 earn 1    pay 0.5
    [30.5, 30.0, 29.9],   # b3 earn 0.5  pay 0.1
    [30.2, 30.0, 29.8],   # b4 earn 0.2  pay 0.2
    [30.1, 30.0, 29.7],   # b5 earn 0.1  pay 0.3
    [32.0, 30.0, 27.0],   # b6 earn 2    pay 3
    [33.0, 30.0, 26.0],   # b7 earn 3    pay 4
    [30.3, 30.0, 29.95],  # b8 earn 0.3  pay 0.05
    [30.4, 30.0, 29.6],   # b9 earn 0.4  pay 0.4
])


def test_group_sizes():
    assert group_sizes(2, 4, 8) == (1, 4)
    assert group_sizes(1, 2, 4) == (1, 4)
    assert group_sizes(2, 4, 16) == (5, 16)
    a, c = group_sizes(2, 4, 16)
    assert a * (1 / 4 - 1 / 16) == pytest.approx(c * (1 / 16 - 1 / 256))


def test_paper_hand_computed():
    # group 1: k1 = {b0} (earn 10); k3 = the 4 cheapest pays {b8 .05, b3 .1, b4 .2, b5 .3} = .65 < 10: taken
    # group 2: k1 = {b1} (earn 5); k3 = next cheapest unused {b9 .4, b2 .5, b6 3, b7 4} = 7.9 > 5: stop
    out = allocate_paper(psnr_to_mse(TABLE), (2, 4, 8), 4)
    expect = np.array([2, 4, 4, 8, 8, 8, 4, 4, 8, 4])
    np.testing.assert_array_equal(out, expect)
    assert lr_pixels(out) == budget(10)
    # a threshold above the first group's margin stops everything
    np.testing.assert_array_equal(allocate_paper(psnr_to_mse(TABLE), t=9.4), np.full(10, 4))
    np.testing.assert_array_equal(allocate_paper(psnr_to_mse(TABLE), t=9.3), expect)


def test_paper_block_never_both():
    # b0 is the best x2 candidate (earn 20 dB) and also the cheapest x8 candidate (pay 0 dB)
    t = np.array([[50, 30, 30]] + [[30.1, 30, 29.9]] * 9, dtype=float)
    out = allocate_paper(psnr_to_mse(t))
    assert out[0] == 2
    assert (out == 8).sum() == 4 and (out == 2).sum() == 1


def test_paper_rejects_bad_sets():
    with pytest.raises(ValueError):
        allocate_paper(np.ones((4, 2)), (2, 4))
    with pytest.raises(ValueError):
        allocate_paper(np.ones((4, 3)), (2, 4, 8), overall=2)


@st.composite
def tables(draw):
    scales = draw(st.sampled_from([(2, 4, 8), (1, 2, 4, 8, 16), (2, 4, 8, 16)]))
    n = draw(st.integers(1, 60))
    overall = draw(st.sampled_from([s for s in scales if s in (2, 4, 8)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # distortion decreasing towards finer scales: cumulative positive increments from the finest scale
    inc = rng.gamma(draw(st.floats(0.2, 3.0)), draw(st.floats(0.1, 200.0)), size=(n, len(scales)))
    dist = np.cumsum(inc, axis=1)
    if draw(st.booleans()):
        dist[rng.random(n) < 0.2] = 0.0  # some perfectly flat blocks
    w = rng.uniform(0.05, 1.0, n) if draw(st.booleans()) else np.ones(n)
    return dist, scales, overall, w


@given(tables())
def test_budget_and_optimality(case):
    dist, scales, overall, w = case
    n = dist.shape[0]
    opt = allocate("optimal", dist, scales, overall, weights=w)
    assert lr_pixels(opt) <= budget(n, overall)
    e_opt = total_error(dist, scales, opt, w)
    if overall in scales:
        uni = allocate("uniform", dist, scales, overall, weights=w)
        assert lr_pixels(uni) == budget(n, overall)
        assert e_opt <= total_error(dist, scales, uni, w) * (1 + 1e-12) + 1e-9
    if len(scales) == 3 and overall == scales[1]:
        pap = allocate("paper", dist, scales, overall, weights=w)
        assert lr_pixels(pap) <= budget(n, overall)
        assert not ((pap == scales[0]) & (pap == scales[2])).any()
        assert e_opt <= total_error(dist, scales, pap, w) * (1 + 1e-12) + 1e-9


@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_optimal_matches_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    scales = (2, 4, 8)
    dist = np.cumsum(rng.gamma(1.0, 50.0, size=(n, 3)), axis=1)
    best = min((total_error(dist, scales, np.array(c)), c) for c in itertools.product(scales, repeat=n)
               if lr_pixels(np.array(c)) <= budget(n))
    opt = allocate_optimal(dist, scales, 4)
    assert total_error(dist, scales, opt) == pytest.approx(best[0], rel=1e-12, abs=1e-12)


def test_optimal_budget_infeasible():
    with pytest.raises(ValueError):
        allocate_optimal(np.ones((3, 3)), (2, 4, 8), overall=16)


def test_unknown_allocator():
    with pytest.raises(ValueError):
        allocate("greedy", np.ones((2, 3)))


def test_rate_aware_optimal_trades_bits():
    rng = np.random.default_rng(5)
    n = 40
    dist = np.cumsum(rng.gamma(1.0, 30.0, size=(n, 3)), axis=1)
    rate = np.stack([np.full(n, 4000.0), np.full(n, 1000.0), np.full(n, 250.0)], axis=1) * rng.uniform(0.5, 2, (n, 1))
    f0 = allocate("optimal", dist)
    f1 = allocate("optimal", dist, rate=rate, lam=2000.0)  # comparable to dist * 128^2 per block
    bits = lambda f: rate[np.arange(n), np.searchsorted([2, 4, 8], f)].sum()  # noqa: E731
    assert lr_pixels(f1) <= budget(n)
    assert bits(f1) < bits(f0)
    assert total_error(dist, (2, 4, 8), f1) >= total_error(dist, (2, 4, 8), f0)
    np.testing.assert_array_equal(allocate("optimal", dist, rate=rate, lam=0.0), f0)
