"""``bbmr-live``: the WebRTC live demo (aiortc). Flags -> configs -> the library -> printed results.

- ``bbmr-live send SOURCE|--sample [--host 127.0.0.1 --port 8080]``: the sender (``packager.live_send.send``),
  status on stderr every 2 s.
- ``bbmr-live view URL [--serve 127.0.0.1:8090] [--record out.mp4] [--seconds S] [--window]``: the viewer
  (``player.live_view.view``; ``player.live_window`` with ``--window``), stats on stderr every 2 s, the final
  summary (JSON) on stdout.
- ``bbmr-live selftest --frames N [--offline] [--json out.json]``: sender and viewer on loopback in one process
  (``player.live_selftest.selftest``); the result (JSON) on stdout and in ``--json``.

Exit codes (``bbmr_stream.cli.run_cli``): 0 done, 2 bad input, 130 / 143 interrupted / terminated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bbmr_stream.cli import add_backend, add_device, parse_hostport, parse_size, run_cli
from bbmr_stream.errors import InputError
from bbmr_stream.webguard import Rate
from packager.live_send import LiveStats, SendConfig
from player.live_selftest import SelftestConfig
from player.live_view import ViewConfig

MIN_SIZE = 64  # smallest --size side, pixels


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-live", description="WebRTC live demo of BBMR (aiortc).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_device(common)
    add_backend(common)
    common.add_argument("--fps", type=float, default=30.0, help="frame rate (default %(default)s)")
    snd = argparse.ArgumentParser(add_help=False)
    snd.add_argument("--size", default="1280x720", help="sample / resize size WxH (default %(default)s)")
    snd.add_argument("--scorer", default="bicubic", help="bicubic (live rate) | light (default %(default)s)")
    snd.add_argument("--realloc-every", type=int, default=15,
                     help="re-allocate at most every N frames, on a background worker (default %(default)s)")
    s = sub.add_parser("send", parents=[common, snd], help="serve a BBMR live stream")
    s.add_argument("source", nargs="?", help="video file (looped) or /dev/videoN; omit with --sample")
    s.add_argument("--sample", action="store_true", help="a generated pan (no file needed)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s); any other than "
                   "loopback requires a token (--token, else generated and printed with the URL)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--token", help="the token viewers must send (16+ characters of A-Z a-z 0-9 - _)")
    s.add_argument("--max-peers", type=int, default=SendConfig.max_peers,
                   help="peer connections at once; the next offer gets HTTP 503 (default %(default)s)")
    s.add_argument("--offer-rate", type=float, default=SendConfig.offer_rate.per_second * 60,
                   help="POST /offer per minute per client address, bursts of 5; beyond: HTTP 429 "
                        "(default %(default)s)")
    s.add_argument("--peer-timeout", type=float, default=SendConfig.peer_timeout,
                   help="drop a peer not connected, or silent (no RTCP report), this many seconds "
                        "(default %(default)s)")
    v = sub.add_parser("view", parents=[common], help="receive, super-resolve, show stats")
    v.add_argument("url")
    v.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    v.add_argument("--upscaler", default="jointsr", help="jointsr | omnisr | bicubic (default %(default)s)")
    v.add_argument("--token", help="the sender's token (or give it in the URL: http://HOST:PORT/?token=...)")
    v.add_argument("--serve", help="HOST:PORT of a local page with the live picture and stats (a non-loopback "
                   "address requires a token: --serve-token, else generated and printed with the URL)")
    v.add_argument("--serve-token", help="the page's token (16+ characters of A-Z a-z 0-9 - _)")
    v.add_argument("--window", action="store_true",
                   help="show the frames in a window (bbmr-play's display: m scale map, f fps, q quit)")
    v.add_argument("--record", help="write the super-resolved frames to this MP4")
    v.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")
    t = sub.add_parser("selftest", parents=[common, snd], help="sender + viewer on loopback")
    t.add_argument("--frames", type=int, default=60)
    t.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    t.add_argument("--upscaler", default="bicubic", help="viewer upscaler (default %(default)s)")
    t.add_argument("--source", help="video file instead of the generated sample")
    t.add_argument("--serve", help="also serve the viewer page at HOST:PORT")
    t.add_argument("--offline", action="store_true",
                   help="also package the same frames offline (bbmr-package, atlas layout, bicubic scorer, a CRF "
                        "sweep) and play them (bbmr-play), and compare PSNR-Y at the live bitrate")
    t.add_argument("--json", help="write the result here")
    return ap


def _size(args) -> tuple[int, int]:
    return parse_size(args.size, "--size", MIN_SIZE, even=True)


def send_config(args) -> SendConfig:
    if not args.sample and not args.source:
        raise InputError("give a SOURCE (file or /dev/videoN) or --sample")
    return SendConfig(source="sample" if args.sample or not args.source else args.source, size=_size(args),
                      fps=args.fps, scorer=args.scorer, realloc_every=args.realloc_every, device=args.device,
                      backend=args.backend, host=args.host, port=args.port, token=args.token,
                      max_peers=args.max_peers, offer_rate=_rate(args.offer_rate), peer_timeout=args.peer_timeout)


def _rate(per_minute: float) -> Rate:
    if not (math.isfinite(per_minute) and per_minute > 0):
        raise InputError(f"--offer-rate {per_minute}: must be > 0 per minute")
    return Rate(per_second=per_minute / 60, burst=SendConfig.offer_rate.burst)


def view_config(args) -> ViewConfig:
    return ViewConfig(args.url, codec=args.codec, upscaler=args.upscaler, device=args.device, backend=args.backend,
                      fps=args.fps, serve=parse_hostport(args.serve) if args.serve else None, record=args.record,
                      seconds=args.seconds, token=args.token, serve_token=args.serve_token)


def selftest_config(args) -> SelftestConfig:
    return SelftestConfig(frames=args.frames, size=_size(args), fps=args.fps, codec=args.codec,
                          upscaler=args.upscaler, scorer=args.scorer, realloc_every=args.realloc_every,
                          source=args.source or "sample", serve=parse_hostport(args.serve) if args.serve else None,
                          offline=args.offline, device=args.device, backend=args.backend)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def run_send(args) -> int:
    from packager.live_send import send

    def status(s: LiveStats, peers: int) -> None:
        _err(f"sent {s.frames_sent} frames, {peers} peer(s), allocations {s.allocations}, shares {s.shares}, "
             f"refused (full) {s.refused_full}, dropped (timeout) {s.dropped_timeout}")

    send(send_config(args), on_started=lambda url: _err(f"bbmr-live sender on {url} (POST /offer); Ctrl-C stops"),
         on_status=status)
    return 0


def run_view(args) -> int:
    cfg = view_config(args)
    if args.window:
        from player.live_window import view_in_window

        summary = view_in_window(cfg, on_stats=lambda d: _err(json.dumps(d)),
                                 on_page=lambda url: _err(f"bbmr-live viewer page on {url}"))
    else:
        from player.live_view import view

        summary = view(cfg, on_stats=lambda d: _err(json.dumps(d)),
                       on_page=lambda url: _err(f"bbmr-live viewer page on {url}"))
    print(json.dumps(summary, indent=2))
    return 0


def run_selftest(args) -> int:
    from bbmr_stream.progress import console_progress
    from player.live_selftest import selftest

    out = selftest(selftest_config(args), console_progress())
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = {"send": run_send, "view": run_view, "selftest": run_selftest}[args.cmd]
    return run_cli("bbmr-live", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
