"""JointSR vs stitched OmniSR vs OmniSR-O on full frames, and the deblock branch's effect on block edges.

For every image: the optimal map from the ``--scorer`` (default light), then PSNR-Y (BT.601, crop 0, original
region) of
- ``omnisr_o``: uniform x4, the whole LR frame through the x4 OmniSR (the baseline),
- ``omnisr_stitched``: each block by its scale's OmniSR alone, stitched (the paper's ablation case 3),
- ``omnisr_context``: each scale's OmniSR on a full plane with neighbours resampled in (ours),
- ``jointsr`` and ``jointsr_no_deblock`` (the band replacement switched off),
and, for the multi-scale reconstructions, the MSE on Y inside the 8-pixel HR band around internal block
edges vs the rest (``edge_mse`` / ``interior_mse``): what the deblock branch is for.

usage: python -m bench.jointsr_eval IMAGES... [--scorer light] [--jointsr CKPT_DIR] [--skip N] [--limit N]
       [--json out.json]
(``--jointsr`` evaluates a `bbmr-train jointsr` checkpoint directory instead of the shipped weights)
       python -m bench.jointsr_eval --merge part1.json part2.json ... --json all.json
(one result from runs over disjoint image subsets, e.g. one 1-thread process per core with --skip/--limit)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bbmr_stream.allocate import allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.device import pick_device
from bbmr_stream.evaluate import rescale
from bbmr_stream.imageio import list_images, read_image
from bbmr_stream.metrics import psnr_y, rgb_to_y
from bench.common import emit
from models.factory import make_scorer, make_upscaler


def edge_mask(h: int, w: int, block: int = 128, band: int = 8) -> np.ndarray:
    ys = np.arange(h) % block
    xs = np.arange(w) % block
    ny = ((ys < band) | (ys >= block - band)) & (np.arange(h) >= band) & (np.arange(h) < (h // block) * block)
    nx = ((xs < band) | (xs >= block - band)) & (np.arange(w) >= band) & (np.arange(w) < (w // block) * block)
    return ny[:, None] | nx[None, :]


KINDS = ("psnr_y", "edge_mse", "interior_mse")
CONVENTIONS = "PSNR-Y BT.601 crop 0; edge band = HR pixels within 8 px of an internal block edge"


def summarize(rows: list[dict], scorer: str, jointsr: str, branches) -> dict:
    """The result document: per-image rows and their unweighted means (dB for PSNR-Y, Y MSE on [0,255])."""
    names = list(rows[0]["psnr_y"])
    mean = {k: {n: float(np.mean([r[k][n] for r in rows])) for n in names} for k in KINDS}
    return {"scorer": scorer, "jointsr": jointsr, "branches": branches, "images": rows, "mean": mean,
            "conventions": CONVENTIONS}


def merge(parts: list[dict]) -> dict:
    """Merge results over disjoint image subsets; they must come from the same models, scorer and conventions."""
    keys = ("scorer", "jointsr", "branches", "conventions")
    for p in parts[1:]:
        diff = [k for k in keys if p.get(k) != parts[0].get(k)]
        if diff:
            raise ValueError(f"results differ in {', '.join(diff)}: not merged")
    rows = [r for p in parts for r in p["images"]]
    names = [r["name"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("an image appears in more than one result: not merged")
    return summarize(rows, parts[0]["scorer"], parts[0]["jointsr"], parts[0]["branches"])


def _from_dir(path: str, dev: torch.device):
    from models.jointsr import JointSRUpscaler
    from models.registry import load_run

    return JointSRUpscaler(load_run(path)[0], dev)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="merge earlier results instead of evaluating")
    ap.add_argument("--scorer", default="light")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--branches", nargs="+", metavar="K=DIR", help="per-scale OmniSR checkpoint dirs for the "
                    "scorer, OmniSR-O and the stitched baselines (default: the shipped light models)")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    ap.add_argument("--jointsr", help="a `bbmr-train jointsr` checkpoint directory (default: shipped weights)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.merge:
        import json
        from pathlib import Path

        try:
            emit(merge([json.loads(Path(p).read_text()) for p in args.merge]), args.json)
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"error: {e}")
        return
    if not args.paths:
        ap.error("give image paths, or --merge JSON...")
    dev = pick_device(args.device)
    scales = (2, 4, 8)
    if args.branches:  # explicit per-scale models (e.g. the ones a JointSR checkpoint was initialised from)
        from models.registry import SRModel
        from models.scorers import scorer_from_models
        from models.train import load_branch
        from models.upscalers import OmniSRUpscaler

        nets = {int(k): SRModel(load_branch(v).eval().to(dev), int(k))
                for k, v in (b.split("=", 1) for b in args.branches)}
        scorer = scorer_from_models(nets, scales, dev)
        ups = {"omnisr_context": OmniSRUpscaler(nets, dev, "context"),
               "omnisr_stitched": OmniSRUpscaler(nets, dev, "tile")}
    else:
        scorer = make_scorer(args.scorer, scales, dev)
        ups = {"omnisr_context": make_upscaler("omnisr", scales, dev, "context"),
               "omnisr_stitched": make_upscaler("omnisr", scales, dev, "tile")}
    ups |= {
           "jointsr": make_upscaler("jointsr", scales, dev) if not args.jointsr else _from_dir(args.jointsr, dev)}
    rows = []
    for p in list_images(args.paths)[args.skip:][: args.limit]:
        img = read_image(p)
        g = BlockGrid(img.shape[0], img.shape[1])
        f = allocate("optimal", scorer.score(torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(dev)),
                     scales, 4, weights=g.valid_fraction())
        uni = np.full(g.n_blocks, 4, np.uint8)
        row = {"name": p.name, "psnr_y": {}, "edge_mse": {}, "interior_mse": {}}
        mask = edge_mask(*img.shape[:2])
        recs = {"omnisr_o": rescale(img, uni, ups["omnisr_context"], device=dev).image}
        for name, up in ups.items():
            recs[name] = rescale(img, f, up, device=dev).image
        jm = ups["jointsr"].model
        band = jm.cfg.band
        object.__setattr__(jm.cfg, "band", 0)  # frozen dataclass: switch the replacement off for one run
        try:
            recs["jointsr_no_deblock"] = rescale(img, f, ups["jointsr"], device=dev).image
        finally:
            object.__setattr__(jm.cfg, "band", band)
        for name, rec in recs.items():
            row["psnr_y"][name] = psnr_y(img, rec)
            d = (rgb_to_y(img) - rgb_to_y(rec)) ** 2
            row["edge_mse"][name] = float(d[mask].mean())
            row["interior_mse"][name] = float(d[~mask].mean())
        rows.append(row)
        print(p.name, {k: round(v, 2) for k, v in row["psnr_y"].items()}, "edge MSE",
              {k: round(v, 2) for k, v in row["edge_mse"].items()}, flush=True)
    emit(summarize(rows, args.scorer, args.jointsr or "shipped", args.branches or "shipped"), args.json)


if __name__ == "__main__":
    main()
