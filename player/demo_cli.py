"""``bbmr-demo [--out bbmr-demo] [--clip FILE] [--size 960x540] [--seconds 4]``: flags -> DemoConfig ->
:func:`player.demo.run_demo` -> the steps, the play summary and the files made, on stdout."""

from __future__ import annotations

import argparse
import sys
import time

from bbmr_stream.cli import add_device, parse_size, run_cli
from bbmr_stream.progress import console_progress
from player.demo import DemoConfig


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-demo", description="Package and play the embedded sample clip.")
    ap.add_argument("--out", default="bbmr-demo", help="output directory (default %(default)s)")
    ap.add_argument("--clip", help="use this video instead of the generated sample")
    ap.add_argument("--size", default="960x540", help="sample size WxH (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=4.0, help="sample duration (default %(default)s)")
    add_device(ap)
    ap.add_argument("--force", action="store_true", help="accepted for compatibility: the demo always replaces "
                    "the stream in its own directory")
    return ap


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from packager.cli import summary as package_summary
    from player.cli import summary
    from player.demo import run_demo

    def say(text: str) -> None:  # plain print: paths are never wrapped
        print(text, flush=True)

    t0 = time.time()
    cfg = DemoConfig(out=args.out, clip=args.clip, size=DemoConfig.size if args.clip else parse_size(args.size),
                     seconds=args.seconds, device=args.device)
    progress = console_progress()
    res = run_demo(cfg, progress, on_step=say, on_packaged=lambda man: package_summary(man, progress.console),
                   on_played=lambda report: summary(report, Console(emoji=False)))
    for label in res.labels:
        say(f"  {label}")
    say(f"\nbbmr-demo done in {(time.time() - t0) / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in res.times.items()) + ")")
    rep = res.report_file
    files = (("clip", res.clip), ("stream (HLS)", res.stream / "master.m3u8"),
             ("manifest", res.stream / "manifest.json"),
             ("report", rep), ("report plot", rep.with_suffix(".png")), ("report CSV", rep.with_suffix(".csv")),
             ("played video", res.played), ("side by side", res.panel))
    for what, p in files:
        say(f"  {what:13s} {p}")
    say(f"play it again: bbmr-play {res.stream}   (a window; keys m f r p q)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("bbmr-demo", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
