"""bbmr_stream/rtc.py, the live code's one adapter to aiortc's internals: the private names it uses are still
there and still behave as it relies on (a sender uses an encoder set before it sends; a receiver's decoder
thread reads the queue set before it starts), and the hooks are per instance: two senders in one process never
see each other's maps. An aiortc upgrade that breaks this fails here."""

import asyncio
import fractions
import queue

import numpy as np
import pytest

from bbmr_stream import rtc

pytestmark = pytest.mark.unit  # the adapter module on tiny frames (two in-process peer connections)

MSG = "aiortc changed: bbmr_stream/rtc.py needs updating"


def _frames_track(n: int, size=(96, 64)):
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class Frames(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.i = 0

        async def recv(self):
            if self.i >= n:
                self.stop()
                raise MediaStreamError
            await asyncio.sleep(1 / 30)
            rgb = np.full((size[1], size[0], 3), (self.i * 23) % 256, np.uint8)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = self.i * 3000, fractions.Fraction(1, rtc.VIDEO_CLOCK)
            self.i += 1
            return f

    return Frames()


async def _loopback(n: int, payload_for, codec: str = "video/h264", timeout: float = 30.0) -> dict:
    """A sender and a receiver RTCPeerConnection in this process, SDP handed over directly: ``n`` frames sent
    with the adapter's shared SEI encoder; returns what the adapter attached, counted and what was received."""
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import MediaStreamError

    from bbmr_stream.sei import payload_from_side_data

    out = {"encoded": 0, "decoded": 0, "frames": []}
    tx, rx = RTCPeerConnection(), RTCPeerConnection()
    tr = rx.addTransceiver("video", direction="recvonly")
    rtc.count_decoded_bytes(tr.receiver, lambda k: out.__setitem__("decoded", out["decoded"] + k))
    caps = RTCRtpSender.getCapabilities("video").codecs
    tr.setCodecPreferences([c for c in caps if c.mimeType.lower() == codec])
    enough = asyncio.Event()

    async def read(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            sei = [payload_from_side_data(bytes(sd)) for sd in frame.side_data if sd.type.name == "SEI_UNREGISTERED"]
            out["frames"].append((int(frame.pts), next((p for p in sei if p is not None), None)))
            if len(out["frames"]) >= n - 2:
                enough.set()

    tasks = []
    rx.on("track", lambda track: tasks.append(asyncio.ensure_future(read(track))))
    try:
        await rx.setLocalDescription(await rx.createOffer())
        await tx.setRemoteDescription(rx.localDescription)
        tx.addTrack(_frames_track(n))
        await tx.setLocalDescription(await tx.createAnswer())
        shared = rtc.SharedH264Stream(payload_for, lambda k: out.__setitem__("encoded", out["encoded"] + k))
        out["attached"] = len(rtc.attach_shared_encoders(tx, shared))
        await rx.setRemoteDescription(tx.localDescription)
        await asyncio.wait_for(enough.wait(), timeout)
    finally:
        await tx.close()
        await rx.close()
        for t in tasks:
            t.cancel()
    return out


def test_private_names_the_adapter_uses_are_there():
    from aiortc import RTCPeerConnection
    from aiortc.codecs.h264 import H264Encoder

    async def go():
        pc = RTCPeerConnection()
        try:
            t = pc.addTransceiver("video", direction="sendrecv")
            assert getattr(t.sender, rtc.SENDER_ENCODER, "missing") is None, MSG
            assert type(getattr(t.receiver, rtc.RECEIVER_QUEUE, None)) is queue.Queue, MSG
            assert getattr(t.receiver, rtc.RECEIVER_THREAD, "missing") is None, MSG
        finally:
            await pc.close()

    asyncio.run(go())
    assert callable(getattr(H264Encoder, "_encode_frame", None)), MSG
    assert callable(getattr(H264Encoder, "_packetize", None)), MSG


def test_changed_internals_fail_with_a_clear_message():
    class Bare:
        pass

    with pytest.raises(rtc.AiortcChanged, match="bbmr_stream/rtc.py"):
        rtc.set_encoder(Bare(), object())
    with pytest.raises(rtc.AiortcChanged, match="bbmr_stream/rtc.py"):
        rtc.count_decoded_bytes(Bare(), lambda n: None)


def test_sender_encodes_with_the_attached_encoder_and_the_receiver_counts_its_bytes():
    """The pin of the behaviour: each H.264 access unit carries its own frame's SEI payload end to end (aiortc's
    sender used our encoder), and the receiver's counting queue saw every encoded frame it decoded."""
    r = asyncio.run(_loopback(12, lambda pts: b"pts=%d" % pts))
    assert r["attached"] == 1
    got = [(pts, p) for pts, p in r["frames"] if p is not None]
    assert len(got) == len(r["frames"]) >= 10, r["frames"]
    assert all(p == b"pts=%d" % pts for pts, p in got), got  # first frame's pts is 0 on both sides
    assert r["encoded"] > 0 and r["decoded"] > 0
    assert 0.9 * r["encoded"] <= r["decoded"] <= 1.2 * r["encoded"], r  # Annex B start codes on the receiving side


def test_vp8_gets_no_sei_encoder_and_still_counts_bytes():
    r = asyncio.run(_loopback(8, lambda pts: b"never", codec="video/vp8"))
    assert r["attached"] == 0 and r["encoded"] == 0
    assert all(p is None for _, p in r["frames"]) and r["decoded"] > 0


def test_two_senders_in_one_process_use_their_own_maps():
    async def both():
        return await asyncio.gather(_loopback(10, lambda pts: b"one %d" % pts),
                                    _loopback(10, lambda pts: b"two %d" % pts))

    one, two = asyncio.run(both())
    for r, tag in ((one, b"one"), (two, b"two")):
        got = [(pts, p) for pts, p in r["frames"] if p is not None]
        assert got and all(p == tag + b" %d" % pts for pts, p in got), (tag, r["frames"])
    assert one["encoded"] > 0 and two["encoded"] > 0


def test_send_codecs_reads_the_first_payload_type_of_each_video_section():
    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 99 97 98\r\na=mid:0\r\na=rtpmap:97 VP8/90000\r\n"
           "a=rtpmap:99 H264/90000\r\na=rtpmap:98 rtx/90000\r\n"
           "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\na=rtpmap:97 VP8/90000\r\n")
    assert rtc.send_codecs(sdp) == {"0": "video/h264", "2": "video/vp8"}


def test_sei_goes_before_the_first_slice():
    from bbmr_stream.sei import build_sei_nal

    sps, pps, idr, slice_ = b"\x67a", b"\x68b", b"\x65c", b"\x41d"
    sei = build_sei_nal(b"map", "h264")[4:]
    assert rtc.with_sei([sps, pps, idr], b"map") == [sps, pps, sei, idr]
    assert rtc.with_sei([slice_], b"map") == [sei, slice_]
    assert rtc.with_sei([sps], b"map") == [sps, sei]


def _frame(i: int, size=(96, 64)):
    """(frame i of a moving gradient as an ``av.VideoFrame`` on the 90 kHz clock, its RGB)."""
    import av

    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([(x * 2 + i * 9) % 256, (y * 3) % 256, np.full_like(x, (i * 37) % 256)], -1).astype(np.uint8)
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    f.pts, f.time_base = i * 3000, fractions.Fraction(1, rtc.VIDEO_CLOCK)
    return f, rgb


def _decode_errors(sent: list[tuple[list[bytes], np.ndarray]]) -> list[float]:
    """Mean absolute RGB error of each frame decoded from a peer's RTP payloads (depacketized as aiortc's
    receiver does) against the frame it came from: a P-frame decoded without its reference is far off."""
    import av
    from aiortc.codecs.h264 import H264PayloadDescriptor

    dec = av.CodecContext.create("h264", "r")
    out = []
    for payloads, _ in sent:
        au = b"".join(H264PayloadDescriptor.parse(p)[1] for p in payloads)
        out += [f.to_ndarray(format="rgb24") for f in dec.decode(av.Packet(au))]
    out += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
    assert len(out) == len(sent)
    return [float(np.abs(o.astype(int) - rgb.astype(int)).mean()) for o, (_, rgb) in zip(out, sent)]


def test_shared_stream_encodes_each_frame_once_and_peers_start_on_a_keyframe():
    """Two peers on one SharedH264Stream: each frame encoded once; the late peer's first payloads are a keyframe
    it asked for; a peer that missed a frame sends nothing until the next keyframe; both streams decode."""
    maps = {}
    shared = rtc.SharedH264Stream(lambda pts: maps.get(pts), min_keyframe_gap=0.0)
    a, b = rtc.PeerH264Encoder(shared), rtc.PeerH264Encoder(shared)
    sent = {"a": [], "b": []}
    for i in range(20):
        f, rgb = _frame(i)
        maps[f.pts] = b"map %d" % i
        if i != 12:  # peer a misses frame 12 (its loop lagged)
            p, ts = a.encode(f)
            assert ts == f.pts or not p  # the 90 kHz clock, and the relayed frame's pts untouched
            if p:
                sent["a"].append((p, rgb))
        if i >= 5:
            p, _ = b.encode(f)
            if p:
                sent["b"].append((p, rgb))
    assert shared.frames_encoded == 20  # once per frame, not per peer
    assert shared.keyframes_forced >= 3  # a's start, b's join, a's gap
    assert len(sent["b"]) == 14  # b waited one frame (5 was already encoded) for the keyframe of frame 6
    assert len(sent["a"]) == 18  # a: frames 0-11 and 14-19 (frame 13 was a P-frame after its gap)
    assert a.skipped == 1 and b.skipped == 1
    for peer in "ab":
        assert max(_decode_errors(sent[peer])) < 4.0, peer  # every frame it sent decodes right


def test_shared_stream_bitrate_is_the_lowest_peer_request():
    shared = rtc.SharedH264Stream(lambda pts: None)
    a, b = rtc.PeerH264Encoder(shared), rtc.PeerH264Encoder(shared)
    a.target_bitrate, b.target_bitrate = 1_500_000, 700_000
    a.encode(_frame(0)[0])
    assert shared.encoder.target_bitrate == 700_000 == a.target_bitrate
    del b
    import gc

    gc.collect()
    shared.encode(_frame(1)[0])
    assert shared.encoder.target_bitrate == 1_500_000  # a peer that is gone no longer holds the rate down
