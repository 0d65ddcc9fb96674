"""``bbmr-live selftest``: the live sender (``packager.live_send``) and viewer (``player.live_view``) on loopback
in one process. The result: frames sent / received / shown / super-resolved, maps matched (SEI, channel,
reused), PSNR-Y of the reconstruction vs the source frames the sender sent (BT.601 Y of RGB, peak 255, crop 0:
the image convention, the same for both columns), median glass-to-glass latency, fps shown, kbps.

With ``offline``, the same frames also go through the packager (``packager.package``: atlas layout, bicubic
scorer, a CRF sweep) and the player (``player.play``, bicubic), and the offline PSNR-Y at the live encoded
bitrate is compared with the live one (:func:`offline_agreement`).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbmr_stream.errors import InputError
from bbmr_stream.progress import Progress
from packager.live_send import SendConfig, start_sender
from player.live_view import ViewConfig, Viewer

OFFLINE_CRFS = (2, 8, 14, 20, 26, 32)
KEEP = 400  # source frames kept as references (the newest, frames)
PSNR_CONVENTION = ("BT.601 Y of RGB in [0,255] (16 + 65.481 R + 128.553 G + 24.966 B), peak 255, crop 0, vs the "
                   "source frame the sender sent (by the map's frame index)")


@dataclass(frozen=True)
class SelftestConfig:
    """One selftest. Units: ``size`` (width, height) in pixels, ``fps`` in frames per second, ``frames`` and
    ``realloc_every`` in frames."""

    frames: int = 60
    size: tuple[int, int] = (1280, 720)
    fps: float = 30.0
    codec: str = "h264"  # h264 (maps in the SEI) | vp8 (maps on the data channel)
    upscaler: str = "bicubic"  # the viewer's SR upscaler
    scorer: str = "bicubic"  # the sender's scorer
    realloc_every: int = 15
    source: str = "sample"  # "sample" (a generated pan) or a video file
    serve: tuple[str, int] | None = None  # also serve the viewer's page here
    offline: bool = False  # also package + play the same frames and compare at the live bitrate
    device: str = "auto"
    backend: str | None = None

    def check(self) -> None:
        """Options in range (one-line InputErrors, before any work)."""
        if self.frames < 1:
            raise InputError("--frames must be >= 1")
        self.sender().check()
        self.viewer("http://127.0.0.1:0/").check()

    def sender(self) -> SendConfig:
        """The sender's config: on a free loopback port, ending after ``frames``."""
        return SendConfig(source=self.source, size=self.size, fps=self.fps, scorer=self.scorer,
                          realloc_every=self.realloc_every, device=self.device, backend=self.backend,
                          host="127.0.0.1", port=0, frames=self.frames)

    def viewer(self, url: str) -> ViewConfig:
        """The viewer's config for the sender at ``url``."""
        return ViewConfig(url, codec=self.codec, upscaler=self.upscaler, device=self.device, backend=self.backend,
                          fps=self.fps)


@dataclass
class LiveRun:
    """What a loopback run leaves: the result (JSON-able), the source frames sent (index -> RGB) and the
    stand-ins' PSNR-Y by frame index (for the offline comparison)."""

    result: dict
    sent: dict[int, np.ndarray]
    psnr_by_frame: dict[int, float]


def selftest(cfg: SelftestConfig, progress: Progress | None = None) -> dict:
    """Run the selftest of ``cfg`` and return its result (with ``offline`` when asked for; ``progress`` sees the
    offline packaging and playback)."""
    cfg.check()
    run = asyncio.run(live_run(cfg))
    if cfg.offline:
        run.result["offline"] = offline_agreement(run, cfg, progress)
    return run.result


async def live_run(cfg: SelftestConfig) -> LiveRun:
    """Sender and viewer on loopback until the viewer has what was sent (or a deadline of 60 s + 10 frame
    times per frame)."""
    sent: dict[int, np.ndarray] = {}

    def keep(i: int, pts: int, rgb: np.ndarray, payload: bytes, t_capture: float) -> None:
        sent[i] = rgb
        sent.pop(i - KEEP, None)  # bounded

    running = await start_sender(cfg.sender(), on_frame=keep)
    viewer = Viewer(cfg.viewer(f"http://127.0.0.1:{running.port}/"), reference=sent)
    viewer.start()
    page = (await viewer.serve_page(*cfg.serve))[0] if cfg.serve else None
    try:
        await viewer.connect()
        await _until_done(running, viewer, deadline=time.time() + 60 + cfg.frames * 10 / cfg.fps, frames=cfg.frames)
        elapsed = time.time() - viewer.stats.started
    finally:
        await viewer.close(join_timeout=120)
        await running.close()
        if page is not None:
            await page.cleanup()
    if viewer.error is not None:
        raise viewer.error
    return LiveRun(_result(cfg, running, viewer, elapsed), sent, viewer.quality.psnr_by_frame)


async def _until_done(running, viewer: Viewer, deadline: float, frames: int) -> None:
    """Wait until ``frames`` were sent, the frames in flight arrived and the worker took the newest one."""
    while running.stats.frames_sent < frames and time.time() < deadline:
        await asyncio.sleep(0.2)
    last = -1
    while viewer.stats.received != last and time.time() < deadline:  # drain what is in flight
        last = viewer.stats.received
        await asyncio.sleep(1.0)
    while viewer.mailbox.pending() and time.time() < deadline:  # let the worker finish the newest frame
        await asyncio.sleep(0.2)


def _mean(v: list) -> float | None:
    return round(statistics.fmean(v), 4) if v else None


def _result(cfg: SelftestConfig, running, viewer: Viewer, elapsed: float) -> dict:
    """The selftest's JSON: counts, PSNR-Y (dB), latency (ms), rates (fps, kbps) over ``elapsed`` s."""
    v, q, s = viewer.summary(), viewer.quality, running.stats
    on_sr = [i for i in q.psnr_sr_by_frame if i in q.psnr_by_frame]
    w, h = cfg.size
    return {"frames_sent": s.frames_sent, "frames_received": v["frames_received"],
            "frames_shown": v["frames_shown"], "frames_superresolved": v["frames_superresolved"],
            "maps_matched": v["maps_matched"], "maps_sei": v["maps_sei"], "maps_channel": v["maps_channel"],
            "maps_reused": v["maps_reused"], "maps_invalid": v["maps_invalid"],
            "psnr_y_mean": _mean(q.psnr), "psnr_y_bicubic_mean": _mean(q.psnr_bicubic),
            "psnr_frames": len(q.psnr),
            "psnr_y_bicubic_on_sr_frames": _mean([q.psnr_by_frame[i] for i in on_sr]),
            "psnr_y_sr_on_those_frames": _mean([q.psnr_sr_by_frame[i] for i in on_sr]),
            "latency_ms_median": v["latency_ms_median"], "fps_shown": round(v["frames_shown"] / elapsed, 2),
            "fps_superresolved": round(v["frames_superresolved"] / elapsed, 2),
            "fps_received": round(v["frames_received"] / elapsed, 2),
            "kbps_received": _kbps(viewer.stats.bytes, v["frames_received"], cfg.fps),
            "sr_latency_ms_median": v["sr_latency_ms_median"],
            "kbps_encoded": _kbps(s.encoded_bytes, s.frames_sent, cfg.fps),
            "codec": cfg.codec, "size": f"{w}x{h}", "upscaler": cfg.upscaler, "scorer": cfg.scorer,
            "sender_port": running.port, "allocations": s.allocations, "psnr_convention": PSNR_CONVENTION}


def _kbps(n_bytes: int, n_frames: int, fps: float) -> float:
    """Bitrate (kbit/s) of ``n_bytes`` over ``n_frames`` frames of media time at ``fps``."""
    return round(n_bytes * 8 / max(n_frames / fps, 1e-6) / 1000, 1)


def write_lossless(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """RGB frames -> an H.264 qp 0 4:4:4 MP4 at ``fps`` (the offline packager's source)."""
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


def offline_points(run: LiveRun, cfg: SelftestConfig, progress: Progress | None = None) -> tuple[list[dict], int]:
    """The sent frames through ``packager.package`` (atlas, bicubic scorer, CRFs :data:`OFFLINE_CRFS`) and
    ``player.play`` (bicubic) -> ([{"crf", "kbps", "psnr_y_mean"}] by rate, frames measured): PSNR-Y in the
    selftest's convention on the frames the live viewer measured."""
    import tempfile

    from bbmr_stream.family import parse_ladder
    from bbmr_stream.imageio import read_image
    from bbmr_stream.metrics import psnr_y
    from packager import PackageConfig, package
    from player import PlayConfig, play

    idx = sorted(run.sent)
    frames = [run.sent[i] for i in idx]
    want = [idx.index(j) for j in sorted(run.psnr_by_frame) if j in run.sent]
    ladder = tuple(parse_ladder(",".join(f"bbmr:{c}" for c in OFFLINE_CRFS)))
    points = []
    with tempfile.TemporaryDirectory(prefix="bbmr-live-offline-") as td:
        clip, out = Path(td) / "clip.mp4", Path(td) / "stream"
        write_lossless(clip, frames, cfg.fps)
        man = package(PackageConfig(str(clip), str(out), layout="atlas", scorer="bicubic", upscaler="bicubic",
                                    measure=False, segment=max(2.0, len(frames) / cfg.fps), device=cfg.device,
                                    backend=cfg.backend), ladder, progress)
        for r in man.renditions:
            d = Path(td) / r.name
            play(PlayConfig(str(out), rendition=r.name, headless=True, upscaler="bicubic", niqe_every=0,
                            frames_dir=str(d), device=cfg.device, backend=cfg.backend), progress)
            q = [psnr_y(frames[i], read_image(d / f"frame_{i:06d}.png")) for i in want]
            points.append({"crf": r.crf, "kbps": r.bitrate_kbps, "psnr_y_mean": round(statistics.fmean(q), 4)})
    points.sort(key=lambda p: p["kbps"])
    return points, len(want)


def at_rate(points: list[dict], rate: float) -> tuple[float, str]:
    """PSNR-Y of the rate-sorted ``points`` at ``rate`` kbps, interpolated in log rate (or the nearest point
    outside their range), and how it was found."""
    lo = [p for p in points if p["kbps"] <= rate]
    hi = [p for p in points if p["kbps"] >= rate]
    if lo and hi:
        a, b = lo[-1], hi[0]
        t = 0.0 if a["kbps"] == b["kbps"] else math.log(rate / a["kbps"]) / math.log(b["kbps"] / a["kbps"])
        return a["psnr_y_mean"] + t * (b["psnr_y_mean"] - a["psnr_y_mean"]), "interpolated"
    near = hi[0] if hi else lo[-1]
    return near["psnr_y_mean"], f"nearest offline rate ({near['kbps']} kbps)"


def offline_agreement(run: LiveRun, cfg: SelftestConfig, progress: Progress | None = None) -> dict:
    """The offline points and the offline PSNR-Y at the live encoded bitrate; ``live_minus_offline_db`` compares
    it with the live bicubic stand-ins (the offline player's upscaler is bicubic too)."""
    points, n = offline_points(run, cfg, progress)
    live = run.result
    at, how = at_rate(points, live["kbps_encoded"])
    return {"points": points, "frames": n, "psnr_y_at_live_rate": round(at, 4), "how": how,
            "live_minus_offline_db": round(live["psnr_y_bicubic_mean"] - at, 4) if live["psnr_y_bicubic_mean"]
            else None}
