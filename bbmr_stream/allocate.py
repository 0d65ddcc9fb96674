"""Scale allocation: which downscale factor each block gets, under the LR pixel budget.

Inputs are a distortion table ``dist[i, s]`` = MSE on Y (the [0, 255] scale) of block i reconstructed from
scale ``scales[s]`` (a :class:`Scorer` makes it), the scale set, and the overall factor. The budget is that
of a uniform frame at ``overall`` over the padded grid: ``n_blocks * (block / overall)^2`` LR pixels.

Allocators (all return an (n_blocks,) uint8 array of factors, raster order):

- ``uniform``: every block at ``overall`` (which must be in the set).
- ``paper``: Alg. 1 of the BBMR paper (Li & Zhou, AAAI-25) for exactly three scales k1 < k2 = overall < k3.
  PSNR per block and scale; earn_i = P_i1 - P_i2 (dB won by going to k1), pay_i = P_i2 - P_i3 (dB lost by
  going to k3); earn sorted descending and pay ascending (best candidates first, our reading of Eqs. 4/5).
  Groups of ``a`` k1-blocks and ``c`` k3-blocks keep the pixel count: a (1/k1^2 - 1/k2^2) =
  c (1/k2^2 - 1/k3^2), the smallest integers (1:4 for {2, 4, 8}); a group is taken while
  sum(earn) > sum(pay) + t. A block is never both k1 and k3 (the pay list skips blocks already at k1 and
  vice versa).
- ``optimal`` (default): minimises the frame's total squared error (sum over blocks of weight_i * MSE_i,
  weight = the block's share of real, unpadded pixels) under the budget: a multiple-choice knapsack solved
  exactly by dynamic programming over budget units (the gcd of the per-scale LR block sizes).
  Never worse than ``uniform`` or ``paper`` on the same table (both are feasible points of the same problem).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Protocol, Sequence

import numpy as np

from bbmr_stream.metrics import mse_to_psnr

DEFAULT_SCALES: tuple[int, ...] = (2, 4, 8)
DEFAULT_OVERALL = 4


class Scorer(Protocol):
    """Per-block distortion of every scale in the set."""

    scales: tuple[int, ...]

    def score(self, frame, block: int = 128) -> np.ndarray:
        """(n_blocks, len(scales)) float64 MSE on BT.601 Y ([0, 255] scale) over each block's real pixels."""
        ...


def block_costs(scales: Sequence[int], block: int = 128) -> np.ndarray:
    """LR pixels one block takes at each scale."""
    for k in scales:
        if block % k:
            raise ValueError(f"block size {block} is not divisible by scale {k}")
    return np.array([(block // k) ** 2 for k in scales], dtype=np.int64)


def budget(n_blocks: int, overall: int = DEFAULT_OVERALL, block: int = 128) -> int:
    """LR pixel budget of a frame of ``n_blocks`` blocks: that of a uniform ``overall`` downscale."""
    if block % overall:
        raise ValueError(f"block size {block} is not divisible by the overall scale {overall}")
    return n_blocks * (block // overall) ** 2


def lr_pixels(factors: np.ndarray, block: int = 128) -> int:
    f = np.asarray(factors, dtype=np.int64).reshape(-1)
    return int(((block // f) ** 2).sum())


def _check(dist: np.ndarray, scales: Sequence[int]) -> np.ndarray:
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != len(scales) or d.shape[0] < 1:
        raise ValueError(f"distortion table must be (n_blocks, {len(scales)}), got {d.shape}")
    if list(scales) != sorted(set(scales)):
        raise ValueError(f"scales must be strictly increasing, got {tuple(scales)}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("distortions must be finite and >= 0")
    return d


def allocate_uniform(dist: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES,
                     overall: int = DEFAULT_OVERALL, block: int = 128, **_) -> np.ndarray:
    d = _check(dist, scales)
    if overall not in scales:
        raise ValueError(f"uniform allocation needs the overall scale {overall} in the set {tuple(scales)}")
    return np.full(d.shape[0], overall, dtype=np.uint8)


def group_sizes(k1: int, k2: int, k3: int) -> tuple[int, int]:
    """Smallest (a, c) with a (1/k1^2 - 1/k2^2) = c (1/k2^2 - 1/k3^2)."""
    r = (Fraction(1, k2 * k2) - Fraction(1, k3 * k3)) / (Fraction(1, k1 * k1) - Fraction(1, k2 * k2))
    return r.numerator, r.denominator  # a / c = r


def allocate_paper(dist: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES, overall: int = DEFAULT_OVERALL,
                   block: int = 128, t: float = 0.0, **_) -> np.ndarray:
    """BBMR Alg. 1 (see module docstring); ``t`` is the paper's threshold in dB."""
    d = _check(dist, scales)
    if len(scales) != 3:
        raise ValueError(f"the paper allocator needs exactly three scales, got {tuple(scales)}")
    k1, k2, k3 = scales
    if overall != k2:
        raise ValueError(f"the paper allocator keeps the middle scale's budget: overall must be {k2}")
    n = d.shape[0]
    p = mse_to_psnr(np.maximum(d, 1e-10))  # dB; the floor keeps perfect blocks finite
    earn = p[:, 0] - p[:, 1]
    pay = p[:, 1] - p[:, 2]
    # stable sorts so ties keep raster order
    earn_order = np.argsort(-earn, kind="stable")
    pay_order = np.argsort(pay, kind="stable")
    a, c = group_sizes(k1, k2, k3)
    out = np.full(n, k2, dtype=np.uint8)
    taken = np.zeros(n, dtype=bool)
    ei = pi = 0
    for _ in range(n // (a + c)):  # block_max_k1 groups at most
        # next a unused blocks by earn, then next c unused blocks by pay (skipping this group's k1 picks)
        grp1: list[int] = []
        while len(grp1) < a and ei < n:
            b = int(earn_order[ei])
            ei += 1
            if not taken[b]:
                grp1.append(b)
        grp3: list[int] = []
        pj = pi
        while len(grp3) < c and pj < n:
            b = int(pay_order[pj])
            pj += 1
            if not taken[b] and b not in grp1:
                grp3.append(b)
        if len(grp1) < a or len(grp3) < c:
            break
        if pay[grp3].sum() + t > earn[grp1].sum():
            break
        pi = pj
        taken[grp1] = True
        taken[grp3] = True
        out[grp1] = k1
        out[grp3] = k3
    return out


def allocate_optimal(dist: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES, overall: int = DEFAULT_OVERALL,
                     block: int = 128, weights: np.ndarray | None = None, rate: np.ndarray | None = None,
                     lam: float = 0.0, **_) -> np.ndarray:
    """Exact minimum of sum_i w_i * dist[i, s_i] subject to sum_i cost(s_i) <= budget.

    Rate-aware variant (``rate`` (n_blocks, n_scales) bits and ``lam`` > 0): minimises
    sum_i [w_i * dist[i, s_i] * block^2 + lam * rate[i, s_i]] (SSE on Y + lambda * bits) under the same budget."""
    d = _check(dist, scales)
    n, ns = d.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n)
    if rate is not None and lam > 0:
        r = np.asarray(rate, dtype=np.float64)
        if r.shape != d.shape:
            raise ValueError(f"rate table {r.shape} does not match the distortion table {d.shape}")
        d = d * block * block + lam * r / np.maximum(w[:, None], 1e-12)  # w multiplies it back below
    cost = block_costs(scales, block)
    unit = math.gcd(*cost.tolist())
    cu = (cost // unit).astype(np.int64)
    cap = budget(n, overall, block) // unit
    if cu.min() * n > cap:
        raise ValueError(f"budget of x{overall} is below even every block at x{max(scales)}")
    wd = d * w[:, None]
    # dp[b] = min total error of the blocks so far using at most b units; start: 0 error for any b
    big = np.inf
    dp = np.zeros(cap + 1)
    choice = np.empty((n, cap + 1), dtype=np.uint8)
    cand = np.empty((ns, cap + 1))
    for i in range(n):
        for s in range(ns):
            c = min(int(cu[s]), cap + 1)  # a scale dearer than the whole budget is never possible
            cand[s, :c] = big
            cand[s, c:] = dp[: cap + 1 - c] + wd[i, s]
        choice[i] = np.argmin(cand, axis=0)
        dp = cand[choice[i], np.arange(cap + 1)]
    # backtrack from the full budget
    out = np.empty(n, dtype=np.uint8)
    b = cap
    sc = np.asarray(scales, dtype=np.uint8)
    for i in range(n - 1, -1, -1):
        s = int(choice[i, b])
        out[i] = sc[s]
        b -= int(cu[s])
    return out


ALLOCATORS: dict[str, Callable[..., np.ndarray]] = {
    "uniform": allocate_uniform,
    "paper": allocate_paper,
    "optimal": allocate_optimal,
}


def allocate(name: str, dist: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES,
             overall: int = DEFAULT_OVERALL, block: int = 128, weights: np.ndarray | None = None,
             **kw) -> np.ndarray:
    """Dispatch by name; result is checked against the budget."""
    if name not in ALLOCATORS:
        raise ValueError(f"unknown allocator {name!r} (choose from {', '.join(ALLOCATORS)})")
    out = ALLOCATORS[name](dist, scales, overall, block, weights=weights, **kw)
    used, cap = lr_pixels(out, block), budget(len(out), overall, block)
    if used > cap:
        raise AssertionError(f"{name} allocation uses {used} LR pixels > budget {cap}")
    return out


def total_error(dist: np.ndarray, scales: Sequence[int], factors: np.ndarray,
                weights: np.ndarray | None = None) -> float:
    """sum_i w_i * dist[i, scale of block i] (the optimal allocator's objective)."""
    d = np.asarray(dist, dtype=np.float64)
    idx = np.searchsorted(np.asarray(scales), np.asarray(factors).reshape(-1))
    w = np.ones(d.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    return float((d[np.arange(d.shape[0]), idx] * w).sum())
