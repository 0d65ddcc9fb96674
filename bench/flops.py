"""FLOPs of JointSR vs OmniSR-O (uniform x4, whole LR frame) with ``torch.utils.flop_counter``.

Counted on the meta device (no compute). FlopCounterMode counts 2 FLOPs per multiply-add of convolutions,
matmuls and attention; element-wise ops, norms and activations are not counted (nor are they by the
paper's counter, as far as its numbers tell). The scale map is a random one with the mean shares of the
optimal bicubic allocation on bench2k (x2 11.5 %, x4 42.4 %, x8 46.0 %), trimmed to the exact x4 budget.

usage: python -m bench.flops [--res-num 1 5] [--json out.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bbmr_stream.allocate import budget, lr_pixels
from bench.common import emit
from models.jointsr import JointSR, JointSRConfig
from models.omnisr import OmniSR, OmniSRConfig

SHARES = {2: 0.115, 4: 0.424, 8: 0.461}


def typical_map(n: int, seed: int = 0) -> np.ndarray:
    """Random factors with about SHARES, at or under the uniform-x4 budget (groups of 1 x2 + 4 x8)."""
    n2 = int(round(SHARES[2] * n))
    n8 = min(4 * n2, n - n2)
    f = np.array([2] * n2 + [8] * n8 + [4] * (n - n2 - n8), dtype=np.uint8)
    np.random.default_rng(seed).shuffle(f)
    assert lr_pixels(f) <= budget(n)
    return f


def count(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def measure(h: int, w: int, res_num: int, margin: int = 0) -> dict:
    dev = torch.device("meta")
    gh, gw = -(-h // 128), -(-w // 128)
    o = OmniSR(OmniSRConfig(scale=4, res_num=res_num)).to(dev).eval()
    j = JointSR(JointSRConfig(res_num=res_num, margin=margin)).to(dev).eval()
    mg = 2 * margin
    f = typical_map(gh * gw)
    tiles = {k: torch.empty(int((f == k).sum()), 3, 128 // k, 128 // k, device=dev) for k in (2, 4, 8)}
    index = {k: torch.from_numpy(np.flatnonzero(f == k)) for k in (2, 4, 8)}
    with torch.no_grad():
        f_o = count(lambda: o(torch.empty(1, 3, h // 4, w // 4, device=dev)))
        f_j = count(lambda: j(tiles, index, gh, gw))
        parts = {
            "branches": count(lambda: [j.branches[str(k)].features(
                torch.empty(t.shape[0], 3, 128 // k + mg, 128 // k + mg, device=dev)) for k, t in tiles.items()]),
            "upsamples": count(lambda: [j.upsamples[str(k)](torch.empty(t.shape[0], 64, 128 // k + 2 * bool(mg),
                                                                      128 // k + 2 * bool(mg),
                                                                      device=dev)) for k, t in tiles.items()]),
            "deblock": count(lambda: j.replace_edges(torch.empty(1, 64, gh * 64, gw * 64, device=dev), gh, gw)),
            "final_up": count(lambda: j.up(torch.empty(1, 64, gh * 64, gw * 64, device=dev))),
        }
    return {"frame": f"{w}x{h}", "res_num": res_num, "margin": margin, "omnisr_o_gflops": f_o / 1e9,
            "jointsr_gflops": f_j / 1e9,
            "ratio": f_j / f_o, "jointsr_parts_gflops": {k: v / 1e9 for k, v in parts.items()},
            "shares": {str(k): float(np.mean(f == k)) for k in (2, 4, 8)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res-num", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--margin", type=int, nargs="+", default=[0, 4])
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = [measure(h, w, r, m) for r in args.res_num for m in args.margin for (h, w) in ((1080, 1920), (2160, 3840))]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
