"""``bbmr-package input.mp4 --out stream/``: flags -> :class:`~packager.config.PackageConfig` + ladder ->
:func:`packager.package` -> the rendition table. Bad input exits with code 2 and one line on stderr, a full
disk with code 4 and one line, the previous stream unchanged (``bbmr_stream.cli.run_cli``); the pipeline itself
is :mod:`packager.pipeline`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings

from bbmr_stream.allocate import DEFAULT_SCALES
from bbmr_stream.cli import add_backend, add_device, run_cli
from bbmr_stream.errors import InputError
from bbmr_stream.evaluate import parse_scales
from bbmr_stream.family import FAMILIES, REFINE_METHOD, RungSpec, parse_ladder
from bbmr_stream.manifest import Manifest
from bbmr_stream.progress import RichProgress
from models.adapt import AdaptConfig
from models.hcd import HCDConfig
from models.title import ENCODINGS
from packager.config import (
    ALLOCATORS,
    CODECS,
    CONTAINERS,
    LAYOUTS,
    REALLOC,
    SEARCHES,
    TEN_BIT,
    AutoLadder,
    Ladder,
    PackageConfig,
)
from packager.runner import RunConfig

DEFAULT_LADDER = "auto"


def build_parser() -> argparse.ArgumentParser:
    """The flags; every default is the config's (:class:`PackageConfig`, :class:`AutoLadder`)."""
    c, auto = PackageConfig, AutoLadder
    ap = argparse.ArgumentParser(prog="bbmr-package", description="Package a video as a BBMR ABR stream.")
    ap.add_argument("input")
    ap.add_argument("--out", required=True, help="stream directory to create")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    ap.add_argument("--scorer", default=c.scorer,
                    help="BBMR block scorer: bicubic | light | full (default %(default)s: the shipped 1-OSAG OmniSR)")
    ap.add_argument("--allocator", default=c.allocator, choices=ALLOCATORS,
                    help="BBMR scale allocator (default %(default)s)")
    ap.add_argument("--scales", default=",".join(map(str, DEFAULT_SCALES)),
                    help="BBMR block downscale factors, comma list from 2,4,8 (default %(default)s)")
    ap.add_argument("--overall", type=int, default=c.overall,
                    help="BBMR LR pixel budget = uniform x OVERALL (default %(default)s)")
    ap.add_argument("--ladder", default=DEFAULT_LADDER,
                    help="auto (default: search the rate-quality hull of every family and size on a sample of the "
                         "title and ship the rungs on it, see packager/hull.py), or a comma list of plain:CRF, "
                         "plain:WxH:CRF, plain-sr:K:CRF, uniform:CRF, bbmr:CRF (bbmr_stream/family.py)")
    ap.add_argument("--fast", action="store_true",
                    help="--ladder auto: plain at 3 sizes and plain-sr only (grid: 13 candidates instead of 45); the "
                         "rung choice is coarser (packager/ladder.py FAST)")
    ap.add_argument("--study", help="--ladder auto: reuse the candidates measured by `bbmr-bench rd` on this "
                    "title (its rd.json) instead of measuring them again")
    ap.add_argument("--auto-search", default=auto.search, choices=SEARCHES,
                    help="--ladder auto: hull = search the CRFs and sizes on the rate-quality hull (default); grid = "
                    "measure the fixed grid of CRF 18-38 step 5 at 5 sizes")
    ap.add_argument("--auto-min-kbps", type=float, default=auto.min_kbps,
                    help="--ladder auto (hull): the lowest rung's rate (default: what the smallest size costs at "
                    "CRF 38)")
    ap.add_argument("--auto-max-rungs", type=int, default=auto.max_rungs,
                    help="--ladder auto: at most this many rungs (default %(default)s)")
    ap.add_argument("--auto-sample-segments", type=int, default=auto.sample_segments,
                    help="--ladder auto: measure the candidates on this many segments spread over the title "
                         "(default %(default)s)")
    ap.add_argument("--auto-measure-frames", type=int, default=auto.measure_frames,
                    help="--ladder auto: PSNR-Y of each candidate on this many evenly spaced frames of the sample "
                         "(default %(default)s)")
    ap.add_argument("--block", type=int, default=c.block, help="BBMR block size in source pixels (default %(default)s)")
    ap.add_argument("--layout", choices=LAYOUTS, default=c.layout,
                    help="BBMR/uniform LR block streams: one atlas picture, or one picture per scale "
                         "(default %(default)s, docs/formats.md)")
    ap.add_argument("--codec", choices=CODECS, default=c.codec, help="video codec (default %(default)s)")
    ap.add_argument("--preset", default=c.preset, help="x264/x265 preset: ultrafast ... veryslow (default %(default)s)")
    ap.add_argument("--lossless", action="store_true", help="x264 qp 0 / x265 lossless (tests, references)")
    rng = ap.add_mutually_exclusive_group()
    rng.add_argument("--sdr-only", action="store_true",
                     help="an HDR (PQ/HLG) source: only the SDR ladder, tone-mapped to BT.709 (default: HDR rungs "
                          "too; packager/deep.py); a 10-bit SDR source: only the 8-bit ladder")
    rng.add_argument("--hdr-only", action="store_true",
                     help="an HDR source: only its 10-bit HDR rungs (HEVC Main10, plain)")
    ap.add_argument("--ten-bit", choices=TEN_BIT, default=c.ten_bit,
                    help="a 10-bit SDR source: 10-bit plain rungs beside the 8-bit ladder in HEVC Main10 (hevc), "
                         "H.264 High10 (h264: few players decode it) or none (off) (default %(default)s)")
    ap.add_argument("--segment", type=float, default=c.segment,
                    help="segment (and GOP) duration in seconds (default %(default)s)")
    ap.add_argument("--container", choices=CONTAINERS, default=c.container,
                    help="HLS segment format: fmp4 (fragmented MP4 with an init segment: about 4 bytes of overhead "
                         "per frame) or mpegts (188-byte packets: tens of kbps of overhead at 30 fps) "
                         "(default %(default)s)")
    ap.add_argument("--realloc", choices=REALLOC, default=c.realloc,
                    help="re-score and re-allocate: at segment starts (gop), every frame (every), or at segment "
                         "starts and whenever the blocks' detail changed (auto, see packager/reuse.py)")
    ap.add_argument("--rate-lambda", type=float, default=c.rate_lambda,
                    help="rate-aware allocation (optimal allocator): weight of the bit-cost proxy "
                         "(bbmr_stream/rate.py), in units of the H.264 lambda at the middle BBMR rung's CRF; 0 = off")
    ap.add_argument("--realloc-threshold", type=float, default=c.realloc_threshold,
                    help="auto: share of blocks whose detail changed that triggers a re-allocation "
                         "(default %(default)s)")
    ap.add_argument("--upscaler", default=c.upscaler, help="upscaler whose PSNR-Y goes into the manifest: "
                    "auto (BBMR: jointsr, else omnisr; uniform: omnisr = OmniSR-O; else bicubic) | bicubic | "
                    "omnisr | jointsr")
    ap.add_argument("--no-measure", action="store_true", help="skip decoding the stream back to measure PSNR-Y")
    ap.add_argument("--no-web-models", action="store_true",
                    help="do not export the plain-sr renditions' client models to ONNX (web/: the browser player of "
                         "bbmr-play --web; the page then shows those renditions upscaled by the browser)")
    ap.add_argument("--measure-frames", type=int, default=c.measure_frames,
                    help="measure each rendition's PSNR-Y on this many evenly spaced frames (default %(default)s; "
                         "0 = every frame: a plain-sr or BBMR rendition then runs its SR model on all of them)")
    ap.add_argument("--niqe-frames", type=int, default=c.niqe_frames,
                    help="NIQE of the first N measured frames per rendition (default %(default)s = off)")
    ap.add_argument("--max-frames", type=int, help="package only the first N frames (default: all)")
    ap.add_argument("--workers", default=os.environ.get("BBMR_WORKERS", "auto"),
                    help="worker processes on this machine: N, or auto (one per CPU core; default %(default)s, "
                         "$BBMR_WORKERS); the stream is the same for any N")
    ap.add_argument("--cluster", help="run the tasks on a Ray cluster: ray://HOST:PORT (Ray Client), HOST:PORT (its "
                                      "GCS, from a cluster node) or auto (the cluster this machine is in); the "
                                      "source path must be reachable by every node")
    ap.add_argument("--adapt", action="store_true",
                    help="per-title models: fine-tune each plain-sr rendition's SR model (the --upscaler's, e.g. "
                         "fast = FastSR) on the title and ship it in the stream, counted in the rendition's rate "
                         "(packager/adapt.py)")
    ap.add_argument("--adapt-minutes", type=float,
                    help="--adapt: training minutes per model (default: 1 per 10 s of 1080p-sized source, "
                         "0.5..30)")
    ap.add_argument("--adapt-steps", type=int,
                    help="--adapt: exactly this many training steps per model (a result that does not depend on "
                         "the machine's speed; overrides --adapt-minutes)")
    ap.add_argument("--adapt-seed", type=int, default=0, help="--adapt: random seed (default %(default)s)")
    ap.add_argument("--adapt-encoding", choices=ENCODINGS,
                    help="--adapt: the model files' encoding (models/title.py): delta-int4 (a 4-bit difference to "
                         "the shipped weights, a quarter of fp16; the default), delta-int8 (half of fp16), fp16")
    add_refine(ap)
    add_device(ap)
    add_backend(ap)
    return ap


def add_refine(ap: argparse.ArgumentParser) -> None:
    """``--refine hcd`` and its settings (:class:`models.hcd.HCDConfig`; defaults are its own)."""
    h = HCDConfig
    ap.add_argument("--refine", choices=("none", REFINE_METHOD), default="none",
                    help="hcd: collaborative LR (models/hcd.py): every plain-sr and uniform rung's LR pictures "
                         "optimised through the client upscaler (--ladder auto: refined candidates beside the "
                         "others; a ladder item ending in :hcd refines that rung only)")
    ap.add_argument("--refine-steps", type=int, help=f"--refine: steps per stage, N_x = N_y (default {h.steps})")
    ap.add_argument("--refine-eps", type=float,
                    help=f"--refine: l2 ball radius as RMS per value on the 8-bit scale (default {h.eps:g})")
    ap.add_argument("--refine-alpha", type=float,
                    help=f"--refine: step length as RMS per value on the 8-bit scale (default {h.alpha:g})")
    ap.add_argument("--refine-rate", type=float,
                    help=f"--refine: weight of the bit proxy in the loss (default {h.rate:g} = none)")


def refine_config(args: argparse.Namespace, any_item: bool = False) -> HCDConfig:
    """``--refine-*`` -> the refinement settings; they need ``--refine hcd`` or a ladder item ending in :hcd."""
    given = {k: getattr(args, f"refine_{k}") for k in ("steps", "eps", "alpha", "rate")
             if getattr(args, f"refine_{k}") is not None}
    if given and args.refine == "none" and not any_item:
        raise InputError("--refine-steps, --refine-eps, --refine-alpha and --refine-rate need --refine hcd")
    cfg = HCDConfig(**given)
    cfg.check()
    return cfg


def refined_ladder(specs: list[RungSpec], refine: bool) -> tuple[RungSpec, ...]:
    """``--refine hcd`` on an explicit ladder: every rung of a refinable family refined."""
    if not refine:
        return tuple(specs)
    out = [dataclasses.replace(s, refine=True) if FAMILIES[s.family].refinable else s for s in specs]
    if not any(s.refine for s in out):
        raise InputError(f"--refine {REFINE_METHOD}: the ladder has no rung it refines (plain-sr, uniform)")
    if len({s.name for s in out}) != len(out):
        raise InputError("--refine: the ladder then has duplicate rungs")
    return tuple(out)


def config_from(args: argparse.Namespace) -> tuple[PackageConfig, Ladder]:
    """The run and the ladder the flags ask for."""
    cfg = PackageConfig(
        input=args.input, out=args.out, force=args.force, scorer=args.scorer, allocator=args.allocator,
        scales=parse_scales(args.scales), overall=args.overall, block=args.block, layout=args.layout,
        realloc=args.realloc, realloc_threshold=args.realloc_threshold, rate_lambda=args.rate_lambda,
        codec=args.codec, preset=args.preset, lossless=args.lossless, segment=args.segment,
        container=args.container, max_frames=args.max_frames, measure=not args.no_measure,
        ranges="sdr-only" if args.sdr_only else "hdr-only" if args.hdr_only else "auto", ten_bit=args.ten_bit,
        web_models=not args.no_web_models,
        measure_frames=args.measure_frames,
        niqe_frames=args.niqe_frames, upscaler=args.upscaler, device=args.device, backend=args.backend,
        adapt=adapt_config(args))
    auto = AutoLadder(fast=args.fast, study=args.study, max_rungs=args.auto_max_rungs, search=args.auto_search,
                      min_kbps=args.auto_min_kbps, refine=args.refine != "none",
                      sample_segments=args.auto_sample_segments, measure_frames=args.auto_measure_frames)
    auto.check()  # the --auto-* flags are checked whatever the ladder, as every flag is
    specs = None if args.ladder == "auto" else parse_ladder(args.ladder)
    cfg = dataclasses.replace(cfg, refine=refine_config(args, any(s.refine for s in specs or [])))
    return cfg, auto if specs is None else refined_ladder(specs, args.refine != "none")


def run_config(args: argparse.Namespace) -> RunConfig:
    """``--workers`` / ``--cluster`` -> where the tasks run."""
    w = str(args.workers).strip()
    if w != "auto" and not w.isdigit():
        raise InputError(f"--workers {args.workers}: a number of processes or auto")
    if args.cluster is not None and not args.cluster.strip():
        raise InputError("--cluster: an address (ray://HOST:PORT, HOST:PORT or auto)")
    run = RunConfig(workers=0 if w == "auto" else int(w), cluster=args.cluster)
    run.check()
    return run


def adapt_config(args: argparse.Namespace) -> AdaptConfig | None:
    """``--adapt*`` -> the adaptation config (None without ``--adapt``; its options alone are an error)."""
    if not args.adapt:
        if args.adapt_minutes is not None or args.adapt_steps is not None or args.adapt_encoding is not None:
            raise InputError("--adapt-minutes, --adapt-steps and --adapt-encoding need --adapt")
        return None
    return AdaptConfig(minutes=args.adapt_minutes, steps=args.adapt_steps, seed=args.adapt_seed,
                       **({"encoding": args.adapt_encoding} if args.adapt_encoding else {}))


def summary(man: Manifest, console) -> None:
    """The rendition table (results) on stdout; timing on ``console`` (stderr)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{man.source['frames']} frames, {man.source['width']}x{man.source['height']}")
    cols = {"rendition": lambda r: r.name, "family": lambda r: r.kind,
            "coded picture(s)": lambda r: " + ".join(f"{w}x{h}" for w, h in r.pictures),
            "kbps": lambda r: f"{r.bitrate_kbps:.0f}" + (f" ({r.parts_kbps['model']:.1f} model)"
                                                         if r.parts_kbps.get("model") else ""),
            "PSNR-Y dB (upscaler)": lambda r: f"{r.psnr_y:.2f} ({r.psnr_y_upscaler})" if r.psnr_y is not None else "-"}
    if any(r.niqe is not None for r in man.renditions):
        cols["NIQE"] = lambda r: f"{r.niqe:.2f}" if r.niqe is not None else "-"
    if any(r.share for r in man.renditions):
        cols["x" + " / x".join(map(str, man.scales)) + " share"] = \
            lambda r: " / ".join(f"{r.share.get(str(k), 0):.2f}" for k in man.scales) if r.share else "-"
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in man.renditions:
        t.add_row(*(f(r) for f in cols.values()))
    Console(emoji=False).print(t)
    timing = man.conventions.get("timing_s", {})
    console.print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    console = Console(stderr=True, emoji=False)

    def go() -> int:
        from packager.api import package

        cfg, ladder = config_from(args)
        run = run_config(args)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            man = package(cfg, ladder, RichProgress(console), run)
        summary(man, console)
        Console(emoji=False).print(f"wrote {cfg.out}")
        return 0

    return run_cli("bbmr-package", go)


if __name__ == "__main__":
    sys.exit(main())
