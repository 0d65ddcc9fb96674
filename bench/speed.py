"""Speed of the SR models per backend, and of the packager and the player per stage, measured in one run.

For each shipped model (OmniSR-light x2/x4/x8: the scorer, plain-sr and OmniSR-O; FastSR x2/x4: the fast
family) and each HR frame size (1920x1080, 3840x2160), the LR frame (``HR`` downscaled by the model's scale,
antialiased bicubic, 8 bits) is super-resolved the way the product does it (models.inference.tiled_sr) by:

- ``eager``: torch fp32, contiguous memory (the baseline every ratio is against);
- ``torch-cl``: torch fp32, channels_last (the ``torch`` backend);
- ``openvino-f32``, ``openvino-bf16`` (only on a CPU with native bf16), ``onnxruntime-f32``;

at 1 and 2 threads. Per row: ms per frame (the best of ``--repeat`` runs after one warm-up: for an exported
variant the run that exports and compiles its graph; for eager a 64-px corner), the ratio to
eager at the same threads, GFLOPs per frame (torch.utils.flop_counter: 2 per multiply-add of convolutions,
matmuls and attention), achieved GFLOP/s, max |output - eager|, PSNR-Y of the output against eager, and the
change of PSNR-Y against the HR frame (dB; PSNR-Y = BT.601 Y of RGB in [0, 1] clamped, peak 255, crop 0).
JointSR does not export (its context gathering is data dependent): eager only.

With ``--stream-clip`` the packager (``--no-measure``) and the player (headless, no reference) run on that
clip too and their per-stage seconds and fps are recorded, each after a 2-frame warm-up run that exports and
checks its graphs (a first run on a new machine pays that once: 2-4 s per shape).

usage: python -m bench.speed --image HR.png [--stream-clip clip.mp4] [--json bench/results/speed.json]
       [--md docs/speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bbmr_stream.imageio import read_image
from bbmr_stream.resize import downscale, quantize, resize_to
from bench.common import emit
from models import backend as B
from models.inference import tiled_sr
from models.registry import get_entry, load_model, load_registry

SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160)}
MODELS = ("omnisr-light-x2", "omnisr-light-x4", "omnisr-light-x8", "fastsr-x2", "fastsr-x4")


def variants() -> list[tuple[str, B.Variant | None]]:
    out: list[tuple[str, B.Variant | None]] = [("eager", None), ("torch-cl", None)]
    if B.available("openvino"):
        out.append(("openvino-f32", B.Variant("openvino", "f32")))
        if B.cpu_has_native_bf16():
            out.append(("openvino-bf16", B.Variant("openvino", "bf16")))
    if B.available("onnxruntime"):
        out.append(("onnxruntime-f32", B.Variant("onnxruntime", "f32")))
    return out


def psnr_y(a: torch.Tensor, b: torch.Tensor) -> float:
    return B.psnr_y_between(a.numpy(), b.numpy())


def gflops(model: torch.nn.Module, shape: tuple) -> float:
    m = type(model.net)(model.net.cfg).to("meta").eval() if hasattr(model, "net") else model
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.empty(*shape, device="meta"))
    return fc.get_total_flops() / 1e9


def timed(fn, repeat: int):
    """(best ms over ``repeat`` calls, the last output)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000, out


def model_rows(wid: str, hr_full: torch.Tensor, size: str, threads: int, repeat: int) -> list[dict]:
    torch.set_num_threads(threads)
    k = get_entry(wid).scales[0]
    w, h = SIZES[size]
    hr = resize_to(hr_full, h, w).clamp(0, 1)
    lr = quantize(downscale(hr, k)).contiguous()
    model = load_model(wid)
    flops = gflops(model, tuple(lr.shape))
    rows, ref, ref_psnr = [], None, None
    for name, variant in variants():
        if name == "eager":
            fn = lambda: tiled_sr(model, lr, k)  # noqa: E731
        else:
            acc = B.AcceleratedSR(load_model(wid), get_entry(wid).sha256, "torch" if variant is None else
                                  variant.backend, threads, [] if variant is None else [variant],
                                  enforce_check=False)  # checked below on the whole frame, timed anyway
            fn = lambda acc=acc: tiled_sr(acc, lr, k)  # noqa: E731
        if name != "eager" and variant is not None:
            fn()  # export and build the graph (a warm-up run)
        elif name == "eager":
            tiled_sr(model, lr[..., :64, :64], k)  # warm-up on a corner
        ms, out = timed(fn, repeat)
        out = out.clamp(0, 1)
        if ref is None:
            ref, ref_psnr = out, psnr_y(out, hr)
        used = bool(name in ("eager", "torch-cl") or psnr_y(out, ref) >= B.VERIFY_MIN_PSNR)  # the runtime check
        rows.append({"model": wid, "size": size, "lr": list(lr.shape[-2:]), "threads": threads, "variant": name,
                     "ms": round(ms, 1), "gflops": round(flops, 2), "gflop_s": round(flops / (ms / 1000), 1),
                     "max_abs_diff": float((out - ref).abs().max()), "psnr_y_vs_eager": round(psnr_y(out, ref), 2),
                     "psnr_y_vs_hr": round(psnr_y(out, hr), 3),
                     "delta_db_vs_eager": round(psnr_y(out, hr) - ref_psnr, 4), "passes_check": used})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    eager_ms = rows[0]["ms"]
    for r in rows:
        r["ratio_to_eager"] = round(r["ms"] / eager_ms, 3)
    return rows


def jointsr_row(hr_full: torch.Tensor, threads: int, repeat: int, size: str = "1080p") -> dict:
    """JointSR eager on a frame of ``size`` with the bench's typical map (bench.flops.typical_map)."""
    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.downscale import downscale_blocks
    from bench.flops import typical_map
    from models.factory import make_upscaler

    torch.set_num_threads(threads)
    w, h = SIZES[size]
    hr = resize_to(hr_full, h, w).clamp(0, 1)
    grid = BlockGrid(h, w, 128)
    hr_pad = torch.nn.functional.pad(hr, (0, grid.grid_w * 128 - w, 0, grid.grid_h * 128 - h), mode="replicate")
    lr = downscale_blocks(hr_pad, grid, typical_map(grid.n_blocks))
    up = make_upscaler("jointsr", (2, 4, 8), torch.device("cpu"))
    up(lr)
    ms, _ = timed(lambda: up(lr), repeat)
    return {"model": "jointsr", "size": size, "threads": threads, "variant": "eager", "ms": round(ms, 1)}


def scorer_rows(hr_full: torch.Tensor, threads: int) -> list[dict]:
    """The light scorer (OmniSR-light round trips at x2/x4/x8) on a 1080p frame: eager fp32 vs each backend's
    automatic choice; time, and the optimal allocation of each against eager's (blocks with the same scale,
    and the Y MSE of each allocation under eager's distortion table, as PSNR)."""
    from bbmr_stream.allocate import allocate, total_error
    from models.scorers import scorer_from_models

    torch.set_num_threads(threads)
    hr = resize_to(hr_full, 1080, 1920).clamp(0, 1)
    scales = (2, 4, 8)
    rows, ref = [], None
    for name in ("eager", "torch", "openvino", "onnxruntime"):
        if name not in ("eager", "torch") and not B.available(name):
            continue
        models = {}
        for k in scales:
            wid = f"omnisr-light-x{k}"
            m = load_model(wid)
            models[k] = m if name == "eager" else B.AcceleratedSR(m, get_entry(wid).sha256, name, threads)
        sc = scorer_from_models(models, scales, torch.device("cpu"))
        dist = sc.score(hr)  # warm-up: exports and checks
        ms, _ = timed(lambda: sc.score(hr), 1)
        f = allocate("optimal", dist, scales)
        if ref is None:
            ref = (dist, f)
        mse = total_error(ref[0], scales, f) / len(f)
        mse_ref = total_error(ref[0], scales, ref[1]) / len(f)
        used = ", ".join(sorted({m.description for m in models.values() if hasattr(m, "description")})) or "eager"
        rows.append({"scorer": "light", "size": "1080p", "threads": threads, "backend": name, "used": used,
                     "ms": round(ms, 1), "agreement": round(float(np.mean(f == ref[1])), 4),
                     "psnr_cost_db": round(10 * np.log10(mse / mse_ref), 4) if mse_ref > 0 else 0.0})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_cli(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BBMR_BACKEND": "auto"})
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t, p.stdout + p.stderr


def pipeline_rows(clip: str, frames: int) -> list[dict]:
    """The packager (--no-measure) and the player (headless, no reference) per stage on ``clip``."""
    rows = []
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        ladders = {"plain x3 + plain-sr x4 (the auto ladder's families)":
                   "plain:1920x1080:23,plain:1920x1080:29,plain:960x540:29,plain-sr:4:35",
                   "bbmr (light scorer)": "bbmr:30"}
        for label, ladder in ladders.items():
            out = Path(tmp) / re.sub(r"\W", "", label)[:20]
            run_cli([str(bindir / "bbmr-package"), clip, "--out", str(out), "--ladder", ladder, "--no-measure",
                     "--max-frames", "2"])  # warm-up: exports and checks the scorer's graphs (cached)
            shutil.rmtree(out)
            secs, stdout = run_cli([str(bindir / "bbmr-package"), clip, "--out", str(out), "--ladder", ladder,
                                    "--no-measure", "--max-frames", str(frames)])
            tail = stdout.split("seconds per stage:")[-1].split("wrote")[0]  # rich may wrap the line
            stages = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)", tail)}
            rows.append({"tool": "bbmr-package", "case": label, "frames": frames, "wall_s": round(secs, 1),
                         "stage_s": stages, "fps_without_startup": round(frames / sum(stages.values()), 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        stream = Path(tmp) / "playsrc"
        run_cli([str(bindir / "bbmr-package"), clip, "--out", str(stream), "--ladder", "plain-sr:4:35",
                 "--no-measure", "--max-frames", str(frames)])
        for ups in ("omnisr", "fast", "bicubic"):
            rep = Path(tmp) / f"play_{ups}.json"
            run_cli([str(bindir / "bbmr-play"), str(stream), "--headless", "--upscaler", ups, "--niqe-every", "0",
                     "--max-frames", "2"])  # warm-up: exports and checks the SR graph (cached)
            secs, _ = run_cli([str(bindir / "bbmr-play"), str(stream), "--headless", "--upscaler", ups,
                               "--niqe-every", "0", "--report", str(rep)])
            r = json.loads(rep.read_text())
            rows.append({"tool": "bbmr-play", "case": f"plain-sr x4 1080p, upscaler {ups}", "frames": frames,
                         "wall_s": round(secs, 1), "stage_s": r["timing_s"], "stage_fps": r["stage_fps"],
                         "backend": r["stream"].get("backend")})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# Dense fp16 tensor-core peaks from the vendors' data sheets (TFLOP/s); efficiencies assumed, not measured.
GPUS = {"T4": 65.0, "L4": 121.0, "A100": 312.0}
GPU_EFFICIENCY = (0.1, 0.3)


def gpu_estimates(res: dict) -> str:
    """ESTIMATES, not measurements (no GPU here): ms per frame = GFLOPs / (fp16 peak x efficiency), for the
    efficiency range GPU_EFFICIENCY. JointSR (not counted here) is scaled from OmniSR-light x4 by their
    measured eager CPU time ratio at 1080p."""
    seen, rows = set(), []
    for r in res["models"]:
        key = (r["model"], r["size"])
        if key in seen or r["variant"] != "eager":
            continue
        seen.add(key)
        cells = [f"{r['gflops'] / (GPUS[g] * e):.1f}" for g in GPUS for e in GPU_EFFICIENCY]
        rows.append(f"| {r['model']} | {r['size']} | {r['gflops']:.1f} | " + " | ".join(cells) + " |")
    x4 = next((r for r in res["models"] if r["model"] == "omnisr-light-x4" and r["size"] == "1080p"
               and r["variant"] == "eager" and r["threads"] == 2), None)
    j = next((r for r in res.get("jointsr", []) if r["threads"] == 2 and r["size"] == "1080p"), None)
    if x4 and j:
        ratio = j["ms"] / x4["ms"]
        cells = [f"{x4['gflops'] * ratio / (GPUS[g] * e):.1f}" for g in GPUS for e in GPU_EFFICIENCY]
        rows.append(f"| jointsr (x{ratio:.1f} omnisr-light-x4, CPU time ratio) | 1080p | "
                    f"~{x4['gflops'] * ratio:.0f} | " + " | ".join(cells) + " |")
    head = " | ".join(f"{g} at {int(e * 100)} %" for g in GPUS for e in GPU_EFFICIENCY)
    return "\n".join(["**GPU: estimates on paper, not measured** (ms per frame = GFLOPs / (dense fp16 tensor "
                      "peak x assumed efficiency); peaks " + ", ".join(f"{g} {p:.0f} TFLOP/s" for g, p in GPUS.items())
                      + "):", "", f"| model | frame | GFLOPs | {head} |", "|" + "---|" * (3 + 2 * len(GPUS))]
                     + rows)


def markdown(res: dict) -> str:
    lines = [f"Machine: {res['machine']}; torch {res['torch']}, OpenVINO {res['openvino']}, ONNX Runtime "
             f"{res['onnxruntime']}; native bf16: {res['native_bf16']}.", "",
             "| model | frame | threads | variant | ms/frame | x eager | GFLOPs | GFLOP/s | max abs diff | "
             "PSNR-Y vs eager | dB vs eager (HR) | used |", "|" + "---|" * 12]
    for r in res["models"]:
        lines.append(f"| {r['model']} | {r['size']} | {r['threads']} | {r['variant']} | {r['ms']:.0f} | "
                     f"{r['ratio_to_eager']:.2f} | {r['gflops']:.1f} | {r['gflop_s']:.0f} | {r['max_abs_diff']:.1e} | "
                     f"{r['psnr_y_vs_eager']:.1f} | {r['delta_db_vs_eager']:+.3f} | "
                     f"{'yes' if r['passes_check'] else 'no'} |")
    for r in res.get("jointsr", []):
        lines.append(f"| jointsr | {r['size']} | {r['threads']} | eager (does not export) | {r['ms']:.0f} | 1.00 | | | "
                     "| | | |")
    if res.get("scorer"):
        lines += ["", "| scorer | frame | threads | backend (variant used) | ms per scoring | x eager | same scale as "
                  "eager | Y-MSE cost of the allocation |", "|---|---|---|---|---|---|---|---|"]
        base = {r["threads"]: r["ms"] for r in res["scorer"] if r["backend"] == "eager"}
        for r in res["scorer"]:
            lines.append(f"| light | 1080p | {r['threads']} | {r['backend']} ({r['used']}) | {r['ms']:.0f} | "
                         f"{r['ms'] / base[r['threads']]:.2f} | {100 * r['agreement']:.1f} % | "
                         f"{r['psnr_cost_db']:+.3f} dB |")
    lines += ["", gpu_estimates(res)]
    if res.get("pipeline"):
        lines += ["", "| tool | case | frames | stage seconds | frames/s |", "|---|---|---|---|---|"]
        for r in res["pipeline"]:
            st = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_s"].items())
            fps = r.get("fps_without_startup") or r["stage_fps"]["total"]
            lines.append(f"| {r['tool']} | {r['case']} | {r['frames']} | {st} | {fps:.2f} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- bench.speed tables: begin -->", "<!-- bench.speed tables: end -->"


def write_md(path: Path, tables: str) -> None:
    """Replace the tables between the markers of ``path`` (docs/speed.md), or write them alone."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + tables + END + rest.split(END, 1)[1]
    else:
        text = BEGIN + "\n" + tables + END + "\n"
    path.write_text(text)


def reused_rows(log: str) -> tuple[list[dict], list[dict]]:
    """Model and scorer rows printed (one JSON per line, stderr) by an earlier run that did not finish."""
    models, scorer = [], []
    for line in Path(log).read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "variant" in r and "gflops" in r:
                models.append(r)
            elif "scorer" in r:
                scorer.append(r)
    for r in models:  # the ratio to eager of the same model, size and threads
        base = next(q["ms"] for q in models if q["variant"] == "eager" and
                    (q["model"], q["size"], q["threads"]) == (r["model"], r["size"], r["threads"]))
        r["ratio_to_eager"] = round(r["ms"] / base, 3)
    return models, scorer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True, help="an HR photo (resized to each frame size)")
    ap.add_argument("--sizes", default="1080p,4k")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per row (best kept; default %(default)s)")
    ap.add_argument("--stream-clip", help="a 1080p clip: also time the packager and the player on it")
    ap.add_argument("--stream-frames", type=int, default=60)
    ap.add_argument("--reuse-rows", help="take the model and scorer rows from an earlier run's stderr (one JSON row "
                    "per line) and measure only JointSR and the pipeline")
    ap.add_argument("--json")
    ap.add_argument("--md", help="write the Markdown tables here")
    args = ap.parse_args(argv)
    os.environ["BBMR_CACHE"] = tempfile.mkdtemp(prefix="bbmr-speed-cache-")  # every export and check is fresh
    hr = torch.from_numpy(read_image(args.image)).permute(2, 0, 1)[None].float() / 255.0
    have = load_registry()
    res: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                 "torch": torch.__version__,
                 "openvino": B.runtime_version("openvino") if B.available("openvino") else None,
                 "onnxruntime": B.runtime_version("onnxruntime") if B.available("onnxruntime") else None,
                 "native_bf16": B.cpu_has_native_bf16(), "image": args.image, "models": [], "jointsr": [], "scorer": [],
                 "convention": "ms: best of --repeat after a warm-up; PSNR-Y: BT.601 Y of clamped RGB, peak 255, "
                               "crop 0; dB vs eager (HR) = PSNR-Y(variant, HR) - PSNR-Y(eager, HR)"}
    try:
        res["machine"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                              if line.startswith("model name")) + f", {os.cpu_count()} cores"
    except (OSError, StopIteration):
        pass
    reused = reused_rows(args.reuse_rows) if args.reuse_rows else None
    for t in map(int, args.threads.split(",")):
        if reused is None:
            for size in args.sizes.split(","):
                for wid in args.models.split(","):
                    if wid in have:
                        res["models"] += model_rows(wid, hr, size, t, args.repeat)
        for size in args.sizes.split(","):
            res["jointsr"].append(jointsr_row(hr, t, 1, size))
            print(json.dumps(res["jointsr"][-1]), file=sys.stderr, flush=True)
        if reused is None:
            res["scorer"] += scorer_rows(hr, t)
    if reused is not None:
        res["models"], res["scorer"] = reused
        res["reused_rows_from"] = "an earlier run's row log (--reuse-rows): model and scorer rows; JointSR and the " \
                                  "pipeline measured in this run"
    if args.stream_clip:
        torch.set_num_threads(os.cpu_count() or 1)
        res["pipeline"] = pipeline_rows(args.stream_clip, args.stream_frames)
    if args.json:
        emit(res, args.json)
    if args.md:
        write_md(Path(args.md), markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
