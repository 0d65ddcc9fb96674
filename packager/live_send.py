"""Live sender (``bbmr-live send``): frames from a source -> BBMR allocation -> one atlas picture per frame ->
an aiortc video track, the frame's scale map riding in the H.264 bitstream as the same SEI the packager writes.

Data path (the packager's own steps, no second implementation): ``bbmr_stream.sample`` / ``bbmr_stream.decode``
(source) -> ``models.factory.make_scorer`` + ``bbmr_stream.allocate`` (on a background worker, at most every
``realloc_every`` frames; the newest finished allocation is used) -> ``bbmr_stream.family.BBMR`` with the
``atlas`` layout (pack) -> ``bbmr_stream.sei`` (map into the access unit) -> aiortc (H.264 preferred, VP8
fallback). Each scale map also goes on an ordered data channel keyed by the frame's RTP timestamp, for VP8
viewers (no SEI) and for comparing the two carriages (docs/live.md).

aiortc builds its H.264 encoder inside ``RTCRtpSender``; :func:`install_sei_encoder` replaces aiortc's
encoder factory for H.264 with :class:`SEIH264Encoder` (the same libx264 settings, plus our SEI NAL before the
first slice of each access unit whose frame has a map). Signalling follows aiortc's examples/server: aiohttp,
``GET /`` (a page), ``POST /offer`` (JSON ``{"sdp", "type"}``).
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import itertools
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from bbmr_stream.allocate import DEFAULT_SCALES, allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.colour import video_frame
from bbmr_stream.family import Geometry, RungSpec, make_family
from bbmr_stream.errors import InputError
from bbmr_stream.resize import to_tensor

VIDEO_CLOCK = 90000  # RTP video clock (Hz)
MAX_OFFER_BYTES = 64 * 1024
MAX_MAPS = 600  # pts -> map kept for the encoder and the data channel (bounded)
PENDING_MAX = 256  # data-channel messages queued per peer until its channel opens


def source_frames(source: str, width: int, height: int) -> Iterator[np.ndarray]:
    """RGB uint8 frames, forever: ``sample`` (a generated pan, :mod:`bbmr_stream.sample`), a video file
    (looped) or a V4L2 device (``/dev/video*``)."""
    if source == "sample":
        from bbmr_stream.sample import pan_frames

        frames = list(pan_frames(width, height, 120))
        yield from itertools.cycle(frames + frames[-2:0:-1])  # back and forth: no jump at the loop
        return
    if source.startswith("/dev/video"):
        import av

        try:
            c = av.open(source, format="v4l2")
        except (OSError, av.error.FFmpegError) as e:
            raise InputError(f"{source}: cannot open the camera ({e})") from None
        for fr in c.decode(video=0):
            yield fr.to_ndarray(format="rgb24")
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


@dataclass
class LiveStats:
    frames_sent: int = 0
    allocations: int = 0
    maps_sent_channel: int = 0
    encoded_bytes: int = 0
    started: float = field(default_factory=time.time)
    shares: dict = field(default_factory=dict)


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
                 block: int = 128, scales=DEFAULT_SCALES, overall: int = 4, sync_alloc: bool = False) -> None:
        from models.factory import make_scorer

        self.geo = Geometry(BlockGrid(height, width, block), tuple(scales), overall, "atlas")
        self.family = make_family(RungSpec("bbmr", 23.0), self.geo)
        self.alloc = Allocator(make_scorer(scorer_name, tuple(scales), device), self.geo, realloc_every, device)
        self.sync = sync_alloc

    def describe(self, fps: float) -> dict:
        """The stream description a viewer gets with the SDP answer."""
        g = self.geo.grid
        return {"width": g.width, "height": g.height, "fps": fps, "block": g.block, "scales": list(self.geo.scales),
                "overall": self.geo.overall, "layout": "atlas", "matrix": "bt709", "full_range": False}

    def __call__(self, rgb: np.ndarray, index: int) -> tuple[np.ndarray, bytes, dict]:
        x = to_tensor(rgb)
        f = self.family.fit(self.alloc.factors(x, self.sync))
        pic = self.family.pictures(x, f)[0]
        smap = self.family.scale_map(f, index)
        bf = self.family.block_factors(f)
        shares = {k: float(np.mean(bf == k)) for k in self.geo.scales}
        return pic, smap, shares


class MapStore:
    """pts -> scale-map bytes, bounded (oldest dropped): read by the SEI encoder and the data channel."""

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


MAPS = MapStore()


_TARGET: dict = {"store": MAPS, "stats": None}  # where the installed encoder reads maps and counts bytes


def install_sei_encoder(store: MapStore = MAPS, stats: LiveStats | None = None) -> None:
    """Make aiortc's senders encode H.264 with our SEI (idempotent; the latest store/stats are used)."""
    import aiortc.rtcrtpsender as rs
    from aiortc.codecs.h264 import H264Encoder

    _TARGET.update(store=store, stats=stats)
    if getattr(rs.get_encoder, "bbmr", False):
        return
    original = rs.get_encoder

    class SEIH264Encoder(H264Encoder):
        """aiortc's H.264 encoder plus our SEI user_data_unregistered NAL in each access unit with a map."""

        def encode(self, frame, force_keyframe: bool = False):
            return _encode_with_sei(self, frame, force_keyframe, _TARGET["store"], _TARGET["stats"])

    def get_encoder(codec):
        if codec.mimeType.lower() == "video/h264":
            return SEIH264Encoder()
        return original(codec)

    get_encoder.bbmr = True
    rs.get_encoder = get_encoder


def _encode_with_sei(enc, frame, force_keyframe: bool, store: MapStore, stats: LiveStats | None):
    from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase

    from bbmr_stream.sei import build_sei_nal

    payload = store.get(frame.pts)  # before encoding: PyAV rebases frame.pts to the codec's time base in place
    nals = list(enc._encode_frame(frame, force_keyframe))
    if payload is not None and nals:
        sei = build_sei_nal(payload, "h264")[4:]  # without the start code: aiortc packetizes NAL units
        first_slice = next((i for i, n in enumerate(nals) if n and (n[0] & 0x1F) in (1, 5)), len(nals))
        nals.insert(first_slice, sei)
    if stats is not None:
        stats.encoded_bytes += sum(len(n) for n in nals)
    return enc._packetize(nals), convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)


def make_track(frames: Iterator[np.ndarray], pipeline: LivePipeline, fps: float, stats: LiveStats,
               store: MapStore = MAPS, on_frame=None, matrix: str = "bt709", limit: int | None = None):
    """The sender's MediaStreamTrack: paced at ``fps``, one atlas picture per source frame, pts on the 90 kHz
    RTP clock; ``on_frame(index, pts, rgb, payload, t_capture)`` sees every frame sent (the data channel, the
    selftest's references); after ``limit`` frames the track ends."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class BBMRTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0: float | None = None
            self.step = int(round(VIDEO_CLOCK / fps))

        async def recv(self):
            if limit is not None and self.n >= limit:
                self.stop()
                raise MediaStreamError
            if self.t0 is None:
                self.t0 = time.time()
            due = self.t0 + self.n / fps
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            loop = asyncio.get_running_loop()
            rgb = await loop.run_in_executor(None, next, frames)
            t_capture = time.time()
            pts = self.n * self.step
            pic, payload, shares = await loop.run_in_executor(None, pipeline, rgb, self.n)
            store.put(pts, payload)
            frame = await loop.run_in_executor(None, video_frame, pic, matrix, False)
            frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
            stats.frames_sent += 1
            stats.allocations = pipeline.alloc.count
            stats.shares = shares
            if on_frame is not None:
                on_frame(self.n, pts, rgb, payload, t_capture)
            self.n += 1
            return frame

    return BBMRTrack()


def first_frame_track(inner, on_first):
    """A per-peer pass-through track (a private copy of each frame) that reports the pts of the first frame it delivers: the first frame this peer's
    encoder sends, whose RTP timestamp the viewer sees as pts 0. The viewer needs it to key data-channel maps
    by received pts (VP8 carries no SEI)."""
    import av
    from aiortc import MediaStreamTrack

    class FirstFrameTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.first = True

        async def recv(self):
            shared = await inner.recv()
            # each peer's encoder gets its own frame: PyAV rebases frame.pts in place when it encodes, which
            # would corrupt the pts (and our map lookup) of the other peers sharing the relayed frame
            frame = av.VideoFrame.from_ndarray(shared.to_ndarray(), format=shared.format.name)
            frame.pts, frame.time_base = shared.pts, shared.time_base
            if self.first:
                self.first = False
                on_first(frame.pts)
            return frame

        def stop(self) -> None:
            super().stop()
            inner.stop()

    return FirstFrameTrack()


def map_message(pts: int, payload: bytes, t_capture: float) -> str:
    """The data-channel form of a scale map: JSON with the sender's RTP-clock pts and capture time (s)."""
    return json.dumps({"pts": pts, "map": base64.b64encode(payload).decode(), "t": t_capture})


class Sender:
    """The signalling server: ``GET /`` a page, ``POST /offer`` JSON SDP -> answer; one relayed track for all
    peers (each peer has its own encoder); every peer closed on shutdown."""

    def __init__(self, track, stats: LiveStats, store: MapStore = MAPS, stream: dict | None = None) -> None:
        from aiortc.contrib.media import MediaRelay

        self.track, self.stats, self.store = track, stats, store
        self.stream = stream or {}  # what a viewer needs beyond the maps: source size, fps, block, scales, overall
        self.relay = MediaRelay()
        self.pcs: set = set()
        self.peers: dict = {}  # pc -> {"channel": RTCDataChannel | None, "pending": [messages not yet sendable]}
        install_sei_encoder(store, stats)

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=MAX_OFFER_BYTES)
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
        from aiohttp import web
        from aiortc import RTCPeerConnection, RTCSessionDescription

        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"offer larger than {MAX_OFFER_BYTES} bytes"}, status=413)
        try:
            params = json.loads(body)
            if not isinstance(params, dict) or params.get("type") != "offer" or not isinstance(params.get("sdp"), str):
                raise ValueError("expected a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
            if not params["sdp"].startswith("v=0") or "\nm=video " not in params["sdp"].replace("\r\n", "\n"):
                raise ValueError("the SDP offers no video (it must start with v=0 and have an m=video line)")
            desc = RTCSessionDescription(sdp=params["sdp"], type="offer")
        except ValueError as e:
            return web.json_response({"error": f"bad offer: {e}"}, status=400)
        pc = RTCPeerConnection()
        self.pcs.add(pc)
        peer = self.peers[pc] = {"channel": None, "pending": []}

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                self.pcs.discard(pc)
                self.peers.pop(pc, None)

        @pc.on("datachannel")
        def on_channel(channel):
            peer["channel"] = channel

            @channel.on("open")
            def flush():
                self._flush(peer)

            self._flush(peer)

        def on_first(pts: int) -> None:
            self._send(peer, json.dumps({"first_pts": int(pts)}))

        try:
            await pc.setRemoteDescription(desc)
            for t in pc.getTransceivers():
                if t.kind == "video":
                    pc.addTrack(first_frame_track(self.relay.subscribe(self.track, buffered=False), on_first))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # noqa: BLE001 - garbage SDP raises many types inside aiortc
            await pc.close()
            self.pcs.discard(pc)
            return web.json_response({"error": f"bad offer SDP: {e.__class__.__name__}: {e}"[:300]}, status=400)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                  "bbmr": self.stream})

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
        await asyncio.gather(*(pc.close() for pc in list(self.pcs)), return_exceptions=True)
        self.pcs.clear()
        self.peers.clear()
