"""``bbmr-live``: the WebRTC live demo (aiortc).

- ``bbmr-live send SOURCE|--sample [--host 127.0.0.1 --port 8080]``: the sender (packager/live_send.py).
- ``bbmr-live view URL [--serve 127.0.0.1:8090] [--record out.mp4] [--seconds S]``: the viewer
  (player/live_view.py), stats on stderr every 2 s, the side-by-side page with ``--serve``.
- ``bbmr-live selftest --frames N [--json out.json]``: sender and viewer on loopback in one process; writes
  frames sent/received, maps matched, PSNR-Y of the reconstruction vs the sent source frames (BT.601 Y of RGB,
  peak 255, crop 0: image convention, the same for both columns), median glass-to-glass latency, fps shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from bbmr_stream.cli import run_cli

from bbmr_stream.device import pick_device
from bbmr_stream.errors import InputError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must be WxH, got {text!r}") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise InputError(f"--size {text}: even and at least 64x64")
    return w, h


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise InputError(f"expected HOST:PORT, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-live", description="WebRTC live demo of BBMR (aiortc).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto | cpu | cuda (default %(default)s)")
    common.add_argument("--fps", type=float, default=30.0, help="frame rate (default %(default)s)")
    snd = argparse.ArgumentParser(add_help=False)
    snd.add_argument("--size", default="1280x720", help="sample / resize size WxH (default %(default)s)")
    snd.add_argument("--scorer", default="bicubic", help="bicubic (live rate) | light (default %(default)s)")
    snd.add_argument("--realloc-every", type=int, default=15,
                     help="re-allocate at most every N frames, on a background worker (default %(default)s)")
    s = sub.add_parser("send", parents=[common, snd], help="serve a BBMR live stream")
    s.add_argument("source", nargs="?", help="video file (looped) or /dev/videoN; omit with --sample")
    s.add_argument("--sample", action="store_true", help="a generated pan (no file needed)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    v = sub.add_parser("view", parents=[common], help="receive, super-resolve, show stats")
    v.add_argument("url")
    v.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    v.add_argument("--upscaler", default="jointsr", help="jointsr | omnisr | bicubic (default %(default)s)")
    v.add_argument("--serve", help="HOST:PORT of a local page with the live picture and stats")
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


async def _start_sender(args, frames_limit=None, keep=None):
    from aiohttp import web

    from packager.live_send import LivePipeline, LiveStats, Sender, make_track, source_frames

    w, h = _size(args.size)
    src = getattr(args, "source", None)
    if getattr(args, "sample", False) or not src:
        src = "sample"
    frames = _resized(source_frames(src, w, h), w, h)
    device = pick_device(args.device)
    pipeline = LivePipeline(w, h, args.scorer, args.realloc_every, device)
    stats = LiveStats()
    sender = Sender(None, stats, stream=pipeline.describe(args.fps))

    def on_frame(i, pts, rgb, payload, t):
        sender.send_map(pts, payload, t)
        if keep is not None:
            keep[i] = rgb
            keep.pop(i - 400, None)  # bounded

    sender.track = make_track(frames, pipeline, args.fps, stats, on_frame=on_frame, limit=frames_limit)
    runner = web.AppRunner(sender.app())
    await runner.setup()
    site = web.TCPSite(runner, getattr(args, "host", "127.0.0.1"), getattr(args, "port", 0))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return sender, runner, port


def _resized(frames, w: int, h: int):
    """Frames of another size are resized (the project's resize convention) to ``w`` x ``h``."""
    from bbmr_stream.resize import resize_to, to_tensor, to_uint8

    for f in frames:
        if f.shape[:2] != (h, w):
            f = to_uint8(resize_to(to_tensor(f), h, w))
        yield f


async def _serve(viewer, where: str):
    from aiohttp import web

    from player.live_view import serve_app

    host, port = _hostport(where)
    runner = web.AppRunner(serve_app(viewer))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def send_main(args) -> int:
    if not args.sample and not args.source:
        raise InputError("give a SOURCE (file or /dev/videoN) or --sample")
    sender, runner, port = await _start_sender(args)
    print(f"bbmr-live sender on http://{args.host}:{port}/ (POST /offer); Ctrl-C stops", file=sys.stderr)
    try:
        while True:
            await asyncio.sleep(2)
            s = sender.stats
            print(f"sent {s.frames_sent} frames, {len(sender.pcs)} peer(s), allocations {s.allocations}, "
                  f"shares {s.shares}", file=sys.stderr)
    finally:
        await sender.shutdown()
        await runner.cleanup()


def view_window(args) -> int:
    """``view --window``: the receiving loop on a background thread, the window (Tk) on the main thread; each
    frame as finally shown (the SR result, or the bicubic stand-in while SR is busy) goes to the window."""
    import os
    import queue

    from player.display import Shown, Window

    if not os.environ.get("DISPLAY"):
        raise InputError("no display (DISPLAY is not set): use --serve")
    shown: queue.Queue = queue.Queue(maxsize=2)
    done = threading.Event()
    result: dict = {}

    def on_show(rgb, smap, what, index):
        try:
            shown.put_nowait(Shown(rgb, smap, what, None, index))
        except queue.Full:
            pass

    def run_loop():
        try:
            result["code"] = asyncio.run(view_main(args, on_show, done))
        except BaseException as e:  # surfaced on the main thread
            result["error"] = e
        finally:
            done.set()

    threading.Thread(target=run_loop, daemon=True).start()

    def frames():
        while not done.is_set() or not shown.empty():
            try:
                yield shown.get(timeout=0.2)
            except queue.Empty:
                continue

    Window(f"bbmr-live {args.url}", args.fps).run(frames(), 128)
    done.set()
    if "error" in result:
        raise result["error"]
    return result.get("code", 0)


async def view_main(args, on_show=None, stop_event=None) -> int:
    from player.live_view import Viewer

    from bbmr_stream.imageio import prepare_output_file

    if args.record:
        prepare_output_file("--record", args.record)

    viewer = Viewer(args.url, args.upscaler, pick_device(args.device), args.codec, args.fps, record=args.record)
    viewer.on_show = on_show
    worker = threading.Thread(target=viewer.worker, daemon=True)
    worker.start()
    page = await _serve(viewer, args.serve) if args.serve else None
    try:
        try:
            await viewer.connect()
        except (OSError, ConnectionError, ValueError) as e:
            raise InputError(f"cannot connect to {args.url}: {e}") from None
        t0 = time.time()
        while (not args.seconds or time.time() - t0 < args.seconds) and not (stop_event and stop_event.is_set()):
            await asyncio.sleep(2)
            await viewer.update_bitrate()
            print(json.dumps(viewer.stats.summary()), file=sys.stderr)
    finally:
        await viewer.close()
        worker.join(timeout=30)
        viewer.finish()
        if page is not None:
            await page.cleanup()
    if viewer.error is not None:
        raise viewer.error
    print(json.dumps(viewer.stats.summary(), indent=2))
    return 0


async def selftest(args) -> dict:
    from player.live_view import Viewer

    keep: dict = {}
    sender, runner, port = await _start_sender(args, frames_limit=args.frames, keep=keep)
    viewer = Viewer(f"http://127.0.0.1:{port}/", args.upscaler, pick_device(args.device), args.codec, args.fps,
                    reference=keep)
    worker = threading.Thread(target=viewer.worker, daemon=True)
    worker.start()
    page = await _serve(viewer, args.serve) if args.serve else None
    t0 = time.time()
    try:
        await viewer.connect()
        deadline = t0 + 60 + args.frames * 10 / args.fps
        while sender.stats.frames_sent < args.frames and time.time() < deadline:
            await asyncio.sleep(0.2)
        last = -1
        while viewer.stats.received != last and time.time() < deadline:  # drain what is in flight
            last = viewer.stats.received
            await asyncio.sleep(1.0)
        with viewer.cv:  # let the worker finish the newest frame
            pending = viewer.mailbox is not None
        while pending and time.time() < deadline:
            await asyncio.sleep(0.2)
            with viewer.cv:
                pending = viewer.mailbox is not None
        await viewer.update_bitrate()
        elapsed = time.time() - viewer.stats.started
    finally:
        await viewer.close()
        worker.join(timeout=120)
        await sender.shutdown()
        await runner.cleanup()
        if page is not None:
            await page.cleanup()
    if viewer.error is not None:
        raise viewer.error
    v = viewer.stats.summary()
    return {"frames_sent": sender.stats.frames_sent, "frames_received": v["frames_received"],
            "frames_shown": v["frames_shown"], "frames_superresolved": v["frames_superresolved"],
            "maps_matched": v["maps_matched"], "maps_sei": v["maps_sei"], "maps_channel": v["maps_channel"],
            "maps_reused": v["maps_reused"], "maps_invalid": v["maps_invalid"],
            "psnr_y_mean": round(statistics.fmean(viewer.psnr), 4) if viewer.psnr else None,
            "psnr_y_bicubic_mean": round(statistics.fmean(viewer.psnr_bicubic), 4) if viewer.psnr_bicubic else None,
            "psnr_frames": len(viewer.psnr),
            "psnr_y_bicubic_on_sr_frames": _mean([viewer.psnr_by_frame[i] for i in viewer.psnr_sr_by_frame
                                                  if i in viewer.psnr_by_frame]),
            "psnr_y_sr_on_those_frames": _mean([viewer.psnr_sr_by_frame[i] for i in viewer.psnr_sr_by_frame
                                                if i in viewer.psnr_by_frame]),
            "latency_ms_median": v["latency_ms_median"], "fps_shown": round(v["frames_shown"] / elapsed, 2),
            "fps_superresolved": round(v["frames_superresolved"] / elapsed, 2),
            "fps_received": round(v["frames_received"] / elapsed, 2),
            "kbps_received": round(viewer.stats.bytes * 8 / max(v["frames_received"] / args.fps, 1e-6) / 1000, 1),
            "sr_latency_ms_median": v["sr_latency_ms_median"],
            "kbps_encoded": round(sender.stats.encoded_bytes * 8 / max(sender.stats.frames_sent / args.fps, 1e-6)
                                  / 1000, 1),
            "codec": args.codec, "size": args.size, "upscaler": args.upscaler, "scorer": args.scorer,
            "sender_port": port,
            "allocations": sender.stats.allocations, "_keep": keep, "_psnr_by_frame": viewer.psnr_by_frame,
            "psnr_convention": "BT.601 Y of RGB in [0,255] (16 + 65.481 R + 128.553 G + 24.966 B), peak 255, "
                               "crop 0, vs the source frame the sender sent (by the map's frame index)"}


OFFLINE_CRFS = (2, 8, 14, 20, 26, 32)


def _mean(v: list) -> float | None:
    return round(statistics.fmean(v), 4) if v else None


def _write_lossless(path: Path, frames: list, fps: float) -> None:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=int(round(fps)))
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt = "yuv444p"
        st.codec_context.options = {"qp": "0", "preset": "ultrafast"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            out.mux(st.encode(f))
        out.mux(st.encode(None))


def offline(keep: dict, live: dict, psnr_by_frame: dict, args) -> dict:
    """The same frames through bbmr-package + bbmr-play (bicubic upscaler, as the live viewer's stand-in), PSNR-Y
    in the selftest's convention on the frames the live viewer measured, interpolated (log rate) at the live
    encoded bitrate."""
    import math
    import tempfile

    from bbmr_stream.imageio import read_image
    from bbmr_stream.manifest import load
    from bbmr_stream.metrics import psnr_y
    from packager.cli import main as package
    from player.cli import main as play

    idx = sorted(keep)
    frames = [keep[i] for i in idx]
    want = [i for i in sorted(psnr_by_frame) if i in keep]
    with tempfile.TemporaryDirectory(prefix="bbmr-live-offline-") as td:
        clip, out = Path(td) / "clip.mp4", Path(td) / "stream"
        _write_lossless(clip, frames, args.fps)
        code = package([str(clip), "--out", str(out), "--ladder", ",".join(f"bbmr:{c}" for c in OFFLINE_CRFS),
                        "--layout", "atlas", "--scorer", "bicubic", "--upscaler", "bicubic", "--no-measure",
                        "--segment", str(max(2.0, len(frames) / args.fps)), "--device", args.device])
        if code:
            raise RuntimeError("offline packaging failed")
        points = []
        for r in load(out).renditions:
            d = Path(td) / r.name
            play([str(out), "--rendition", r.name, "--headless", "--upscaler", "bicubic", "--niqe-every", "0",
                  "--frames-dir", str(d), "--device", args.device])
            q = [psnr_y(frames[i], read_image(d / f"frame_{i:06d}.png"))
                 for i in (idx.index(j) for j in want)]
            points.append({"crf": r.crf, "kbps": r.bitrate_kbps, "psnr_y_mean": round(statistics.fmean(q), 4)})
    points.sort(key=lambda p: p["kbps"])
    rate = live["kbps_encoded"]
    lo = [p for p in points if p["kbps"] <= rate]
    hi = [p for p in points if p["kbps"] >= rate]
    if lo and hi:
        a, b = lo[-1], hi[0]
        t = 0.0 if a["kbps"] == b["kbps"] else math.log(rate / a["kbps"]) / math.log(b["kbps"] / a["kbps"])
        at, where = a["psnr_y_mean"] + t * (b["psnr_y_mean"] - a["psnr_y_mean"]), "interpolated"
    else:
        near = (hi or lo)[0] if hi else lo[-1]
        at, where = near["psnr_y_mean"], f"nearest offline rate ({near['kbps']} kbps)"
    return {"points": points, "frames": len(want), "psnr_y_at_live_rate": round(at, 4), "how": where,
            "live_minus_offline_db": round(live["psnr_y_bicubic_mean"] - at, 4) if live["psnr_y_bicubic_mean"]
            else None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        if args.cmd == "send":
            return asyncio.run(send_main(args))
        if args.cmd == "view":
            return view_window(args) if args.window else asyncio.run(view_main(args))
        if args.frames < 1:
            raise InputError("--frames must be >= 1")
        out = asyncio.run(selftest(args))
        if args.offline:
            out["offline"] = offline(out.pop("_keep"), out, out.pop("_psnr_by_frame"), args)
        else:
            out.pop("_keep"), out.pop("_psnr_by_frame")
        text = json.dumps(out, indent=2)
        print(text)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text + "\n")
        return 0

    return run_cli("bbmr-live", go)


if __name__ == "__main__":
    sys.exit(main())
