"""``bbmr-play stream/``: decode a BBMR stream, super-resolve it, show it in a window (player/display.py for
the pacing policy and keys) or play headless, write the HR frames (``--out``, ``--frames-dir``) and a
per-frame quality report (``--report``, ``--reference``). ``--trace`` simulates a network for the ABR rule.

The flags become a :class:`~player.config.PlayConfig` for :func:`player.play` (player/session.py); this module
prints the summary tables and sets the exit code (2: bad input, 3: ``--strict`` and frames were concealed).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from bbmr_stream.cli import add_backend, add_device, parse_hostport, parse_size, run_cli
from bbmr_stream.progress import Progress, console_progress
from player.config import MIN_WINDOW, PlayConfig
from player.report import Report

DEFAULT_WINDOW = "1280x720"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-play", description="Play a BBMR stream.")
    ap.add_argument("stream", help="stream directory (with manifest.json) or its http(s) URL")
    ap.add_argument("--rendition", help="rendition name (default: the highest-bitrate rendition; with --trace "
                    "the ABR rule switches, this pins it)")
    ap.add_argument("--upscaler", default="auto", help="auto (each rendition's measured upscaler) | jointsr | "
                    "omnisr | fast (FastSR: plain-sr renditions, ~10x faster than omnisr on a CPU) | bicubic")
    add_device(ap)
    add_backend(ap)
    ap.add_argument("--headless", action="store_true", help="no window (servers, batch reports)")
    ap.add_argument("--start", type=float, default=0.0, help="start at this time in seconds (default %(default)s)")
    ap.add_argument("--window-size", default=DEFAULT_WINDOW,
                    help="largest window picture, WxH, frames fit inside (default %(default)s)")
    ap.add_argument("--linger", type=float, default=0.0,
                    help="keep the window open this many seconds after the end (default %(default)s)")
    ap.add_argument("--out", help="write the HR frames to this video (MP4, H.264 4:2:0 at --out-crf, tagged with "
                    "the source's colour matrix and range: plays anywhere)")
    ap.add_argument("--out-crf", type=float, default=18.0,
                    help="x264 CRF of --out (default %(default)s, visually lossless); 0 = mathematically lossless "
                         "(qp 0, 4:4:4, ~100x larger, for analysis)")
    ap.add_argument("--frames-dir", help="write every HR frame as PNG here")
    ap.add_argument("--reference", help="source video: per-frame PSNR-Y against it")
    ap.add_argument("--niqe-every", type=int, default=1, help="NIQE on every Nth frame (default %(default)s; 0: off)")
    ap.add_argument("--compare", default="", help="comma list: bicubic (this rendition, bicubic reconstruction), "
                    "uniform (the uniform-x4 rendition nearest in bitrate, OmniSR-O, or bicubic without weights)")
    ap.add_argument("--report", help="per-frame report JSON (CSV and PNG plot beside it; its directory is made)")
    ap.add_argument("--trace", help="simulate the network from a Pensieve trace (time_s throughput_Mbps) and "
                    "switch renditions per segment with the ABR rule; the report gets the per-segment decisions")
    ap.add_argument("--max-frames", type=int, help="play at most this many frames (default: all)")
    ap.add_argument("--serve", metavar="HOST:PORT", help="do not play: publish the stream directory over HTTP for any "
                    "HLS player (read-only; on a non-loopback address behind a token, printed with the URL)")
    ap.add_argument("--web", nargs="?", const="127.0.0.1:8088", metavar="HOST:PORT",
                    help="do not play here: serve the browser player (hls.js + onnxruntime-web super-resolving the "
                         "plain-sr renditions) and the stream, and print the page's URL (default 127.0.0.1:8088; "
                         "the stream may be an http(s) URL of one)")
    ap.add_argument("--web-backend", default="auto", help="--web: onnxruntime-web's backend: auto (WebGPU when the "
                    "browser has an adapter, else WebAssembly) | wasm | webgpu")
    ap.add_argument("--selftest", type=int, metavar="N", help="--web: open the page in headless Chromium, play N "
                    "frames, print one JSON object (frames shown and super-resolved, fps, backend, renditions, "
                    "PSNR-Y parity of a canvas frame with this player's output) and exit")
    ap.add_argument("--token", help="the --serve token (16+ characters of A-Z a-z 0-9 - _; default: generated on a "
                    "non-loopback address)")
    ap.add_argument("--strict", action="store_true",
                    help="exit with code 3 when any frame was concealed (missing, truncated or corrupt segment, "
                         "missing or invalid scale map), after writing the report")
    return ap


def config_from(args: argparse.Namespace) -> PlayConfig:
    """The flags as a PlayConfig (``--window-size`` is read only for a window, as it is used only there)."""
    window = PlayConfig.window_size if args.headless else parse_size(args.window_size, "--window-size", MIN_WINDOW)
    return PlayConfig(
        stream=args.stream, rendition=args.rendition, upscaler=args.upscaler, device=args.device,
        backend=args.backend, headless=args.headless, start=args.start, window_size=window, linger=args.linger,
        out=args.out, out_crf=args.out_crf, frames_dir=args.frames_dir, reference=args.reference,
        niqe_every=args.niqe_every, compare=tuple(c.strip() for c in args.compare.split(",") if c.strip()),
        report=args.report, trace=args.trace, max_frames=args.max_frames, strict=args.strict)


def summary(report: Report, console) -> None:
    """The metric and per-stage timing tables of a report."""
    from rich.table import Table

    d = report.to_dict()
    backend = f" on {d['stream']['backend']}" if d["stream"].get("backend") else ""
    t = Table(title=f"{len(d['frames'])} frames, {d['stream']['rendition']} ({d['stream']['bitrate_kbps']:.0f} kbps, "
                    f"{d['stream']['upscaler']}{backend})")
    for c in ("metric", "mean", "min", "max"):
        t.add_column(c)
    for k, v in d["pooled_metrics"].items():
        if v and k != "concealed":
            t.add_row(k, f"{v['mean']:.4f}", f"{v['min']:.4f}", f"{v['max']:.4f}")
    if t.row_count:
        console.print(t)
    else:
        console.print(f"{len(d['frames'])} frames played (no metrics: --reference gives PSNR-Y, --niqe-every NIQE)")
    causes = ", ".join(f"{k} {v}" for k, v in d.get("concealed_by_cause", {}).items() if v)
    console.print(f"concealed frames: {d['concealed_frames']}" + (f" ({causes}; excluded from the PSNR-Y mean)"
                                                                    if causes else ""))
    st = Table(title="time per stage (stages overlap on threads; total = wall)")
    for c in ("stage", "seconds", "frames/s"):
        st.add_column(c)
    for k, v in d["timing_s"].items():
        st.add_row(k, f"{v:.2f}", f"{d['stage_fps'].get(k, 0):.2f}")
    console.print(st)


def run(config: PlayConfig, console=None, progress: Progress | None = None) -> int:
    """``bbmr-play`` on a config: play, print the summary on ``console`` (default stdout) and return the exit
    code (0, or 3 with ``strict`` when frames were concealed). Bad input raises InputError."""
    from rich.console import Console

    from player.session import play

    console = console or Console(emoji=False)  # results on stdout; warnings and errors on stderr
    report = play(config, console_progress() if progress is None else progress)
    summary(report, console)
    if config.report:
        p = Path(config.report)
        console.print(f"wrote {p}, {p.with_suffix('.csv')}, {p.with_suffix('.png')}")
    if config.out:
        console.print(f"wrote {config.out}")
    concealed = report.concealed_total()
    if config.strict and concealed:
        print(f"bbmr-play: --strict: {concealed} frame(s) concealed ({report.extra['concealed_by_cause']})",
              file=sys.stderr)
        return 3
    fallbacks = report.extra.get("model_fallbacks", [])
    if config.strict and fallbacks:
        print(f"bbmr-play: --strict: {len(fallbacks)} title model(s) not usable, played with the generic weights "
              f"({', '.join(f['file'] + ': ' + f['cause'] for f in fallbacks)})", file=sys.stderr)
        return 3
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """``--serve``: publish the stream directory until Ctrl-C (the URL on stderr)."""
    from player.serve import ServeConfig, serve

    host, port = parse_hostport(args.serve)
    cfg = ServeConfig(args.stream, host, port, args.token)
    serve(cfg, on_started=lambda url: print(f"bbmr-play: serving {args.stream} at {url} (Ctrl-C stops)",
                                            file=sys.stderr, flush=True))
    return 0


def run_web(args: argparse.Namespace) -> int:
    """``--web``: serve the browser player until Ctrl-C (the URL on stderr), or ``--selftest N``: one JSON
    object on stdout."""
    from player.web import WebConfig, serve

    host, port = parse_hostport(args.web)
    cfg = WebConfig(args.stream, host, port, args.token, args.rendition, args.web_backend)
    if args.selftest is not None:  # on a free loopback port, whatever --web says
        import dataclasses
        import json

        from player.web_selftest import web_selftest

        print(json.dumps(web_selftest(dataclasses.replace(cfg, host="127.0.0.1", port=0, token=None),
                                      args.selftest)))
        return 0
    serve(cfg, on_started=lambda url: print(f"bbmr-play: the browser player of {args.stream} is at {url} "
                                            "(Ctrl-C stops)", file=sys.stderr, flush=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.web is not None or args.selftest is not None:
        if args.serve:
            print("bbmr-play: error: --serve publishes the stream, --web/--selftest the browser player: one or the "
                  "other", file=sys.stderr)
            return 2
        args.web = args.web or "127.0.0.1:0"
        return run_cli("bbmr-play", lambda: run_web(args))
    if args.serve:
        return run_cli("bbmr-play", lambda: run_serve(args))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return run_cli("bbmr-play", lambda: run(config_from(args)))


if __name__ == "__main__":
    sys.exit(main())
