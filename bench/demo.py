"""``bbmr-demo``: the main job on the embedded default, start to end, in a few minutes on a 2-core CPU.

1. ``sample.mp4``: a 4 s 960x540 pan over photos that ship with scikit-image (:mod:`bbmr_stream.sample`).
2. ``bbmr-package sample.mp4 --out stream --fast``: the per-title ladder (``--ladder auto`` over the fast
   candidate set), MPEG-TS HLS with ``master.m3u8`` and ``manifest.json``.
3. ``bbmr-play stream --headless --reference sample.mp4 --trace network.trace --report report.json --out
   played.mp4``: the client over a simulated slow link (1.3x the lowest rung's rate; the ABR rule takes the best
   measured rendition that fits), per-frame PSNR-Y/NIQE report (JSON, CSV, PNG plot) and the frames as shown.
4. ``side_by_side.png``: one frame's crop as the source, the ladder's lowest plain rung (bicubic up) and a BBMR
   rung at the nearest rate (JointSR) show it (``bbmr-bench look``), captioned with kbps and PSNR-Y.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bbmr_stream.cli import run_cli
from bbmr_stream.errors import InputError

BBMR_CRFS = (30, 35, 40)  # BBMR candidates for the side-by-side; the one nearest the plain rung's rate is shown


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-demo", description="Package and play the embedded sample clip.")
    ap.add_argument("--out", default="bbmr-demo", help="output directory (default %(default)s)")
    ap.add_argument("--clip", help="use this video instead of the generated sample")
    ap.add_argument("--size", default="960x540", help="sample size WxH (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=4.0, help="sample duration (default %(default)s)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default %(default)s)")
    ap.add_argument("--force", action="store_true", help="replace an existing demo directory's stream")
    return ap


def write_trace(path: Path, man) -> Path:
    """A slow network: 1.3x the lowest rung's rate for the whole clip (the ABR rule takes the best measured
    rendition that fits: on the demo's ladder a client-SR rung)."""
    rate = min(r.bitrate_kbps for r in man.renditions)
    mbps = 1.3 * rate / 1000
    path.write_text(f"# time_s throughput_Mbps (bbmr-demo: a slow link)\n0 {mbps:.4f}\n3600 {mbps:.4f}\n")
    return path


def side_by_side(clip: Path, man, out: Path, device: str, console) -> tuple[Path, list[str]]:
    """source | lowest plain rung (bicubic) | BBMR at the nearest rate (of :data:`BBMR_CRFS`)."""
    from bbmr_stream.family import parse_ladder, spec_of
    from bench.look import look_tiles, save_panel, tile_label

    plain = min((r for r in man.renditions if r.kind == "plain"), key=lambda r: r.bitrate_kbps, default=None)
    if plain is None:
        raise InputError("the ladder has no plain rung to compare with")
    n = min(man.source["frames"], 12)  # one allocation (--realloc gop) shared by the BBMR rungs
    specs = [spec_of(plain)] + parse_ladder(",".join(f"bbmr:{c}" for c in BBMR_CRFS))
    src, rungs = look_tiles(str(clip), specs, n, n // 2, "", "light", device, console, realloc="gop")
    p = next(r for r in rungs if r[0].kind == "plain")
    b = min((r for r in rungs if r[0].kind == "bbmr"), key=lambda r: abs(r[0].bitrate_kbps - p[0].bitrate_kbps))
    tiles = [src, (tile_label(*p[:3]), p[3]), (tile_label(*b[:3]), b[3])]
    return save_panel(tiles, 2, out), [label.replace("\n", ": ") for label, _ in tiles]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bbmr_stream.manifest import load
    from bbmr_stream.sample import write_sample
    from packager.cli import build_parser as package_parser, run as package
    from player.cli import build_parser as play_parser, run as play

    err = Console(stderr=True, emoji=False)

    def say(text: str) -> None:  # plain print: paths are never wrapped
        print(text, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}
    if args.clip:
        clip = Path(args.clip)
    else:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise InputError(f"--size must be WxH, got {args.size!r}") from None
        say(f"[1/4] writing the sample clip ({w}x{h}, {args.seconds:g} s)")
        try:
            clip = write_sample(out / "sample.mp4", w, h, args.seconds)
        except ValueError as e:
            raise InputError(str(e)) from None
    times["sample"] = time.time() - t0
    stream = out / "stream"
    say(f"[2/4] bbmr-package {clip} --out {stream} --fast")
    t = time.time()
    package(package_parser().parse_args([str(clip), "--out", str(stream), "--fast", "--force",
                                         "--device", args.device]), err)
    times["package"] = time.time() - t
    man = load(stream)
    trace = write_trace(out / "network.trace", man)
    report, played = out / "report.json", out / "played.mp4"
    say(f"[3/4] bbmr-play {stream} --headless --reference {clip} --trace {trace} --report {report} --out {played}")
    t = time.time()
    play(play_parser().parse_args([str(stream), "--headless", "--reference", str(clip), "--trace", str(trace),
                                   "--report", str(report), "--out", str(played), "--niqe-every", "8",
                                   "--device", args.device]))
    times["play"] = time.time() - t
    say("[4/4] side by side at equal rate: source | plain rung, bicubic | BBMR, JointSR")
    t = time.time()
    panel, labels = side_by_side(clip, man, out / "side_by_side.png", args.device, err)
    times["side_by_side"] = time.time() - t
    for label in labels:
        say(f"  {label}")
    total = time.time() - t0
    say(f"\nbbmr-demo done in {total / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    for what, p in (("clip", clip), ("stream (HLS)", stream / "master.m3u8"), ("manifest", stream / "manifest.json"),
                    ("report", report), ("report plot", report.with_suffix(".png")),
                    ("report CSV", report.with_suffix(".csv")), ("played video", played), ("side by side", panel)):
        say(f"  {what:13s} {p}")
    say(f"play it again: bbmr-play {stream}   (a window; keys m f r p q)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("bbmr-demo", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
