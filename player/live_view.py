"""Live viewer (``bbmr-live view URL``): aiortc receiver -> scale map per frame -> unpack -> SR, never stalling.

- Receive loop (asyncio): each decoded frame is matched with its scale map, from the SEI in the H.264 access
  unit (``bbmr_stream.demux.scalemap_of``, the player's own reader) or, for VP8, from the ordered data channel
  keyed by RTP timestamp (received pts = RTP ts minus the first frame's, so the offset to the sender's pts is
  learnt once; VP8 pts can be off by one tick: +-1 is accepted). A frame without a map reuses the last one
  and is counted. The frame goes into a one-slot mailbox: the newest frame wins, older ones are dropped.
- Two worker threads: the stand-in loop rebuilds the newest frame with bicubic at once and shows it; the SR loop,
  whenever it is free, takes the newest frame through the SR upscaler (JointSR by default) and shows that (paired
  with the same frame's stand-in on the page). What is shown says which it is; a slow SR never stalls the
  stand-ins or the receive loop.
- Stats: fps received / shown / super-resolved, bitrate (encoded video bytes handed to the decoder, counted by
  a wrapper around aiortc's decoder factory), glass-to-glass latency (the
  sender's capture time travels with each map on the data channel; same clock in the selftest), x2/x4/x8
  shares, maps matched (SEI / data channel / reused).
- ``--serve HOST:PORT``: a page with the live picture side by side (bicubic | BBMR) and the stats.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.demux import scalemap_of
from bbmr_stream.family import Geometry, RungSpec, make_family
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.errors import ScaleMapError

VIDEO_CLOCK = 90000
RECEIVED = {"bytes": 0}  # encoded video bytes decoded in this process (install_byte_counter)


def install_byte_counter() -> None:
    """Count the encoded bytes of every video frame aiortc decodes (aiortc's inbound-rtp stats have no byte
    count); idempotent."""
    import aiortc.rtcrtpreceiver as rr

    if getattr(rr.get_decoder, "bbmr", False):
        return
    original = rr.get_decoder

    def get_decoder(codec):
        dec = original(codec)
        if codec.mimeType.lower().startswith("video/"):
            inner = dec.decode

            def decode(encoded_frame):
                RECEIVED["bytes"] += len(encoded_frame.data)
                return inner(encoded_frame)

            dec.decode = decode
        return dec

    get_decoder.bbmr = True
    rr.get_decoder = get_decoder


@dataclass
class ViewStats:
    received: int = 0
    shown: int = 0
    superresolved: int = 0
    dropped: int = 0  # frames replaced in the mailbox before the worker took them
    maps_sei: int = 0
    maps_channel: int = 0
    maps_reused: int = 0
    maps_invalid: int = 0
    bytes: int = 0
    latencies_ms: list = field(default_factory=list)  # capture -> shown (stand-in)
    sr_latencies_ms: list = field(default_factory=list)  # capture -> super-resolved
    shares: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    codec: str = ""
    showing: str = "nothing yet"

    def summary(self) -> dict:
        dt = max(time.time() - self.started, 1e-6)
        lat = self.latencies_ms[-300:]
        srl = self.sr_latencies_ms[-300:]
        return {"frames_received": self.received, "frames_shown": self.shown,
                "frames_superresolved": self.superresolved, "frames_dropped": self.dropped,
                "fps_received": round(self.received / dt, 2), "fps_shown": round(self.shown / dt, 2),
                "fps_superresolved": round(self.superresolved / dt, 2),
                "kbps_received": round(self.bytes * 8 / dt / 1000, 1), "codec": self.codec,
                "maps_matched": self.maps_sei + self.maps_channel, "maps_sei": self.maps_sei,
                "maps_channel": self.maps_channel, "maps_reused": self.maps_reused,
                "maps_invalid": self.maps_invalid,
                "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
                "sr_latency_ms_median": round(statistics.median(srl), 1) if srl else None,
                "shares": self.shares, "showing": self.showing}


class MapChannel:
    """Maps from the data channel: sender pts -> (map bytes, sender capture time). The sender also sends
    ``{"first_pts": P}``: the pts of the first frame it sent to this viewer, which arrives as pts 0."""

    def __init__(self, limit: int = 600) -> None:
        self.maps: dict[int, tuple[bytes, float]] = {}
        self.order: list[int] = []
        self.limit = limit
        self.offset: int | None = None  # sender pts - received pts

    def add(self, message: str) -> None:
        try:
            d = json.loads(message)
            if "first_pts" in d:
                self.offset = int(d["first_pts"])
                return
            pts, payload, t = int(d["pts"]), base64.b64decode(d["map"]), float(d.get("t", 0.0))
        except (ValueError, KeyError, TypeError):
            return
        self.maps[pts] = (payload, t)
        self.order.append(pts)
        if len(self.order) > self.limit:
            self.maps.pop(self.order.pop(0), None)

    def time_of(self, sender_pts: int) -> float | None:
        hit = self.maps.get(sender_pts)
        return hit[1] if hit else None

    def lookup(self, received_pts: int) -> tuple[bytes, float] | None:
        """The map of a frame by its received pts, +-1 tick (VP8 pts rounding)."""
        if self.offset is None:
            return None
        for d in (0, -1, 1):
            hit = self.maps.get(received_pts + self.offset + d)
            if hit is not None:
                return hit
        return None


class Viewer:
    def __init__(self, url: str, upscaler_name: str = "jointsr", device=None, codec: str = "h264",
                 fps: float = 30.0, reference=None, record: str | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.upscaler_name, self.device, self.codec, self.fps = upscaler_name, device, codec, fps
        self.stats = ViewStats()
        self.channel = MapChannel()
        self.mailbox: tuple | None = None  # newest frame for the stand-in loop
        self.sr_mailbox: tuple | None = None  # newest frame for the SR loop
        self.lows: dict[int, np.ndarray] = {}  # frame index -> bicubic stand-in (recent), paired with SR results
        self.cv = threading.Condition()
        self.stop = threading.Event()
        self.last_map: ScaleMap | None = None
        self.geometry = None
        self.shown_bicubic: np.ndarray | None = None
        self.pair: tuple | None = None  # (bicubic, SR, frame index) of the newest super-resolved frame
        self.reference = reference  # frame_index -> source RGB (selftest), else None
        self.psnr: list[float] = []
        self.psnr_bicubic: list[float] = []
        self.psnr_by_frame: dict[int, float] = {}  # frame index -> bicubic PSNR-Y (selftest)
        self.psnr_sr_by_frame: dict[int, float] = {}  # frame index -> SR PSNR-Y (selftest)
        self.record = record
        self.writer = None
        self.pc = None
        self.bytes0 = 0
        self.on_show = None  # callback(rgb, scale map, what, frame index) for each frame as finally shown
        self.stream: dict = {}  # the sender's description (source size, block, scales, overall)
        self.error: BaseException | None = None  # an exception in the SR worker (a bug): re-raised by the caller

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        import aiohttp
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        install_byte_counter()
        self.bytes0 = RECEIVED["bytes"]
        self.pc = pc = RTCPeerConnection()
        ch = pc.createDataChannel("maps", ordered=True)
        ch.on("message", self.on_message)
        tr = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpSender.getCapabilities("video").codecs
        want = "video/h264" if self.codec == "h264" else "video/vp8"
        prefs = [c for c in caps if c.mimeType.lower() == want] + [c for c in caps if c.mimeType.lower() == "video/rtx"]
        tr.setCodecPreferences(prefs)

        @pc.on("track")
        def on_track(track):
            asyncio.ensure_future(self.receive(track))

        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as s:
            async with s.post(self.url + "offer", json={"sdp": pc.localDescription.sdp,
                                                        "type": pc.localDescription.type}) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise ConnectionError(f"{self.url}offer: HTTP {r.status}: {body.get('error', body)}")
        self.stream = body.get("bbmr") or {}
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))

    def on_message(self, message) -> None:
        if isinstance(message, str) and len(message) < 1 << 16:
            self.channel.add(message)

    async def receive(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        step = int(round(VIDEO_CLOCK / self.fps))
        while not self.stop.is_set():
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            self.stats.received += 1
            smap, t_capture = self.map_for(frame, step)
            with self.cv:
                if self.mailbox is not None:
                    self.stats.dropped += 1
                self.mailbox = (frame, smap, t_capture)
                self.sr_mailbox = self.mailbox  # the SR thread takes the newest frame whenever it is free
                self.cv.notify_all()

    def map_for(self, frame, step: int):
        """(the frame's map or the last one, sender capture time or None), counting where it came from."""
        smap = scalemap_of(frame)
        t = None
        if isinstance(smap, ScaleMap):
            self.stats.maps_sei += 1
            self.stats.codec = "h264 (map in SEI)"
            t = self.channel.time_of(smap.frame_index * step)
        else:
            if smap is not None:
                self.stats.maps_invalid += 1
            hit = self.channel.lookup(int(frame.pts or 0))
            smap = None
            if hit is not None:
                try:
                    smap = ScaleMap.from_bytes(hit[0])
                    t = hit[1]
                    self.stats.maps_channel += 1
                    self.stats.codec = self.stats.codec or "map on data channel"
                except ScaleMapError:
                    self.stats.maps_invalid += 1
        if smap is None:
            self.stats.maps_reused += 1
            return self.last_map, None
        self.last_map = smap
        return smap, t

    async def update_bitrate(self) -> None:
        self.stats.bytes = RECEIVED["bytes"] - self.bytes0

    async def close(self) -> None:
        self.stop.set()
        with self.cv:
            self.cv.notify_all()
        if self.pc is not None:
            await self.pc.close()

    # ------------------------------------------------------------------ SR worker
    def _family(self, smap: ScaleMap):
        """The BBMR family of the sender's stream description (source size, block, scales, overall)."""
        key = (smap.grid_h, smap.grid_w, smap.block, smap.scale_set)
        if self.geometry is None or self.geometry[0] != key:
            st = self.stream
            w, h = int(st.get("width", smap.grid_w * smap.block)), int(st.get("height", smap.grid_h * smap.block))
            grid = BlockGrid(h, w, smap.block)
            geo = Geometry(grid, tuple(smap.scale_set), int(st.get("overall", 4)), "atlas")
            self.geometry = (key, make_family(RungSpec("bbmr", 23.0), geo))
        return self.geometry[1]

    def worker(self) -> None:
        """Run the stand-in loop here and the SR loop on a second thread (both until :meth:`close`)."""
        sr = threading.Thread(target=self._guard, args=(self._sr_loop,), daemon=True) \
            if self.upscaler_name != "bicubic" else None
        if sr is not None:
            sr.start()
        self._guard(self._standin_loop)
        if sr is not None:
            sr.join(timeout=600)

    def _guard(self, fn) -> None:
        try:
            fn()
        except BaseException as e:  # a bug: kept for the caller, which re-raises it
            self.error = e
            self.stop.set()
            with self.cv:
                self.cv.notify_all()

    def _take(self, slot: str):
        """The newest frame of a mailbox slot (waits), None when stopping."""
        with self.cv:
            while getattr(self, slot) is None and not self.stop.is_set():
                self.cv.wait(0.2)
            if self.stop.is_set():
                return None
            item = getattr(self, slot)
            setattr(self, slot, None)
            return item

    def _prepare(self, item):
        """(family, LR picture, map) of a received frame, or None when its map does not fit the stream."""
        from bbmr_stream.colour import frame_to_rgb

        frame, smap, t_capture = item
        if smap is None:
            return None
        pic = frame_to_rgb(frame, "bt709", False)[0]
        try:
            fam = self._family(smap)
            if [list(p) for p in fam.sizes()] != [[pic.shape[1], pic.shape[0]]]:
                raise ValueError(f"picture {pic.shape[1]}x{pic.shape[0]} is not this stream's atlas")
            smap.check_grid(fam.geo.grid, fam.lr_scales())
        except (ScaleMapError, ValueError):
            self.stats.maps_invalid += 1
            return None
        return fam, pic, smap

    def _standin_loop(self) -> None:
        """Every frame it can: the bicubic reconstruction at once (fast), shown until SR has a newer result."""
        from bbmr_stream.metrics import psnr_y
        from models.factory import make_upscaler

        bicubic = make_upscaler("bicubic", (2, 4, 8), self.device)
        while (item := self._take("mailbox")) is not None:
            prep = self._prepare(item)
            if prep is None:
                continue
            fam, pic, smap = prep
            low = fam.reconstruct([pic], smap, bicubic)
            self.lows[smap.frame_index] = low
            self.lows.pop(smap.frame_index - 64, None)
            self.show(low, None, "bicubic stand-in", smap.frame_index)
            ref = self.reference.get(smap.frame_index) if self.reference is not None else None
            if ref is not None:
                self.psnr_bicubic.append(psnr_y(ref, low))
                self.psnr_by_frame[smap.frame_index] = self.psnr_bicubic[-1]
                if self.upscaler_name == "bicubic":
                    self.psnr.append(self.psnr_bicubic[-1])
            self.stats.shares = {f"x{k}": float(v) for k, v in smap.share().items()}
            if item[2]:
                self.stats.latencies_ms.append((time.time() - item[2]) * 1000)

    def _sr_loop(self) -> None:
        """Whenever it is free, the newest frame through the SR upscaler (seconds per 1080p frame on a CPU)."""
        from bbmr_stream.metrics import psnr_y
        from models.factory import make_upscaler

        sr = make_upscaler(self.upscaler_name, (2, 4, 8), self.device)
        while (item := self._take("sr_mailbox")) is not None:
            prep = self._prepare(item)
            if prep is None:
                continue
            fam, pic, smap = prep
            high = fam.reconstruct([pic], smap, sr)
            self.stats.superresolved += 1
            if item[2]:
                self.stats.sr_latencies_ms.append((time.time() - item[2]) * 1000)
            low = self.lows.get(smap.frame_index)
            self.show(low if low is not None else high, high, f"BBMR {self.upscaler_name}", smap.frame_index)
            ref = self.reference.get(smap.frame_index) if self.reference is not None else None
            if ref is not None:
                self.psnr.append(psnr_y(ref, high))
                self.psnr_sr_by_frame[smap.frame_index] = self.psnr[-1]

    def show(self, low: np.ndarray, high: np.ndarray | None, what: str, index: int = -1) -> None:
        """Show a frame: its bicubic stand-in (``high`` None) or its SR result; the page pairs an SR result with
        the bicubic reconstruction of the same frame."""
        self.shown_bicubic = low
        if high is None:
            self.stats.shown += 1  # a frame counts once as shown (its stand-in), its SR result as super-resolved
        else:
            self.pair = (low, high, index)
        self.stats.showing = what
        if self.on_show is not None:
            self.on_show(high if high is not None else low, self.last_map, what, index)
        final = high if high is not None else (low if self.upscaler_name == "bicubic" else None)
        if self.record and final is not None:  # --record: each frame as finally shown
            from player.output import VideoWriter

            if self.writer is None:
                self.writer = VideoWriter(self.record, final.shape[1], final.shape[0], int(round(self.fps)), 18.0)
            self.writer.write(final)

    def side_by_side_jpeg(self, max_width: int = 1600) -> bytes | None:
        """bicubic | BBMR of the newest super-resolved frame (the same frame on both sides), or the newest
        bicubic stand-in on both sides until SR has produced one."""
        from PIL import Image, ImageDraw

        if self.pair is not None:
            low, high, index = self.pair
            right = f"BBMR {self.upscaler_name}, frame {index}"
        elif self.shown_bicubic is not None:
            low = high = self.shown_bicubic
            right = "bicubic (no SR upscaler)" if self.upscaler_name == "bicubic" else "waiting for SR"
        else:
            return None
        pair = np.concatenate([low, np.full((low.shape[0], 8, 3), 255, np.uint8), high], axis=1)
        img = Image.fromarray(pair)
        if img.width > max_width:
            img = img.resize((max_width, int(img.height * max_width / img.width)))
        d = ImageDraw.Draw(img)
        d.text((6, 6), "bicubic", fill="yellow")
        d.text((img.width // 2 + 6, 6), right, fill="yellow")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close(True)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bbmr-live viewer</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:12px}img{max-width:100%;border:1px solid #444}
#stats{font-family:monospace;white-space:pre;font-size:13px}</style></head><body>
<h2>bbmr-live: bicubic (left) | BBMR super-resolved (right)</h2>
<img id="live" alt="live picture" src="frame.jpg">
<div id="stats">connecting...</div>
<script>
const img = document.getElementById('live'), st = document.getElementById('stats');
function tick(){ img.src = 'frame.jpg?t=' + Date.now(); }
img.onload = () => setTimeout(tick, 150); img.onerror = () => setTimeout(tick, 500);
async function stats(){ try { const r = await fetch('stats.json'); const d = await r.json();
  st.textContent = Object.entries(d).map(([k,v]) => k.padEnd(22) + JSON.stringify(v)).join('\\n'); } catch(e) {}
  setTimeout(stats, 500); }
stats();
</script></body></html>"""


def serve_app(viewer: Viewer):
    """The ``--serve`` page: ``/`` (HTML), ``/frame.jpg`` (bicubic | BBMR), ``/stats.json``."""
    from aiohttp import web

    async def index(request):
        return web.Response(text=PAGE, content_type="text/html")

    async def frame(request):
        data = await asyncio.get_running_loop().run_in_executor(None, viewer.side_by_side_jpeg)
        if data is None:
            return web.Response(status=503, text="no frame yet")
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def stats(request):
        await viewer.update_bitrate()
        return web.json_response(viewer.stats.summary())

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/frame.jpg", frame)
    app.router.add_get("/stats.json", stats)
    return app
