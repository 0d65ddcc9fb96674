"""Peak memory (RSS) and time of the model stages on one frame, on CPU, each stage in a fresh process.

Stages: the ``light`` scorer (round trip through the 1-OSAG OmniSR at x2/x4/x8 on whole LR planes, tiled by
``models.inference.tiled_sr``), JointSR on a mixed map (x2/x4/x8 = 12/40/48 % of the blocks, random), OmniSR-O
(uniform x4). Frame content is uniform noise (the cost does not depend on it); peak RSS is the process's
``ru_maxrss`` after the stage, "model + imports" the RSS before it. 1 thread unless ``--threads``.

usage: python -m bench.memory [--sizes 1920x1080,3840x2160] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

STAGES = ("scorer_light", "jointsr", "omnisr_o")


def run_stage(stage: str, w: int, h: int) -> dict:
    import resource

    import numpy as np
    import torch

    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.evaluate import rescale
    from bbmr_stream.resize import to_tensor
    from models.factory import make_scorer, make_upscaler

    dev = torch.device("cpu")
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    grid = BlockGrid(h, w)
    if stage == "scorer_light":
        s = make_scorer("light", (2, 4, 8), dev)
        run = lambda: s.score(to_tensor(img))  # noqa: E731
    else:
        f = (np.full(grid.n_blocks, 4, np.uint8) if stage == "omnisr_o" else
             rng.choice([2, 4, 8], size=grid.n_blocks, p=[0.12, 0.40, 0.48]).astype(np.uint8))
        up = make_upscaler("jointsr" if stage == "jointsr" else "omnisr", (2, 4, 8), dev, "context")
        run = lambda: rescale(img, f, up)  # noqa: E731
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = time.perf_counter()
    run()
    sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"stage": stage, "frame": f"{w}x{h}", "seconds": sec, "peak_rss_gib": peak, "before_gib": before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1920x1080,3840x2160")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: STAGE:WxH, run in this process
    args = ap.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        stage, size = args.one.split(":")
        w, h = map(int, size.split("x"))
        print(json.dumps(run_stage(stage, w, h)))
        return
    from bench.common import emit

    rows = []
    for size in args.sizes.split(","):
        for stage in args.stages.split(","):
            env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
            r = subprocess.run([sys.executable, "-m", "bench.memory", "--one", f"{stage}:{size}",
                                "--threads", str(args.threads)], capture_output=True, text=True, env=env)
            if r.returncode:
                rows.append({"stage": stage, "frame": size, "error": f"exit {r.returncode}: {r.stderr[-300:]}"})
            else:
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    emit({"machine": platform.processor() or platform.machine(), "threads": args.threads, "rows": rows,
          "conventions": "peak RSS = ru_maxrss of a fresh process (GiB), CPU, fp32; seconds = one call"}, args.json)


if __name__ == "__main__":
    main()
