"""``bbmr-bench``: the rate-quality study users re-run on their own clips, and the reports made from it.

- ``bbmr-bench rd CLIP --out DIR``: every rung family against the plain ladder (rd.json, rd.md, rd.png).
- ``bbmr-bench ladder-check STREAM RD_JSON``: a packaged ladder against a study's plain front.
- ``bbmr-bench rd-summary DIR... --out PAGE.md``: one Markdown page from several studies.
- ``bbmr-bench rd-compare --before DIR --after DIR CLIP...``: BD-rates of two sets of studies.
- ``bbmr-bench rd-shortfall DIR... [--family bbmr]``: a family's points under the plain front.
- ``bbmr-bench look CLIP --rungs ITEM,... --out look.png``: one frame as each rung's client shows it.

The library is :mod:`packager.study` and :mod:`packager.look`; this module only turns flags into their
configs and prints what they return. Bad input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from fractions import Fraction

from bbmr_stream.cli import add_backend, add_device, run_cli
from bbmr_stream.errors import InputError
from bbmr_stream.family import BBMR, FAMILIES, Plain, PlainSR, Uniform
from bbmr_stream.imageio import write_text_atomic
from bbmr_stream.manifest import CONTAINERS
from bbmr_stream.progress import console_progress
from models.adapt import AdaptConfig
from models.title import ENCODINGS
from packager import look as look_lib
from packager import study as lib
from packager.cli import add_refine, refine_config
from packager.ladder import DENSE_CRFS, DENSE_FRACTIONS


def _first_paragraph(doc: str | None) -> str:
    return (doc or "").split("\n\n")[0]


def cmd_rd(a: argparse.Namespace) -> int:
    refine = refine_config(a)  # its options without --refine hcd are an error
    config = lib.StudyConfig(
        clip=a.clip, out=a.out, frames=a.frames, measure_frames=a.measure_frames, niqe_frames=a.niqe_frames,
        families=tuple(f.strip() for f in a.families.split(",") if f.strip()), scorer=a.scorer, device=a.device,
        backend=a.backend, preset=a.preset, rate_lambda=a.rate_lambda, segment=a.segment, container=a.container,
        upscaler=a.upscaler,
        reuse=a.reuse, anchor=a.anchor, crfs=a.crfs, fractions=a.fractions,
        adapt=AdaptConfig(minutes=a.adapt_minutes, steps=a.adapt_steps, seed=a.adapt_seed,
                          **({"encoding": a.adapt_encoding} if a.adapt_encoding else {})) if a.adapt else None,
        refine=refine if a.refine != "none" else None)
    if config.adapt is not None:
        config.adapt.check()
    elif a.adapt_minutes is not None or a.adapt_steps is not None or a.adapt_encoding is not None:
        raise InputError("--adapt-minutes, --adapt-steps and --adapt-encoding need --adapt")
    if a.dense:
        if a.crfs or a.fractions or a.families != ",".join(FAMILIES):
            raise InputError("--dense sets the families, CRFs and sizes: not with --families, --crfs or --fractions")
        config = dataclasses.replace(config, families=(Plain.name,), crfs=DENSE_CRFS, fractions=DENSE_FRACTIONS)
    res = lib.run_study(config, console_progress())
    print(res.markdown)
    return 0


def parse_crfs(text: str) -> tuple[float, ...]:
    """``18-51`` (step 1) or ``18,23,28``: CRFs 0..51."""
    try:
        if "-" in text.strip("-"):
            lo, hi = (float(v) for v in text.split("-", 1))
            vals = tuple(float(c) for c in range(int(lo), int(hi) + 1)) if lo.is_integer() and hi.is_integer() else ()
        else:
            vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or not all(0 <= v <= 51 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: CRFs 0..51 as a list (18,23) or a range (18-51)")
    return tuple(sorted({float(f"{v:g}") for v in vals}))  # one rung per name (plain_crf18 ...)


def parse_fractions(text: str) -> tuple[float, ...]:
    """``1,3/4,1/2``: fractions in (0, 1]."""
    try:
        vals = tuple(float(Fraction(v.strip())) for v in text.split(",") if v.strip())
    except (ValueError, ZeroDivisionError):
        vals = ()
    if not vals or not all(0 < v <= 1 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: fractions of the source size in (0, 1], e.g. 1,3/4,1/2")
    return vals


def cmd_check(a: argparse.Namespace) -> int:
    res = lib.check_ladder(a.stream, a.study)
    print(lib.check_table(res))
    if a.json:
        write_text_atomic(a.json, json.dumps(res, indent=1))
    return 0


def cmd_summary(a: argparse.Namespace) -> int:
    out = lib.write_summary(a.dirs, a.out, a.intro)
    print(f"wrote {out}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    print(lib.compare_table(a.clips, a.before, a.after, [k.strip() for k in a.keys.split(",") if k.strip()]))
    return 0


def cmd_shortfall(a: argparse.Namespace) -> int:
    print(lib.shortfall_table(a.dirs, a.family))
    return 0


def cmd_speed(a: argparse.Namespace) -> int:
    from packager.vs_ffmpeg import SpeedConfig, markdown, run

    if not a.vs_ffmpeg:
        raise InputError("bbmr-bench speed: give --vs-ffmpeg CLIP (the SR backends' speed: python -m bench.speed)")
    if a.frames < 2:
        raise InputError("--frames must be >= 2")
    res = run(SpeedConfig(a.vs_ffmpeg, a.ladder, a.frames, a.preset, a.segment))
    text = markdown(res)
    print(text, end="")
    if a.json:
        write_text_atomic(a.json, json.dumps(res, indent=1))
    if a.md:
        write_text_atomic(a.md, text)
    return 0


def cmd_look(a: argparse.Namespace) -> int:
    from bbmr_stream.family import parse_ladder

    config = look_lib.LookConfig(clip=a.clip, rungs=tuple(parse_ladder(a.rungs)), out=a.out, frames=a.frames,
                                 frame=a.frame, crop=look_lib.parse_crop(a.crop), zoom=a.zoom, scorer=a.scorer,
                                 device=a.device, backend=a.backend)
    res = look_lib.look(config, console_progress())
    for label in res.labels:
        print(label)
    print(f"wrote {res.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-bench", description=_first_paragraph(__doc__))
    sub = ap.add_subparsers(dest="cmd", required=True)

    rd = sub.add_parser("rd", prog="bbmr-bench rd", help="the rate-quality study of every family",
                        description="The rate-quality study of every rung family against the plain ladder.")
    rd.add_argument("clip")
    rd.add_argument("--out", required=True, help="directory for rd.json, rd.md, rd.png")
    rd.add_argument("--frames", type=int, default=60, help="frames of the clip to package (default 60)")
    rd.add_argument("--measure-frames", type=int, default=10, help="PSNR-Y on this many evenly spaced frames")
    rd.add_argument("--niqe-frames", type=int, default=2)
    rd.add_argument("--families", default=",".join(FAMILIES))
    rd.add_argument("--scorer", default="light")
    add_device(rd)
    add_backend(rd)
    rd.add_argument("--preset", default="medium")
    rd.add_argument("--rate-lambda", type=float, default=0.0,
                    help="BBMR allocation's rate weight (bbmr-package --rate-lambda)")
    rd.add_argument("--segment", type=float, default=2.0, help="segment (closed GOP) seconds")
    rd.add_argument("--container", choices=CONTAINERS, default="fmp4",
                    help="HLS segment format whose bytes are the rates (default %(default)s)")
    rd.add_argument("--reuse", action="store_true", help="take the points of OUT/rd.json (same clip) and only "
                    "recompute the fronts, BD-rates, auto ladder, table and plot")
    rd.add_argument("--upscaler", default="auto", help="client upscaler of the SR families (auto: each family's "
                    "first; e.g. fast = FastSR for plain-sr)")
    rd.add_argument("--anchor", help="rd.json of a study of the same clip: its points of the families this run "
                    "does not measure join this study (e.g. `--families plain-sr --upscaler fast --anchor "
                    "DIR/rd.json` measures only plain-sr)")
    rd.add_argument("--crfs", type=parse_crfs, help="the CRFs of every family: a list (18,23,28) or a range "
                    "(18-51, step 1); default the ladder's 18,23,28,33,38")
    rd.add_argument("--fractions", type=parse_fractions, help="plain's sizes as fractions of the source, e.g. "
                    "1,3/4,2/3,1/2 (default 1,2/3,1/2,1/3,1/4)")
    rd.add_argument("--adapt", action="store_true", help="per-title models for the SR candidates (bbmr-package "
                    "--adapt; their bytes in each point's rate): the content-aware variants")
    rd.add_argument("--adapt-minutes", type=float, help="--adapt: training minutes per model (default: 1 per 10 s "
                    "of 1080p-sized source)")
    rd.add_argument("--adapt-steps", type=int, help="--adapt: exactly this many steps per model")
    rd.add_argument("--adapt-encoding", choices=ENCODINGS, help="--adapt: the model files' encoding "
                    "(bbmr-package --adapt-encoding)")
    rd.add_argument("--adapt-seed", type=int, default=0, help="--adapt: random seed (default %(default)s)")
    rd.add_argument("--dense", action="store_true", help="the dense plain front: plain only, CRF 18-51 step 1 at "
                    "1, 3/4, 2/3, 1/2, 3/8, 1/3, 1/4 of the source (238 points); check a ladder against it with "
                    "ladder-check")
    add_refine(rd)
    rd.set_defaults(fn=cmd_rd)

    ck = sub.add_parser("ladder-check", prog="bbmr-bench ladder-check", help="a packaged ladder against a study",
                        description="Compare a packaged stream's rungs with the plain front of an RD study "
                                    "(same title): shortfall of each rung and BD-rate of the ladder.")
    ck.add_argument("stream", help="stream directory (manifest.json with measured PSNR-Y)")
    ck.add_argument("study", help="rd.json of `bbmr-bench rd` on the same title")
    ck.add_argument("--json", help="write the result here")
    ck.set_defaults(fn=cmd_check)

    lk = sub.add_parser("look", prog="bbmr-bench look", help="one frame as each rung's client shows it",
                        description=_first_paragraph(look_lib.__doc__))
    lk.add_argument("clip")
    lk.add_argument("--rungs", required=True, help="ladder items, e.g. plain:960x540:33,plain-sr:2:33,bbmr:23")
    lk.add_argument("--out", required=True, help="PNG to write")
    lk.add_argument("--frames", type=int, default=60, help="package this many frames (default %(default)s)")
    lk.add_argument("--frame", type=int, default=30, help="the frame shown (index from 0, default %(default)s)")
    lk.add_argument("--crop", default="", help="X,Y,W,H in source pixels (default: a 384x216 centre crop)")
    lk.add_argument("--zoom", type=int, default=2, help="pixel zoom of the panel (default %(default)s)")
    lk.add_argument("--scorer", default="light", help="BBMR scorer (default %(default)s)")
    add_device(lk)
    add_backend(lk)
    lk.set_defaults(fn=cmd_look)

    sm = sub.add_parser("rd-summary", prog="bbmr-bench rd-summary", help="one Markdown page from several studies",
                        description="One Markdown page from several studies (each DIR holds rd.json, rd.png and "
                                    "optionally check.json from ladder-check); the plots are copied beside the page.")
    sm.add_argument("dirs", nargs="+")
    sm.add_argument("--out", required=True)
    sm.add_argument("--intro", help="Markdown file put at the top of the page")
    sm.set_defaults(fn=cmd_summary)

    cp = sub.add_parser("rd-compare", prog="bbmr-bench rd-compare", help="BD-rates of two sets of studies",
                        description="BD-rates of two sets of studies of the same clips (e.g. before and after a "
                                    "lever), one Markdown table.")
    cp.add_argument("clips", nargs="+", help="study names (sub-directories of --before and --after)")
    cp.add_argument("--before", required=True)
    cp.add_argument("--after", required=True)
    cp.add_argument("--keys", default=",".join([Uniform.name, BBMR.name, f"{BBMR.name}_vs_{PlainSR.name}",
                                                f"{BBMR.name}_vs_{Uniform.name}"]),
                    help="entries of rd.json's bd_vs_plain (families against plain, bbmr_vs_X against X)")
    cp.set_defaults(fn=cmd_compare)

    sf = sub.add_parser("rd-shortfall", prog="bbmr-bench rd-shortfall", help="a family's points under the plain front",
                        description="Each point of a family against the plain front of its study (dB under it at "
                                    "the point's rate), and the rate at which the plain front reaches the family's "
                                    "best.")
    sf.add_argument("dirs", nargs="+", help="study directories (rd.json)")
    sf.add_argument("--family", default=BBMR.name)
    sf.set_defaults(fn=cmd_shortfall)
    from packager.vs_ffmpeg import DEFAULT_LADDER

    sp = sub.add_parser("speed", prog="bbmr-bench speed", help="the packager and the player against FFmpeg",
                        description="The same plain and plain-sr rungs made by one FFmpeg command and by "
                                    "bbmr-package, and a plain rung played by FFmpeg and by bbmr-play, in one run "
                                    "(packager/vs_ffmpeg.py).")
    sp.add_argument("--vs-ffmpeg", metavar="CLIP", help="the video to package and play")
    sp.add_argument("--ladder", default=DEFAULT_LADDER, help="plain and plain-sr rungs (default %(default)s)")
    sp.add_argument("--frames", type=int, default=60, help="frames of the clip (default %(default)s)")
    sp.add_argument("--preset", default="medium", help="x264 preset (default %(default)s)")
    sp.add_argument("--segment", type=float, default=2.0, help="segment and GOP seconds (default %(default)s)")
    sp.add_argument("--json", help="write the result here")
    sp.add_argument("--md", help="write the Markdown table here")
    sp.set_defaults(fn=cmd_speed)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return run_cli(f"bbmr-bench {a.cmd}", lambda: a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
