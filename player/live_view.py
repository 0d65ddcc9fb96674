"""Live viewer (``bbmr-live view URL``): aiortc receiver -> scale map per frame -> unpack -> SR, never stalling.

One :class:`Viewer` wires parts with one job each:

- ``player.live_connect``: signalling and the peer connection (video + the maps' data channel; counts the
  encoded bytes decoded).
- ``player.live_receive``: the receive loop (asyncio) and the one-slot mailboxes (the newest frame wins).
- ``player.live_maps``: map matching (SEI in the access unit, else the data channel by RTP timestamp, else the
  last map, counted).
- ``player.live_workers``: the stand-in (bicubic) and SR worker threads.
- ``player.live_screen`` / ``player.live_record``: what is shown (the page's pictures, the window's callback)
  and the recording of the final pictures.
- ``player.live_page``: the ``--serve`` page (bicubic | BBMR of the same frame, and the stats).
- ``player.live_stats``: counters (fps received / shown / super-resolved, kbps, glass-to-glass latency, x2/x4/x8
  shares, maps matched) and the selftest's PSNR-Y against the frames sent.

Library entry points: :func:`view` / :func:`view_async` (stats through a callback, the final summary
returned); nothing here prints.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from bbmr_stream.errors import InputError
from player.live_connect import CODECS, Connection
from player.live_maps import MapChannel, MapMatcher
from player.live_receive import Mailbox, receive
from player.live_record import Recorder
from player.live_screen import OnShow, Screen
from player.live_stats import Quality, ViewStats
from player.live_workers import Unpacker, Workers


@dataclass(frozen=True)
class ViewConfig:
    """One live viewer. Units: ``fps`` in frames per second (the sender's rate: the pts step of a frame);
    ``seconds`` of wall time (0: until stopped)."""

    url: str  # the sender, http://HOST:PORT/
    codec: str = "h264"  # h264 (maps in the SEI) | vp8 (maps on the data channel)
    upscaler: str = "jointsr"  # jointsr | omnisr | bicubic
    device: str = "auto"
    backend: str | None = None  # SR inference runtime on a CPU (models.backend); None: the default
    fps: float = 30.0
    serve: tuple[str, int] | None = None  # (host, port) of the page
    record: str | None = None  # an MP4 of the frames as finally shown
    seconds: float = 0.0
    token: str | None = None  # the sender's token (else the ``?token=`` of ``url``, if any)
    serve_token: str | None = None  # the page's token on a non-loopback ``serve`` (None: generated)

    def check(self) -> None:
        """Options in range (one-line InputErrors, before any work)."""
        if self.codec not in CODECS:
            raise InputError(f"--codec {self.codec}: one of {', '.join(CODECS)}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"--fps {self.fps}: must be > 0")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise InputError(f"--seconds {self.seconds}: must be >= 0")


class Viewer:
    """One live viewer of ``cfg.url``. ``reference`` (frame index -> the RGB the sender sent; the selftest)
    turns on the PSNR-Y measurement (:attr:`quality`); ``on_show`` sees each picture as shown."""

    def __init__(self, cfg: ViewConfig, reference: Mapping[int, np.ndarray] | None = None,
                 on_show: OnShow | None = None) -> None:
        from bbmr_stream.device import pick_device

        self.cfg = cfg
        self.stats = ViewStats()
        self.channel = MapChannel()
        self.matcher = MapMatcher(self.stats, self.channel, cfg.fps)
        self.mailbox = Mailbox()
        self.connection = Connection(cfg.url, cfg.codec, cfg.token)
        self.recorder = Recorder(cfg.record, cfg.fps) if cfg.record else None
        self.screen = Screen(self.stats, cfg.upscaler, on_show, self.recorder)
        self.quality = Quality(reference, cfg.upscaler == "bicubic")
        self.unpacker = Unpacker(self.stats)
        self.workers = Workers(cfg.upscaler, pick_device(cfg.device), self.mailbox, self.unpacker, self.screen,
                               self.quality, self.stats, cfg.backend)
        self.thread: threading.Thread | None = None
        self.tasks: set[asyncio.Task] = set()

    @property
    def error(self) -> BaseException | None:
        """An exception of a worker thread (a bug), for the caller to re-raise."""
        return self.workers.error

    def start(self) -> None:
        """Start the worker threads (before :meth:`connect`)."""
        self.thread = threading.Thread(target=self.workers.run, daemon=True)
        self.thread.start()

    async def connect(self) -> None:
        """Connect to the sender; frames flow to the workers from then on."""
        self.unpacker.stream = await self.connection.open(self._on_track, self.channel.on_message)

    def _on_track(self, track) -> None:
        task = asyncio.ensure_future(receive(track, self.matcher, self.mailbox, self.stats))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def summary(self) -> dict:
        """The stats as JSON (``ViewStats.summary``) with the bytes received so far."""
        self.stats.bytes = self.connection.bytes
        return self.stats.summary()

    async def serve_page(self, host: str, port: int):
        """Serve this viewer's page (``player.live_page``) at ``host:port``; returns (its ``AppRunner``, its URL
        with the token when one is required)."""
        from player.live_page import serve_page

        return await serve_page(self.screen.side_by_side, self.summary, host, port, self.cfg.serve_token)

    async def close(self, join_timeout: float = 30.0) -> None:
        """Stop the workers, close the connection, wait up to ``join_timeout`` s for the workers, finish the
        recording."""
        self.mailbox.stop()
        try:
            await self.connection.close()
        finally:
            if self.thread is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.thread.join, join_timeout)
            if self.recorder is not None:
                self.recorder.close()  # a full disk while finishing: DiskFullError, the recording removed


async def view_async(cfg: ViewConfig, on_stats: Callable[[dict], None] | None = None,
                     on_show: OnShow | None = None, stop: threading.Event | None = None,
                     every: float = 2.0, on_page: Callable[[str], None] | None = None) -> dict:
    """View ``cfg.url`` for ``cfg.seconds`` (0: until ``stop`` is set or the task is cancelled), serving the page
    at ``cfg.serve`` (``on_page(url)`` once it listens); ``on_stats(summary)`` every ``every`` seconds. Returns
    the final summary; InputError when the sender cannot be reached; a worker's exception is re-raised."""
    cfg.check()
    if cfg.record:
        from bbmr_stream.imageio import prepare_output_file

        prepare_output_file("--record", cfg.record)
    viewer = Viewer(cfg, on_show=on_show)
    viewer.start()
    page = None
    try:
        if cfg.serve:
            page, url = await viewer.serve_page(*cfg.serve)
            if on_page is not None:
                on_page(url)
        try:
            await viewer.connect()
        except (OSError, ConnectionError, ValueError) as e:
            raise InputError(f"cannot connect to {cfg.url}: {e}") from None
        t0 = time.time()
        while (not cfg.seconds or time.time() - t0 < cfg.seconds) and not (stop and stop.is_set()):
            await _sleep_unless(lambda: viewer.error is not None, every)
            if viewer.error is not None:  # a worker failed (a full disk under --record, a bug): stop now
                break
            if on_stats is not None:
                on_stats(viewer.summary())
    finally:
        try:
            await viewer.close()
        finally:
            if page is not None:
                await page.cleanup()
    if viewer.error is not None:
        raise viewer.error
    return viewer.summary()


async def _sleep_unless(cond: Callable[[], bool], seconds: float, tick: float = 0.1) -> None:
    """Sleep ``seconds``, waking early when ``cond()`` turns true (checked every ``tick`` s)."""
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        await asyncio.sleep(min(tick, max(0.0, end - time.monotonic())))


def view(cfg: ViewConfig, on_stats: Callable[[dict], None] | None = None, on_show: OnShow | None = None,
         stop: threading.Event | None = None, every: float = 2.0,
         on_page: Callable[[str], None] | None = None) -> dict:
    """:func:`view_async` in its own event loop (the ``bbmr-live view`` command)."""
    return asyncio.run(view_async(cfg, on_stats, on_show, stop, every, on_page))
