"""The one adapter between the live code (``packager/live_send.py``, ``player/live_*.py``) and aiortc's internals.

aiortc has no public way to choose the encoder of one ``RTCRtpSender`` or to count the encoded bytes one
``RTCRtpReceiver`` hands to its decoder. Every private aiortc name the live code needs is used in this module
and nowhere else, on one instance at a time (no process-wide patch, no module state), and ``tests/unit/test_rtc.py``
pins the behaviour relied on, so an aiortc upgrade that changes it fails there, naming this module:

- ``RTCRtpSender._RTCRtpSender__encoder``: the sender's encoder. It is None until the sender's RTP loop encodes
  its first frame, which then makes one with ``aiortc.codecs.get_encoder(codec)``; an encoder set before that
  is used instead (:func:`attach_shared_encoders`).
- ``H264Encoder._encode_frame`` / ``H264Encoder._packetize``: a frame -> its H.264 NAL units (libx264 with
  aiortc's settings), and NAL units -> RTP payloads (single NAL / STAP-A / FU-A); the SEI NAL goes in between
  (:class:`SEIH264Encoder`).
- ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` (and ``__decoder_thread``, to check it has not started):
  the queue of ``(codec, encoded frame)`` the receiver's decoder thread reads; a counting queue put there before
  the receiver starts sees every encoded frame handed to the decoder (:func:`count_decoded_bytes`).
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase

from bbmr_stream.sei import build_sei_nal

VIDEO_CLOCK = 90000  # RTP clock of video (Hz): the unit of every pts of the live code

SENDER_ENCODER = "_RTCRtpSender__encoder"
RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_THREAD = "_RTCRtpReceiver__decoder_thread"

PayloadFor = Callable[[int], "bytes | None"]  # frame pts (90 kHz) -> SEI payload of that frame, or None
ByteCounter = Callable[[int], None]  # called with a number of bytes


class AiortcChanged(RuntimeError):
    """aiortc no longer has the internals this adapter uses (an upgrade): bbmr_stream/rtc.py needs updating."""


def _aiortc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aiortc")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "unknown"


def _changed(what: str) -> AiortcChanged:
    return AiortcChanged(f"aiortc {_aiortc_version()}: {what}; the live code's adapter bbmr_stream/rtc.py needs "
                         "updating (tests/unit/test_rtc.py shows what changed)")


def with_sei(nals: list[bytes], payload: bytes) -> list[bytes]:
    """H.264 NAL units of one access unit (no start codes) with our SEI user_data_unregistered NAL carrying
    ``payload`` inserted before the first slice (type 1 or 5), or at the end when there is none."""
    sei = build_sei_nal(payload, "h264")[4:]  # without the start code: aiortc packetizes NAL units
    first_slice = next((i for i, n in enumerate(nals) if n and (n[0] & 0x1F) in (1, 5)), len(nals))
    return nals[:first_slice] + [sei] + nals[first_slice:]


class SEIH264Encoder(H264Encoder):
    """aiortc's H.264 encoder (same libx264 settings, bitrate control and keyframe requests) plus our SEI NAL in
    each access unit whose frame has a payload; ``on_encoded(n)`` gets the encoded bytes of every frame."""

    def __init__(self, payload_for: PayloadFor, on_encoded: ByteCounter | None = None) -> None:
        super().__init__()
        self.payload_for, self.on_encoded = payload_for, on_encoded

    def encode_nals(self, frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """(H.264 NAL units with our SEI, RTP timestamp on the 90 kHz clock) of one ``av.VideoFrame``; the
        frame's pts and time base are as given afterwards (PyAV rebases them in place while encoding)."""
        pts, base = frame.pts, frame.time_base
        payload = self.payload_for(pts)
        try:
            nals = list(self._encode_frame(frame, force_keyframe))
        finally:
            frame.pts, frame.time_base = pts, base
        if payload is not None and nals:
            nals = with_sei(nals, payload)
        if self.on_encoded is not None:
            self.on_encoded(sum(len(n) for n in nals))
        return nals, convert_timebase(pts, base, VIDEO_TIME_BASE)

    def encode(self, frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """(RTP payloads, RTP timestamp on the 90 kHz clock) of one ``av.VideoFrame``."""
        nals, ts = self.encode_nals(frame, force_keyframe)
        return self._packetize(nals), ts


def copy_frame(frame):
    """A private copy of an ``av.VideoFrame`` (pixels, pts, time base): what an encoder may rebase in place
    while other consumers of the original read its pts."""
    import av

    out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def is_keyframe(nals: list[bytes]) -> bool:
    """An access unit with an IDR slice (NAL type 5)."""
    return any(n and (n[0] & 0x1F) == 5 for n in nals)


@dataclass(frozen=True)
class Encoded:
    """One frame of a :class:`SharedH264Stream`: its position in the shared stream, RTP payloads, RTP timestamp
    (90 kHz) and whether it starts a GOP (IDR)."""

    index: int
    payloads: list
    timestamp: int
    keyframe: bool


class SharedH264Stream:
    """One :class:`SEIH264Encoder` for every H.264 peer of a sender: each frame (by pts) is encoded once (from a
    private copy) and its RTP payloads handed to every peer's :class:`PeerH264Encoder` (an SFU's forwarding,
    inside the sender). A
    peer starts, and after a gap (it missed a frame: its loop lagged) restarts, on a keyframe, which it asks for
    (at most one forced keyframe per ``min_keyframe_gap`` s; requests in between wait). The bitrate is the
    lowest any live peer's congestion control asked for. Thread-safe: aiortc encodes on executor threads."""

    def __init__(self, payload_for: PayloadFor, on_encoded: ByteCounter | None = None, keep: int = 8,
                 min_keyframe_gap: float = 0.5) -> None:
        self.encoder = SEIH264Encoder(payload_for, on_encoded)
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, Encoded] = OrderedDict()  # pts -> the newest ``keep`` frames
        self.keep, self.min_keyframe_gap = keep, min_keyframe_gap
        self.index, self.last_pts = -1, None
        self.keyframe_wanted, self.last_forced = False, -math.inf
        self.bitrates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # peer encoder -> bits/s
        self.frames_encoded = self.keyframes_forced = 0

    def request_keyframe(self) -> None:
        self.keyframe_wanted = True

    def set_bitrate(self, peer, bitrate: int) -> None:
        with self.lock:  # encode() reads the table on an executor thread
            self.bitrates[peer] = bitrate

    def encode(self, frame) -> Encoded | None:
        """The shared encoding of ``frame`` (encoded now if it is new); None for a frame older than the newest
        encoded one and no longer cached (a lagging peer skips it)."""
        with self.lock:
            pts = frame.pts
            if pts in self.cache:
                return self.cache[pts]
            if self.last_pts is not None and pts <= self.last_pts:
                return None
            now = time.monotonic()
            force = self.keyframe_wanted and now - self.last_forced >= self.min_keyframe_gap
            if force:
                self.keyframe_wanted, self.last_forced = False, now
                self.keyframes_forced += 1
            if self.bitrates:
                self.encoder.target_bitrate = min(self.bitrates.values())
            nals, ts = self.encoder.encode_nals(copy_frame(frame), force)  # the relayed frame is never touched
            self.index += 1
            self.frames_encoded += 1
            out = self.cache[pts] = Encoded(self.index, self.encoder._packetize(nals), ts, is_keyframe(nals))
            self.last_pts = pts
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
            return out


class PeerH264Encoder:
    """One peer's encoder on a :class:`SharedH264Stream` (set on its ``RTCRtpSender``): sends the shared
    payloads from a keyframe on, with no gap (a missed frame -> nothing until the next keyframe, which it asks
    for); aiortc's keyframe requests (PLI/FIR) and bitrate estimates go to the shared stream."""

    def __init__(self, shared: SharedH264Stream, on_first: Callable[[int], None] | None = None) -> None:
        self.shared, self.on_first = shared, on_first
        self.last: int | None = None  # index of the last frame sent; None: waiting for a keyframe
        self.skipped = 0  # frames not sent while waiting for a keyframe
        self.started = False

    @property
    def target_bitrate(self) -> int:
        return self.shared.encoder.target_bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self.shared.set_bitrate(self, bitrate)

    def encode(self, frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """(RTP payloads, RTP timestamp) for this peer; no payloads while it waits for a keyframe."""
        if force_keyframe or self.last is None:
            self.shared.request_keyframe()
        enc = self.shared.encode(frame)
        if enc is None or (self.last is not None and enc.index <= self.last):
            return [], 0
        if self.last is not None and enc.index != self.last + 1 and not enc.keyframe:
            self.last = None  # a gap: resynchronise on the next keyframe
            self.shared.request_keyframe()
        if self.last is None and not enc.keyframe:
            self.skipped += 1
            return [], enc.timestamp
        self.last = enc.index
        if not self.started:  # the first frame this peer sends: the viewer sees it as pts 0
            self.started = True
            if self.on_first is not None:
                self.on_first(frame.pts)
        return enc.payloads, enc.timestamp


def send_codecs(sdp: str) -> dict[str, str]:
    """mid -> lower-case MIME type (``video/h264``) of the codec each video section of a local answer sends
    with: the first payload type of its ``m=`` line (aiortc sends with the first negotiated codec)."""
    out: dict[str, str] = {}
    for section in re.split(r"\r?\n(?=m=)", sdp.strip()):
        lines = section.splitlines()
        if not lines or not lines[0].startswith("m=video "):
            continue
        fmts = lines[0].split()[3:]
        mid = next((ln[len("a=mid:"):].strip() for ln in lines if ln.startswith("a=mid:")), None)
        names = {}
        for ln in lines:
            if ln.startswith("a=rtpmap:"):
                pt, _, rest = ln[len("a=rtpmap:"):].partition(" ")
                names[pt] = rest.split("/")[0].lower()
        if fmts and mid is not None and fmts[0] in names:
            out[mid] = "video/" + names[fmts[0]]
    return out


def set_encoder(sender: RTCRtpSender, encoder) -> None:
    """Make ``sender`` encode with ``encoder`` (this sender only); before its RTP loop encodes a frame."""
    if not hasattr(sender, SENDER_ENCODER):
        raise _changed(f"RTCRtpSender has no attribute {SENDER_ENCODER}")
    if getattr(sender, SENDER_ENCODER) is not None:
        raise RuntimeError("this RTCRtpSender already has an encoder: set ours before it sends")
    setattr(sender, SENDER_ENCODER, encoder)


def h264_senders(pc: RTCPeerConnection) -> list[RTCRtpSender]:
    """The video senders of ``pc`` (with a track) whose negotiated codec is H.264 (after the local answer)."""
    codecs = send_codecs(pc.localDescription.sdp)
    return [t.sender for t in pc.getTransceivers()
            if t.kind == "video" and t.sender.track is not None and codecs.get(t.mid) == "video/h264"]


def attach_shared_encoders(pc: RTCPeerConnection, shared: SharedH264Stream,
                           on_first: Callable[[int], None] | None = None) -> list[RTCRtpSender]:
    """Give each H.264 video sender of ``pc`` a :class:`PeerH264Encoder` on ``shared``; call right after
    ``pc.setLocalDescription(answer)`` (before the connection starts); ``on_first(pts)`` from an encoder thread
    when it sends its first frame. Returns those senders (none with VP8: the data channel carries the maps)."""
    senders = h264_senders(pc)
    for sender in senders:
        set_encoder(sender, PeerH264Encoder(shared, on_first))
    return senders


class _CountingQueue(queue.Queue):
    """The decoder thread's input queue, counting the bytes of each encoded frame put in."""

    def __init__(self, on_bytes: ByteCounter) -> None:
        super().__init__()
        self.on_bytes = on_bytes

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:  # None: the stop sentinel
            self.on_bytes(len(item[1].data))
        super().put(item, block, timeout)


def count_decoded_bytes(receiver: RTCRtpReceiver, on_bytes: ByteCounter) -> None:
    """``on_bytes(n)`` for every encoded frame (``n`` bytes) ``receiver`` hands to its decoder (aiortc's
    inbound-rtp stats have no byte count); call before the connection starts (right after ``addTransceiver``)."""
    q = getattr(receiver, RECEIVER_QUEUE, None)
    if type(q) is not queue.Queue or not hasattr(receiver, RECEIVER_THREAD):
        raise _changed(f"RTCRtpReceiver has no queue.Queue {RECEIVER_QUEUE} or no {RECEIVER_THREAD}")
    if getattr(receiver, RECEIVER_THREAD) is not None or not q.empty():
        raise RuntimeError("this RTCRtpReceiver is already receiving: count its bytes before it starts")
    setattr(receiver, RECEIVER_QUEUE, _CountingQueue(on_bytes))
