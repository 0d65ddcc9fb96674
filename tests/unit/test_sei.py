import io

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.sei import (
    BBMR_UUID,
    build_sei_nal,
    escape,
    find_bbmr_payloads,
    insert_sei,
    payload_from_side_data,
    unescape,
)


@given(st.binary(max_size=400))
def test_escape_round_trip_and_no_start_codes(b):
    e = escape(b)
    assert unescape(e) == b
    for i in range(len(e) - 2):
        assert not (e[i] == 0 and e[i + 1] == 0 and e[i + 2] <= 2)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@given(payload=st.binary(max_size=600))
def test_nal_round_trip(codec, payload):
    au = build_sei_nal(b"x", codec, uid=bytes(range(16)))  # an SEI with another UUID (like x264's)
    vcl = b"\x00\x00\x00\x01" + (b"\x65\x88" if codec == "h264" else b"\x26\x01\xaf")
    pkt = insert_sei(vcl, payload, codec)
    assert find_bbmr_payloads(pkt, codec) == [payload]
    assert find_bbmr_payloads(au + vcl, codec) == []  # other UUIDs are not ours


def _map(i: int) -> ScaleMap:
    # frame index 0x00000001 etc. and all-x2 rows give 00 00 0x runs in the payload: emulation prevention
    s = np.full((4, 6), 2, np.uint8)
    s[i % 4, :] = (4, 8, 8, 4, 2, 8)
    return ScaleMap(s, (2, 4, 8), i)


@pytest.mark.parametrize("codec,fmt", [("libx264", "mp4"), ("libx264", "mpegts"), ("libx265", "mp4")])
def test_sei_survives_encode_mux_decode(codec, fmt):
    n = 12
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        st_ = out.add_stream(codec, rate=25)
        st_.width, st_.height, st_.pix_fmt = 96, 64, "yuv420p"
        st_.codec_context.options = ({"bf": "2", "g": "6"} if codec == "libx264"
                                     else {"x265-params": "bframes=2:keyint=6:log-level=error"})
        rng = np.random.default_rng(0)
        maps = {}
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            fr.pts = i
            for pkt in st_.encode(fr):
                _mux(out, pkt, maps, codec)
        for pkt in st_.encode(None):
            _mux(out, pkt, maps, codec)
    assert any(b"\x00\x00\x03" in build_sei_nal(_map(i).to_bytes())[4:] for i in range(n))
    buf.seek(0)
    got = []  # frames come out in presentation order (MPEG-TS offsets its timestamps, so no pts arithmetic)
    with av.open(buf) as inp:
        for fr in inp.decode(video=0):
            ours = [payload_from_side_data(bytes(sd)) for sd in fr.side_data if sd.type.name == "SEI_UNREGISTERED"]
            ours = [p for p in ours if p is not None]
            assert len(ours) == 1
            got.append(ScaleMap.from_bytes(ours[0]))
    assert got == [_map(i) for i in range(n)]


def _mux(out, pkt, maps, codec):
    # the packet's frame index from its pts (stream time base 1/25 for mp4 may be rescaled: use pts * tb)
    i = int(round(float(pkt.pts * pkt.time_base) * 25))
    data = insert_sei(bytes(pkt), _map(i).to_bytes(), "h264" if codec == "libx264" else "hevc")
    new = av.Packet(data)
    new.pts, new.dts, new.time_base = pkt.pts, pkt.dts, pkt.time_base
    new.is_keyframe = pkt.is_keyframe
    new.stream = pkt.stream
    out.mux(new)


def test_uuid_is_ours():
    assert len(BBMR_UUID) == 16
    assert payload_from_side_data(b"\x00" * 16 + b"x") is None


def _segment_with_maps_on(path, frames_with_map: set[int], n: int = 8) -> None:
    """An MPEG-TS segment (x264 with B-frames) whose frames in ``frames_with_map`` carry our SEI (_map(i))."""
    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.options = {"bf": "2", "g": str(n)}
        rng = np.random.default_rng(1)

        def mux(pkt):
            i = int(round(float(pkt.pts * pkt.time_base) * 25))
            data = insert_sei(bytes(pkt), _map(i).to_bytes(), "h264") if i in frames_with_map else bytes(pkt)
            new = av.Packet(data)
            new.pts, new.dts, new.time_base, new.is_keyframe, new.stream = pkt.pts, pkt.dts, pkt.time_base, \
                pkt.is_keyframe, pkt.stream
            out.mux(new)

        for i in range(n):
            fr = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            fr.pts = i
            for pkt in s.encode(fr):
                mux(pkt)
        for pkt in s.encode(None):
            mux(pkt)


def test_map_rule_frames_without_sei_have_the_previous_frames_map(tmp_path):
    """docs/formats.md map rule, as bbmr_stream.demux.segment_frames reads it: a frame without our SEI has the
    previous frame's map; before the segment's first map, no map is known (None)."""
    from bbmr_stream.demux import segment_frames

    p = tmp_path / "a.ts"
    _segment_with_maps_on(p, {0, 3, 6})
    assert [m.frame_index for _, m in segment_frames(p, 1)] == [0, 0, 0, 3, 3, 3, 6, 6]
    q = tmp_path / "b.ts"
    _segment_with_maps_on(q, {2, 5})  # the first frame's map lost
    got = [m for _, m in segment_frames(q, 1)]
    assert got[:2] == [None, None] and [m.frame_index for m in got[2:]] == [2, 2, 2, 5, 5, 5]
