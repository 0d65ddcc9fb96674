"""``bbmr-eval``: the paper's image experiment on the user's own images.

``bbmr-eval images DIR_OR_FILES... --allocators uniform,paper,optimal --scorer bicubic --upscaler bicubic``
rescales every image with each allocator at the same LR pixel budget (uniform ``--overall``), reconstructs
it and reports PSNR-Y (BT.601, unrounded Y, measured on the original unpadded image, crop 0) and, with
``--niqe``, NIQE (MATLAB niqe.m semantics, Y rounded, crop 0). ``bbmr-eval niqe FILES...`` reports NIQE only.
Exit code 2 with a one-line message on bad input. The library is :mod:`packager.image_eval`.
"""

from __future__ import annotations

import argparse
import json
import sys

from bbmr_stream.allocate import DEFAULT_OVERALL, DEFAULT_SCALES
from bbmr_stream.cli import add_backend, add_device, run_cli
from bbmr_stream.downscale import MODES
from bbmr_stream.evaluate import SAMPLE_IMAGES, parse_scales
from bbmr_stream.imageio import write_text_atomic
from bbmr_stream.progress import console_progress
from bbmr_stream.upscale import BORDER_MODES
from packager.image_eval import ImagesConfig, eval_images, niqe_images


def images_config(args: argparse.Namespace) -> ImagesConfig:
    return ImagesConfig(paths=tuple(args.paths), sample=args.sample,
                        allocators=tuple(a.strip() for a in args.allocators.split(",") if a.strip()),
                        scorer=args.scorer, upscaler=args.upscaler, overall=args.overall,
                        scales=parse_scales(args.scales), block=args.block, mode=args.mode, border=args.border,
                        niqe=args.niqe, device=args.device, backend=args.backend)


def print_images(out: dict, config: ImagesConfig) -> None:
    """The PSNR-Y table (and mean NIQE) on stdout."""
    from rich.console import Console
    from rich.table import Table

    allocators = list(config.allocators)
    table = Table(title=f"PSNR-Y (dB), scorer {config.scorer}, upscaler {config.upscaler}, overall x{config.overall}")
    table.add_column("image")
    table.add_column("size")
    for a in allocators:
        table.add_column(a, justify="right")
        if a != "uniform" and "uniform" in allocators:
            table.add_column(f"{a}-uniform", justify="right")
    rows = out["images"] + [{"name": "mean", "width": None, "psnr_y": out["mean"]["psnr_y"]}]
    for im in rows:
        cells = [im["name"], f"{im['width']}x{im['height']}" if im["width"] else ""]
        for a in allocators:
            cells.append(f"{im['psnr_y'][a]:.2f}")
            if a != "uniform" and "uniform" in allocators:
                cells.append(f"{im['psnr_y'][a] - im['psnr_y']['uniform']:+.2f}")
        table.add_row(*cells)
    Console(emoji=False).print(table)
    if config.niqe:
        Console(emoji=False).print("mean NIQE: " + ", ".join(f"{a} {v:.4f}" for a, v in out["mean"]["niqe"].items()))


def print_niqe(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"NIQE (MATLAB niqe.m semantics, Y, crop {res['crop']}; lower is better)")
    table.add_column("image")
    table.add_column("NIQE", justify="right")
    for r in res["images"]:
        table.add_row(r["name"], f"{r['niqe']:.5f}")
    Console(emoji=False).print(table)


def cmd_images(args: argparse.Namespace) -> int:
    config = images_config(args)
    out = eval_images(config, console_progress())
    print_images(out, config)
    if args.json:
        write_text_atomic(args.json, json.dumps(out, indent=2))
    return 0


def cmd_niqe(args: argparse.Namespace) -> int:
    res = niqe_images(args.paths, args.crop)
    print_niqe(res)
    if args.json:
        write_text_atomic(args.json, json.dumps(res, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-eval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("images", help="rescale images with each allocator and report PSNR-Y (and NIQE)")
    im.add_argument("paths", nargs="*", help="image files or directories")
    im.add_argument("--sample", action="store_true",
                    help=f"also use the sample photos that ship with scikit-image ({', '.join(SAMPLE_IMAGES)})")
    im.add_argument("--allocators", default="uniform,paper,optimal")
    im.add_argument("--scorer", default="bicubic", help="bicubic | light | full")
    im.add_argument("--upscaler", default="bicubic", help="bicubic | omnisr | jointsr")
    im.add_argument("--overall", type=int, default=DEFAULT_OVERALL)
    im.add_argument("--scales", default=",".join(map(str, DEFAULT_SCALES)))
    im.add_argument("--block", type=int, default=128)
    im.add_argument("--mode", choices=MODES, default="frame", help="per-block downscale: whole frame or per block")
    im.add_argument("--border", choices=BORDER_MODES, default="context",
                    help="reconstruct each scale as a whole plane (context) or every tile alone (tile)")
    im.add_argument("--niqe", action="store_true", help="also report NIQE of every reconstruction")
    add_device(im)
    add_backend(im)
    im.add_argument("--json", help="write the results as JSON here")
    nq = sub.add_parser("niqe", help="NIQE of image files")
    nq.add_argument("paths", nargs="+")
    nq.add_argument("--crop", type=int, default=0, help="pixels cut at every border before NIQE")
    nq.add_argument("--json")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("bbmr-eval", lambda: cmd_images(args) if args.cmd == "images" else cmd_niqe(args))


if __name__ == "__main__":
    sys.exit(main())
