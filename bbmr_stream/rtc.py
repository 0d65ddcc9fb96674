"""The one adapter between the live code (``packager/live_send.py``, ``player/live_*.py``) and aiortc's internals.

aiortc has no public way to choose the encoder of one ``RTCRtpSender`` or to count the encoded bytes one
``RTCRtpReceiver`` hands to its decoder. Every private aiortc name the live code needs is used in this module
and nowhere else, on one instance at a time (no process-wide patch, no module state), and ``tests/unit/test_rtc.py``
pins the behaviour relied on, so an aiortc upgrade that changes it fails there, naming this module:

- ``RTCRtpSender._RTCRtpSender__encoder``: the sender's encoder. It is None until the sender's RTP loop encodes
  its first frame, which then makes one with ``aiortc.codecs.get_encoder(codec)``; an encoder set before that
  is used instead (:func:`attach_sei_encoders`).
- ``H264Encoder._encode_frame`` / ``H264Encoder._packetize``: a frame -> its H.264 NAL units (libx264 with
  aiortc's settings), and NAL units -> RTP payloads (single NAL / STAP-A / FU-A); the SEI NAL goes in between
  (:class:`SEIH264Encoder`).
- ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` (and ``__decoder_thread``, to check it has not started):
  the queue of ``(codec, encoded frame)`` the receiver's decoder thread reads; a counting queue put there before
  the receiver starts sees every encoded frame handed to the decoder (:func:`count_decoded_bytes`).
"""

from __future__ import annotations

import queue
import re
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

    def encode(self, frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """(RTP payloads, RTP timestamp on the 90 kHz clock) of one ``av.VideoFrame``."""
        payload = self.payload_for(frame.pts)  # before encoding: PyAV rebases frame.pts to the codec's time base
        nals = list(self._encode_frame(frame, force_keyframe))
        if payload is not None and nals:
            nals = with_sei(nals, payload)
        if self.on_encoded is not None:
            self.on_encoded(sum(len(n) for n in nals))
        return self._packetize(nals), convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)


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


def attach_sei_encoders(pc: RTCPeerConnection, payload_for: PayloadFor,
                        on_encoded: ByteCounter | None = None) -> int:
    """Give each video sender of ``pc`` that sends H.264 its own :class:`SEIH264Encoder` reading
    ``payload_for``; call right after ``pc.setLocalDescription(answer)`` (before the connection starts).
    Returns the number of senders that got one (0 with VP8: the data channel carries the maps)."""
    codecs = send_codecs(pc.localDescription.sdp)
    n = 0
    for t in pc.getTransceivers():
        if t.kind == "video" and t.sender.track is not None and codecs.get(t.mid) == "video/h264":
            set_encoder(t.sender, SEIH264Encoder(payload_for, on_encoded))
            n += 1
    return n


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
