import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbmr_stream.errors import ScaleMapError
from bbmr_stream.scalemap import MAGIC, ScaleMap

SETS = [(2, 4, 8), (1, 2, 4, 8, 16), (4,), (2, 4), (1, 2, 4, 8, 16, 32, 64, 128)]


@st.composite
def scalemaps(draw):
    ss = draw(st.sampled_from(SETS))
    gh, gw = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    idx = draw(st.lists(st.integers(0, len(ss) - 1), min_size=gh * gw, max_size=gh * gw))
    scales = np.array(ss, dtype=np.uint8)[np.array(idx)].reshape(gh, gw)
    return ScaleMap(scales, ss, draw(st.integers(0, 2**32 - 1)), 128)


@given(scalemaps())
def test_round_trip(m):
    b = m.to_bytes()
    assert ScaleMap.from_bytes(b) == m
    bits = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 8: 3}[len(m.scale_set)]
    assert len(b) == 17 + len(m.scale_set) + (m.grid_h * m.grid_w * bits + 7) // 8 + 4


def test_size_for_4k():
    m = ScaleMap(np.full((17, 30), 4, np.uint8))
    assert len(m.to_bytes()) == 17 + 3 + 128 + 4  # 2 bits a block


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    try:
        m = ScaleMap.from_bytes(data)
    except ScaleMapError:
        return
    assert ScaleMap.from_bytes(m.to_bytes()) == m


@given(scalemaps(), st.data())
def test_any_bit_flip_detected(m, data):
    b = bytearray(m.to_bytes())
    bit = data.draw(st.integers(0, len(b) * 8 - 1))
    b[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ScaleMapError):
        ScaleMap.from_bytes(bytes(b))


@given(scalemaps(), st.data())
def test_truncation_and_extension_detected(m, data):
    b = m.to_bytes()
    cut = data.draw(st.integers(0, len(b) - 1))
    with pytest.raises(ScaleMapError):
        ScaleMap.from_bytes(b[:cut])
    with pytest.raises(ScaleMapError):
        ScaleMap.from_bytes(b + data.draw(st.binary(min_size=1, max_size=8)))


def _forge(head: bytes, scales: bytes, payload: bytes) -> bytes:
    body = head + scales + payload
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("head,scales,payload,msg", [
    (struct.pack(">4sBBIHHHB", b"XXXX", 1, 0, 0, 128, 1, 1, 3), bytes([2, 4, 8]), b"\x00", "magic"),
    (struct.pack(">4sBBIHHHB", MAGIC, 9, 0, 0, 128, 1, 1, 3), bytes([2, 4, 8]), b"\x00", "version"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 128, 1, 1, 3), bytes([4, 2, 8]), b"\x00", "increasing"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 100, 1, 1, 3), bytes([2, 4, 8]), b"\x00", "divisible"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 128, 1, 1, 3), bytes([2, 4, 8]), b"\xc0", "outside"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 128, 1, 1, 3), bytes([2, 4, 8]), b"\x01", "padding"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 128, 0, 1, 3), bytes([2, 4, 8]), b"", "empty"),
    (struct.pack(">4sBBIHHHB", MAGIC, 1, 0, 0, 128, 1, 1, 0), b"", b"", "scale count"),
])
def test_semantic_errors(head, scales, payload, msg):
    with pytest.raises(ScaleMapError, match=msg):
        ScaleMap.from_bytes(_forge(head, scales, payload))


def test_constructor_validates():
    with pytest.raises(ScaleMapError):
        ScaleMap(np.array([[3]]), (2, 4, 8))
    with pytest.raises(ScaleMapError):
        ScaleMap(np.zeros((0, 3)), (2, 4, 8))
    with pytest.raises(ScaleMapError):
        ScaleMap.from_bytes("not bytes")
