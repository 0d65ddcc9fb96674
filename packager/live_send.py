"""Live sender (``bbmr-live send``): frames from a source -> BBMR allocation -> one atlas picture per frame ->
an aiortc video track, the frame's scale map riding in the H.264 bitstream as the same SEI the packager writes.

Data path (the packager's own steps, no second implementation): ``bbmr_stream.sample`` / ``bbmr_stream.decode``
(source) -> ``models.factory.make_scorer`` + ``bbmr_stream.allocate`` (on a background worker, at most every
``realloc_every`` frames; the newest finished allocation is used) -> ``bbmr_stream.family.BBMR`` with the
``atlas`` layout (pack) -> ``bbmr_stream.sei`` (map into the access unit) -> aiortc (H.264 preferred, VP8
fallback). Each scale map also goes on an ordered data channel keyed by the frame's RTP timestamp, for VP8
viewers (no SEI) and for comparing the two carriages (docs/live.md).

The H.264 senders of all peers of one :class:`Sender` share one SEI encoder reading its :class:`MapStore`
(``bbmr_stream.rtc.SharedH264Stream``: aiortc's encoder, same libx264 settings, plus our SEI NAL before the
first slice of each access unit whose frame has a map; each frame encoded once, a joining or lagging peer
starting on a keyframe); nothing is patched process-wide, so senders in one process never see each other's
maps. VP8 peers keep aiortc's own encoder each. Signalling follows aiortc's examples/server: aiohttp, ``GET /``
(a page), ``POST /offer`` (JSON ``{"sdp", "type"}``), guarded as ``bbmr_stream.webguard`` says (docs/live.md).

Library entry points: :func:`start_sender` (async; a running sender on a port) and :func:`send` (serve until
stopped, status through a callback). Nothing here prints.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import itertools
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from bbmr_stream.allocate import DEFAULT_SCALES, allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.colour import video_frame
from bbmr_stream.errors import InputError
from bbmr_stream.family import BBMR, Geometry
from bbmr_stream.resize import to_tensor
from bbmr_stream.rtc import VIDEO_CLOCK, SharedH264Stream, attach_shared_encoders, copy_frame
from bbmr_stream.webguard import (
    Rate,
    RateLimiter,
    listen,
    rate_middleware,
    server_token,
    token_middleware,
    url_with_token,
)

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
MAX_MAPS = 600  # pts -> map kept for the encoder and the data channel (bounded)
PENDING_MAX = 256  # data-channel messages queued per peer until its channel opens

# on_frame(index, pts (90 kHz), source RGB uint8, scale-map bytes, capture time (s since the epoch))
OnFrame = Callable[[int, int, np.ndarray, bytes, float], None]


@dataclass(frozen=True)
class SendConfig:
    """One live sender. Units: ``size`` (width, height) in pixels; ``fps`` in frames per second;
    ``realloc_every`` and ``frames`` in frames."""

    source: str = "sample"  # "sample" (a generated pan), a video file (looped) or a V4L2 device (/dev/videoN)
    size: tuple[int, int] = (1280, 720)  # frames of another size are resized to this
    fps: float = 30.0
    scorer: str = "bicubic"  # bicubic (live rate) | light
    realloc_every: int = 15  # re-allocate at most every N frames, on a background worker
    device: str = "auto"
    backend: str | None = None  # SR inference runtime of a model scorer (models.backend); None: the default
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (RunningSender.port says which)
    frames: int | None = None  # end the track after this many frames (None: never)
    token: str | None = None  # required on a non-loopback host (None there: generated; bbmr_stream.webguard)
    max_peers: int = 4  # peer connections at once (connecting or connected); the next offer gets 503
    offer_rate: Rate = Rate(per_second=0.5, burst=5)  # POST /offer budget per client address (429 beyond)
    peer_timeout: float = 10.0  # s: a peer not connected by then, or silent (no RTCP report) that long, is dropped

    def check(self) -> None:
        """Options in range (one-line InputErrors, before any work)."""
        w, h = self.size
        if w < 64 or h < 64 or w % 2 or h % 2:
            raise InputError(f"--size {w}x{h}: even and at least 64x64")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"--fps {self.fps}: must be > 0")
        if self.frames is not None and self.frames < 1:
            raise InputError("--frames must be >= 1")
        if self.max_peers < 1:
            raise InputError("--max-peers must be >= 1")
        if not (math.isfinite(self.peer_timeout) and self.peer_timeout > 0):
            raise InputError("--peer-timeout must be > 0 seconds")
        self.offer_rate.check()


def source_frames(source: str, width: int, height: int) -> Iterator[np.ndarray]:
    """RGB uint8 frames, forever: ``sample`` (a generated pan, :mod:`bbmr_stream.sample`), a video file
    (looped) or a V4L2 device (``/dev/video*``)."""
    if source == "sample":
        from bbmr_stream.sample import pan_frames

        frames = list(pan_frames(width, height, 120))
        yield from itertools.cycle(frames + frames[-2:0:-1])  # back and forth: no jump at the loop
        return
    if source.startswith("/dev/video"):
        yield from _camera_frames(source)
        return
    from bbmr_stream.decode import frames, probe

    info = probe(source)
    while True:
        n = 0
        for fr in frames(info):
            n += 1
            yield fr.rgb
        if n == 0:
            raise InputError(f"{source}: no frames")


def _camera_frames(device: str) -> Iterator[np.ndarray]:
    import av

    try:
        c = av.open(device, format="v4l2")
    except (OSError, av.error.FFmpegError) as e:
        raise InputError(f"{device}: cannot open the camera ({e})") from None
    for fr in c.decode(video=0):
        yield fr.to_ndarray(format="rgb24")


def resized(frames: Iterable[np.ndarray], width: int, height: int) -> Iterator[np.ndarray]:
    """Frames of another size resized (the project's resize convention) to ``width`` x ``height`` pixels."""
    from bbmr_stream.resize import resize_to, to_uint8

    for f in frames:
        if f.shape[:2] != (height, width):
            f = to_uint8(resize_to(to_tensor(f), height, width))
        yield f


@dataclass
class LiveStats:
    """The sender's counters; ``encoded_bytes`` are the H.264 bytes of the shared SEI encoder (each frame counted
    once, however many peers it went to)."""

    frames_sent: int = 0
    allocations: int = 0
    maps_sent_channel: int = 0
    encoded_bytes: int = 0
    refused_full: int = 0  # offers refused with 503 (max_peers reached)
    dropped_timeout: int = 0  # peers dropped by the watchdog (not connected in time, or silent)
    started: float = field(default_factory=time.time)  # s since the epoch
    shares: dict = field(default_factory=dict)  # scale -> share of the blocks of the newest frame


class Allocator:
    """Scores and allocates on a background thread; :meth:`factors` returns the newest finished allocation
    (uniform until the first one is done) and submits ``rgb`` when ``realloc_every`` frames have passed and
    the worker is idle, so the send loop never waits for the scorer."""

    def __init__(self, scorer, geo: Geometry, realloc_every: int, device: torch.device) -> None:
        self.scorer, self.geo, self.every, self.device = scorer, geo, max(1, realloc_every), device
        self.current = np.full(geo.grid.n_blocks, geo.overall, np.uint8)
        self.busy = threading.Lock()
        self.since = 10**9
        self.count = 0

    def _work(self, x: torch.Tensor) -> None:
        try:
            g = self.geo.grid
            dist = self.scorer.score(x.to(self.device), g.block)
            self.current = allocate("optimal", dist, self.geo.scales, self.geo.overall, g.block,
                                    weights=g.valid_fraction())
            self.count += 1
        finally:
            self.busy.release()

    def factors(self, x: torch.Tensor, sync: bool = False) -> np.ndarray:
        """The per-block scale factors to pack frame ``x`` with (the newest finished allocation)."""
        self.since += 1
        if self.scorer is not None and self.since >= self.every and self.busy.acquire(blocking=False):
            self.since = 0
            if sync:
                self._work(x)
            else:
                threading.Thread(target=self._work, args=(x,), daemon=True).start()
        return self.current


class LivePipeline:
    """One frame in -> (atlas RGB picture, scale-map bytes): the packager's BBMR family with the atlas layout."""

    def __init__(self, width: int, height: int, scorer_name: str, realloc_every: int, device: torch.device,
                 block: int = 128, scales=DEFAULT_SCALES, overall: int = 4, sync_alloc: bool = False,
                 backend: str | None = None) -> None:
        from models.factory import make_scorer

        self.family = BBMR.atlas(BlockGrid(height, width, block), scales, overall)
        self.geo = self.family.geo
        scorer = make_scorer(scorer_name, tuple(scales), device, backend=backend)
        self.alloc = Allocator(scorer, self.geo, realloc_every, device)
        self.sync = sync_alloc

    def describe(self, fps: float) -> dict:
        """The stream description a viewer gets with the SDP answer (sizes in pixels, fps in frames/s)."""
        g = self.geo.grid
        return {"width": g.width, "height": g.height, "fps": fps, "block": g.block, "scales": list(self.geo.scales),
                "overall": self.geo.overall, "layout": "atlas", "matrix": "bt709", "full_range": False}

    def __call__(self, rgb: np.ndarray, index: int) -> tuple[np.ndarray, bytes, dict]:
        """(atlas picture, scale-map bytes, scale -> share of the blocks) of frame ``index``."""
        x = to_tensor(rgb)
        f = self.family.fit(self.alloc.factors(x, self.sync))
        pic = self.family.pictures(x, f)[0]
        smap = self.family.scale_map(f, index)
        bf = self.family.block_factors(f)
        shares = {k: float(np.mean(bf == k)) for k in self.geo.scales}
        return pic, smap, shares


class MapStore:
    """pts (90 kHz) -> scale-map bytes, bounded (oldest dropped): read by the SEI encoders (their threads) and
    the data channel."""

    def __init__(self, limit: int = MAX_MAPS) -> None:
        self.maps: OrderedDict[int, bytes] = OrderedDict()
        self.limit = limit
        self.lock = threading.Lock()

    def put(self, pts: int, payload: bytes) -> None:
        with self.lock:
            self.maps[pts] = payload
            while len(self.maps) > self.limit:
                self.maps.popitem(last=False)

    def get(self, pts: int) -> bytes | None:
        with self.lock:
            return self.maps.get(pts)


class BBMRTrack(MediaStreamTrack):
    """The sender's video track: paced at ``fps``, one atlas picture per source frame, pts on the 90 kHz RTP
    clock, each frame's map put in ``store`` before the frame is handed on; ``on_frame`` sees every frame sent
    (the data channel, the selftest's references); after ``limit`` frames the track ends."""

    kind = "video"

    def __init__(self, frames: Iterator[np.ndarray], pipeline: LivePipeline, fps: float, stats: LiveStats,
                 store: MapStore, on_frame: OnFrame | None = None, matrix: str = "bt709",
                 limit: int | None = None) -> None:
        super().__init__()
        self.frames, self.pipeline, self.fps, self.stats, self.store = frames, pipeline, fps, stats, store
        self.on_frame, self.matrix, self.limit = on_frame, matrix, limit
        self.n = 0
        self.t0: float | None = None  # wall time of frame 0 (s since the epoch)
        self.step = int(round(VIDEO_CLOCK / fps))  # pts ticks per frame

    async def _pace(self) -> None:
        if self.t0 is None:
            self.t0 = time.time()
        delay = self.t0 + self.n / self.fps - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def recv(self):
        if self.limit is not None and self.n >= self.limit:
            self.stop()
            raise MediaStreamError
        await self._pace()
        loop = asyncio.get_running_loop()
        rgb = await loop.run_in_executor(None, next, self.frames)
        t_capture = time.time()
        pts = self.n * self.step
        pic, payload, shares = await loop.run_in_executor(None, self.pipeline, rgb, self.n)
        self.store.put(pts, payload)
        frame = await loop.run_in_executor(None, video_frame, pic, self.matrix, False)
        frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
        self.stats.frames_sent += 1
        self.stats.allocations = self.pipeline.alloc.count
        self.stats.shares = shares
        if self.on_frame is not None:
            self.on_frame(self.n, pts, rgb, payload, t_capture)
        self.n += 1
        return frame


class FirstFrameTrack(MediaStreamTrack):
    """A per-peer pass-through track of ``inner`` that reports the pts of the first frame it delivers to
    ``on_first``: the first frame this peer's encoder sends, whose RTP timestamp the viewer sees as pts 0. The
    viewer needs it to key data-channel maps by received pts (VP8 carries no SEI). With ``copy`` each frame is
    a private copy: a per-peer encoder (VP8) rebases ``frame.pts`` in place, which would corrupt the pts of the
    other peers sharing the relayed frame; H.264 peers share one encode that copies once
    (``bbmr_stream.rtc.SharedH264Stream``) and set ``copy`` False."""

    kind = "video"

    def __init__(self, inner: MediaStreamTrack, on_first: Callable[[int], None], copy: bool = True) -> None:
        super().__init__()
        self.inner, self.on_first, self.copy = inner, on_first, copy
        self.first = True
        self.report = True  # False: the peer's encoder reports its first sent frame instead (it may skip some)

    async def recv(self):
        frame = await self.inner.recv()
        if self.copy:
            frame = copy_frame(frame)
        if self.first:
            self.first = False
            if self.report:
                self.on_first(frame.pts)
        return frame

    def stop(self) -> None:
        super().stop()
        self.inner.stop()


def map_message(pts: int, payload: bytes, t_capture: float) -> str:
    """The data-channel form of a scale map: JSON with the sender's RTP-clock pts and capture time (s)."""
    return json.dumps({"pts": pts, "map": base64.b64encode(payload).decode(), "t": t_capture})


def parse_offer(body: bytes):
    """An ``RTCSessionDescription`` from a ``POST /offer`` body; ValueError saying what is wrong."""
    from aiortc import RTCSessionDescription

    params = json.loads(body)
    if not isinstance(params, dict) or params.get("type") != "offer" or not isinstance(params.get("sdp"), str):
        raise ValueError("expected a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
    sdp = params["sdp"].replace("\r\n", "\n")
    if not params["sdp"].startswith("v=0") or "\nm=video " not in sdp:
        raise ValueError("the SDP offers no video (it must start with v=0 and have an m=video line)")
    if sdp.count("\nm=video ") > 1:  # one track per peer: each section would get its own subscription/encoder
        raise ValueError("the SDP offers more than one video section (one is served per peer)")
    return RTCSessionDescription(sdp=params["sdp"], type="offer")


class Sender:
    """The signalling server: ``GET /`` a page, ``POST /offer`` JSON SDP -> answer; one relayed track for all
    peers, encoded once for every H.264 peer (``self.shared``, reading this sender's ``store``; a joining peer
    starts on a keyframe it asks for); every peer closed on shutdown.

    Guards (docs/live.md): ``token`` (None: open; every route, checked before the handler runs), at most
    ``max_peers`` peer connections (503 beyond, nothing allocated), ``limiter`` on ``POST /offer`` per client
    address (429), and :meth:`watch`, which drops a peer not connected within ``peer_timeout`` seconds or
    silent that long (no RTCP receiver report: it vanished), without touching the others."""

    def __init__(self, track, stats: LiveStats, store: MapStore | None = None, stream: dict | None = None,
                 token: str | None = None, max_peers: int = 4, limiter: RateLimiter | None = None,
                 peer_timeout: float = 10.0) -> None:
        from aiortc.contrib.media import MediaRelay

        self.track, self.stats = track, stats
        self.store = store if store is not None else MapStore()
        self.stream = stream or {}  # what a viewer needs beyond the maps: source size, fps, block, scales, overall
        self.token, self.max_peers, self.peer_timeout = token, max_peers, peer_timeout
        self.limiter = limiter if limiter is not None else RateLimiter(Rate())
        self.shared = SharedH264Stream(self.store.get, self._count_encoded)  # one H.264 encode for all peers
        self.relay = MediaRelay()
        self.pcs: set = set()
        self.peers: dict = {}  # pc -> {"channel", "pending": [messages not yet sendable], "created", "connected"}

    def app(self):
        """The aiohttp application (``/`` and ``/offer``; closes every peer on shutdown)."""
        from aiohttp import web

        app = web.Application(client_max_size=MAX_OFFER_BYTES,
                              middlewares=[token_middleware(self.token), rate_middleware(self.limiter, ("/offer",))])
        app.router.add_get("/", self.index)
        app.router.add_post("/offer", self.offer)
        app.on_shutdown.append(self.shutdown)
        return app

    async def index(self, request):
        from aiohttp import web

        s = self.stats
        return web.Response(content_type="text/html", text=(
            "<!doctype html><title>bbmr-live sender</title><h1>bbmr-live sender</h1>"
            f"<p>frames sent: {s.frames_sent}, allocations: {s.allocations}, peers: {len(self.pcs)}</p>"
            "<p>View with <code>bbmr-live view http://HOST:PORT/</code> (POST /offer, JSON SDP).</p>"))

    async def offer(self, request):
        """``POST /offer``: the answer with the stream description, or 400/413/503 with ``{"error"}``."""
        from aiohttp import web

        if len(self.pcs) >= self.max_peers:
            return self._full()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"offer larger than {MAX_OFFER_BYTES} bytes"}, status=413)
        try:
            desc = parse_offer(body)
        except ValueError as e:
            return web.json_response({"error": f"bad offer: {e}"}, status=400)
        if len(self.pcs) >= self.max_peers:  # again: other offers may have been admitted while this body arrived
            return self._full()
        pc = self._new_peer()
        try:
            await self._answer(pc, desc)
        except Exception as e:  # noqa: BLE001 - garbage SDP raises many types inside aiortc
            await self._drop(pc)
            return web.json_response({"error": f"bad offer SDP: {e.__class__.__name__}: {e}"[:300]}, status=400)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                  "bbmr": self.stream})

    def _full(self):
        from aiohttp import web

        self.stats.refused_full += 1
        return web.json_response({"error": f"sender full: {len(self.pcs)} of {self.max_peers} peers (--max-peers); "
                                  "try again later"}, status=503, headers={"Retry-After": "5"})

    def _new_peer(self):
        """A peer connection registered with its data-channel state (closed and forgotten when it fails)."""
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        self.pcs.add(pc)
        peer = self.peers[pc] = {"channel": None, "pending": [], "created": time.monotonic(), "connected": None,
                                 "report": None, "heard": None}  # newest RTCP report seen, and when (monotonic)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState == "connected" and peer["connected"] is None:
                peer["connected"] = time.monotonic()
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)

        @pc.on("datachannel")
        def on_channel(channel):
            peer["channel"] = channel
            channel.on("open", lambda: self._flush(peer))
            self._flush(peer)

        return pc

    async def _answer(self, pc, desc) -> None:
        """Answer ``desc`` with this sender's track on every video section; H.264 sections get our SEI encoder."""
        peer = self.peers[pc]

        def on_first(pts: int) -> None:
            self._send(peer, json.dumps({"first_pts": int(pts)}))

        await pc.setRemoteDescription(desc)
        for t in pc.getTransceivers():
            if t.kind == "video":
                pc.addTrack(FirstFrameTrack(self.relay.subscribe(self.track, buffered=False), on_first))
        await pc.setLocalDescription(await pc.createAnswer())  # ICE gathering: may take seconds
        loop = asyncio.get_running_loop()

        def first_sent(pts: int) -> None:  # an encoder thread: the first frame this H.264 peer sends
            loop.call_soon_threadsafe(on_first, pts)

        for sender in attach_shared_encoders(pc, self.shared, first_sent):
            sender.track.copy = False
            sender.track.report = False  # the encoder reports the first frame it actually sends
        peer["created"] = time.monotonic()  # the connect timeout runs from the answer

    def _count_encoded(self, n: int) -> None:
        self.stats.encoded_bytes += n

    async def _drop(self, pc) -> None:
        """Close ``pc``, stop its tracks (their relay subscriptions) and forget it."""
        self.pcs.discard(pc)
        self.peers.pop(pc, None)
        for s in pc.getSenders():
            if s.track is not None:
                s.track.stop()
        await asyncio.shield(pc.close())  # a cancelled caller (shutdown) must not leave it half closed

    async def _silent_for(self, pc, peer: dict, now: float) -> float:
        """Seconds (monotonic) since this watchdog first saw ``pc``'s newest RTCP receiver report (or since it
        connected, before the first one); aiortc's report timestamps are wall-clock, used only to tell a new
        report from the last one."""
        newest = None
        for s in pc.getSenders():
            for st in (await s.getStats()).values():
                if st.type == "remote-inbound-rtp" and (newest is None or st.timestamp > newest):
                    newest = st.timestamp
        if newest is not None and newest != peer["report"]:
            peer["report"], peer["heard"] = newest, now
        return now - (peer["heard"] if peer["heard"] is not None else peer["connected"])

    async def watch(self, every: float = 1.0) -> None:
        """Drop, every ``every`` seconds, each peer not connected ``peer_timeout`` s after its offer or silent
        for ``peer_timeout`` s (counted in ``stats.dropped_timeout``). Runs until cancelled."""
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for pc, peer in list(self.peers.items()):
                try:
                    if peer["connected"] is None:
                        late = now - peer["created"] > self.peer_timeout
                    else:
                        late = await self._silent_for(pc, peer, now) > self.peer_timeout
                    if late and pc in self.peers:
                        self.stats.dropped_timeout += 1
                        await self._drop(pc)
                except Exception:  # noqa: BLE001 - one peer's failure must not end the watchdog for all
                    log.exception("watchdog: checking a peer failed")

    def send_map(self, pts: int, payload: bytes, t_capture: float) -> None:
        """Every peer's data channel gets the map; messages are queued (bounded, newest kept) until the channel
        is open, since aiortc loses messages sent before ``open``."""
        msg = map_message(pts, payload, t_capture)
        for peer in list(self.peers.values()):
            self._send(peer, msg)

    def _send(self, peer: dict, msg: str) -> None:
        peer["pending"].append(msg)
        del peer["pending"][:-PENDING_MAX]
        self._flush(peer)

    def _flush(self, peer: dict) -> None:
        ch = peer["channel"]
        if ch is None or ch.readyState != "open":
            return
        for msg in peer["pending"]:
            ch.send(msg)
            if msg.startswith('{"pts"'):
                self.stats.maps_sent_channel += 1
        peer["pending"].clear()

    async def shutdown(self, app=None) -> None:
        """Close every peer connection."""
        await asyncio.gather(*(self._drop(pc) for pc in list(self.pcs)), return_exceptions=True)
        self.pcs.clear()
        self.peers.clear()


@dataclass
class RunningSender:
    """A sender serving on ``port``: :meth:`close` closes its peers and frees the port."""

    sender: Sender
    runner: object  # aiohttp.web.AppRunner
    port: int
    watchdog: asyncio.Task | None = None
    url: str = ""  # where viewers connect, with ``?token=`` when one is required

    @property
    def stats(self) -> LiveStats:
        return self.sender.stats

    async def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            await asyncio.gather(self.watchdog, return_exceptions=True)
        await self.sender.shutdown()
        await self.runner.cleanup()


async def start_sender(cfg: SendConfig, on_frame: OnFrame | None = None) -> RunningSender:
    """Build the pipeline and the track of ``cfg`` and serve the signalling endpoints on ``cfg.host:cfg.port``;
    every frame sent goes to each peer's data channel and then to ``on_frame``."""

    from bbmr_stream.device import pick_device

    cfg.check()
    token = server_token(cfg.host, cfg.token)
    w, h = cfg.size
    pipeline = LivePipeline(w, h, cfg.scorer, cfg.realloc_every, pick_device(cfg.device), backend=cfg.backend)
    sender = Sender(None, LiveStats(), stream=pipeline.describe(cfg.fps), token=token, max_peers=cfg.max_peers,
                    limiter=RateLimiter(cfg.offer_rate), peer_timeout=cfg.peer_timeout)

    def sent(i: int, pts: int, rgb: np.ndarray, payload: bytes, t_capture: float) -> None:
        """Each frame's map on every peer's data channel, then the caller's ``on_frame``."""
        sender.send_map(pts, payload, t_capture)
        if on_frame is not None:
            on_frame(i, pts, rgb, payload, t_capture)

    frames = resized(source_frames(cfg.source, w, h), w, h)
    sender.track = BBMRTrack(frames, pipeline, cfg.fps, sender.stats, sender.store, on_frame=sent, limit=cfg.frames)
    runner, base = await listen(sender.app(), cfg.host, cfg.port, "--host/--port")
    watchdog = asyncio.ensure_future(sender.watch(min(1.0, cfg.peer_timeout / 4)))
    return RunningSender(sender, runner, runner.addresses[0][1], watchdog, url_with_token(base, token))


async def send_async(cfg: SendConfig, on_started: Callable[[str], None] | None = None,
                     on_status: Callable[[LiveStats, int], None] | None = None, every: float = 2.0,
                     stop: threading.Event | None = None) -> LiveStats:
    """Serve ``cfg`` until ``stop`` is set (or the task is cancelled: Ctrl-C); ``on_started(url)`` once it
    listens, ``on_status(stats, peers)`` every ``every`` seconds. Returns the final counters."""
    running = await start_sender(cfg)
    if on_started is not None:
        on_started(running.url)
    try:
        while stop is None or not stop.is_set():
            await asyncio.sleep(every)
            if on_status is not None:
                on_status(running.stats, len(running.sender.pcs))
    finally:
        await running.close()
    return running.stats


def send(cfg: SendConfig, on_started: Callable[[str], None] | None = None,
         on_status: Callable[[LiveStats, int], None] | None = None, every: float = 2.0,
         stop: threading.Event | None = None) -> LiveStats:
    """:func:`send_async` in its own event loop (the ``bbmr-live send`` command)."""
    return asyncio.run(send_async(cfg, on_started, on_status, every, stop))
