"""Speed of the core steps on one 3840x2160 frame, measured in one run (ratios, not absolute targets).

- NIQE: the vectorised ``bbmr_stream.metrics.niqe`` vs a per-block loop written the way BasicSR 1.4.2's
  ``calculate_niqe`` is (one block at a time, 2-D scipy convolution): the speed-up is the figure to keep.
- scoring (bicubic round trip at x2/x4/x8) and allocation (optimal DP, paper Alg. 1) for a 4K grid.

usage: python -m bench.core_speed IMAGE [--json out.json]  (IMAGE is resized to 3840x2160 if needed)
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.ndimage import convolve
from scipy.special import gamma

from bbmr_stream import metrics as M
from bbmr_stream.allocate import allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.imageio import read_image
from bbmr_stream.resize import to_tensor
from bbmr_stream.score import BicubicScorer
from bench.common import emit


def _aggd_loop(block):
    block = block.flatten()
    gam = np.arange(0.2, 10.001, 0.001)
    r = np.reciprocal(gam)
    r_gam = np.square(gamma(r * 2)) / (gamma(r) * gamma(r * 3))
    left = np.sqrt(np.mean(block[block < 0] ** 2))
    right = np.sqrt(np.mean(block[block > 0] ** 2))
    gh = left / right
    rhat = (np.mean(np.abs(block))) ** 2 / np.mean(block**2)
    rn = (rhat * (gh**3 + 1) * (gh + 1)) / ((gh**2 + 1) ** 2)
    alpha = gam[np.argmin((r_gam - rn) ** 2)]
    f = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * f, right * f


def _feature_loop(block):
    feat = []
    a, bl, br = _aggd_loop(block)
    feat.extend([a, (bl + br) / 2])
    for shift in ([0, 1], [1, 0], [1, 1], [1, -1]):
        a, bl, br = _aggd_loop(block * np.roll(block, shift, axis=(0, 1)))
        feat.extend([a, (br - bl) * (gamma(2 / a) / gamma(1 / a)), bl, br])
    return feat


def niqe_loop(y: np.ndarray) -> float:
    """Per-block reference in the style of BasicSR 1.4.2 (for timing and as a cross-check)."""
    mu_p, cov_p, _ = M._pristine()
    win = np.outer(*(M._pristine()[2],) * 2)
    img = y.astype(np.float32)
    h, w = img.shape
    nh, nw = h // 96, w // 96
    img = img[: nh * 96, : nw * 96]
    dist = []
    for scale in (1, 2):
        mu = convolve(img, win, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(np.square(img), win, mode="nearest") - np.square(mu)))
        norm = (img - mu) / (sigma + 1)
        feat = []
        for iw in range(nw):
            for ih in range(nh):
                b = norm[ih * 96 // scale:(ih + 1) * 96 // scale, iw * 96 // scale:(iw + 1) * 96 // scale]
                feat.append(_feature_loop(b))
        dist.append(np.array(feat))
        if scale == 1:
            img = M.matlab_imresize(img / np.float32(255.0), 0.5) * np.float32(255.0)
    d = np.concatenate(dist, axis=1)
    mu_d = np.nanmean(d, axis=0)
    cov_d = np.cov(d[~np.isnan(d).any(axis=1)], rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))


def timed(fn, repeat: int = 3):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--json")
    args = ap.parse_args()
    img = read_image(args.image)
    if img.shape[:2] != (2160, 3840):
        x = torch.nn.functional.interpolate(to_tensor(img), size=(2160, 3840), mode="bicubic", antialias=True)
        img = (x.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    y = np.round(M.rgb_to_y(img))
    res: dict = {"machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                             "torch": torch.__version__}, "frame": "3840x2160"}
    t_vec, v_vec = timed(lambda: M.niqe(img))
    t_loop, v_loop = timed(lambda: niqe_loop(y), repeat=1)
    res["niqe"] = {"vectorised_s": t_vec, "loop_s": t_loop, "speedup": t_loop / t_vec,
                   "value_vectorised": v_vec, "value_loop": v_loop}
    grid = BlockGrid(2160, 3840)
    scorer = BicubicScorer()
    t_score, dist = timed(lambda: scorer.score(to_tensor(img)), repeat=1)
    w = grid.valid_fraction()
    t_opt, _ = timed(lambda: allocate("optimal", dist, weights=w))
    t_pap, _ = timed(lambda: allocate("paper", dist))
    res["score_bicubic_s"] = t_score
    res["allocate_s"] = {"optimal": t_opt, "paper": t_pap, "blocks": grid.n_blocks}
    emit(res, args.json)


if __name__ == "__main__":
    main()
