"""SEI user_data_unregistered NAL units carrying the scale map inside H.264/HEVC access units.

PyAV cannot attach side data to frames before encoding, so the packager inserts a NAL unit into each encoded
packet (Annex B byte stream, as FFmpeg's libx264/libx265 wrappers emit it; the MP4/fMP4 muxers convert to
length-prefixed form themselves). On decode FFmpeg exports the message as frame side data of type
SEI_UNREGISTERED (16-byte UUID + payload). x264/x265 write their own unregistered SEI (encoder settings),
so messages are filtered by :data:`BBMR_UUID`.

Layout of the NAL unit (H.264 type 6; HEVC prefix SEI type 39 with a 2-byte header, layer 0, TemporalId 0):
``00 00 00 01 | header | payloadType=5 | payloadSize (ff-coded) | UUID | payload | rbsp trailing 0x80``,
with emulation prevention (``00 00 0x`` with x <= 3 becomes ``00 00 03 0x``) over everything after the header.
"""

from __future__ import annotations

import uuid

from bbmr_stream.errors import SEIError

BBMR_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "https://bbmr-stream/sei/scalemap/v1").bytes
START = b"\x00\x00\x00\x01"
CODECS = ("h264", "hevc")



def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (H.264 7.4.1 / HEVC 7.4.2)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def unescape(ebsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in ebsp:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _ff_coded(n: int) -> bytes:
    return b"\xff" * (n // 255) + bytes([n % 255])


def build_sei_nal(payload: bytes, codec: str = "h264", uid: bytes = BBMR_UUID) -> bytes:
    """Annex-B NAL unit (with start code) of one user_data_unregistered SEI message."""
    if codec not in CODECS:
        raise SEIError(f"codec must be one of {CODECS}")
    if len(uid) != 16:
        raise SEIError("UUID must be 16 bytes")
    body = uid + payload
    rbsp = bytes([5]) + _ff_coded(len(body)) + body + b"\x80"
    header = b"\x06" if codec == "h264" else bytes([39 << 1, 1])
    return START + header + escape(rbsp)


def split_annexb(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every NAL unit payload (after its start code) in an Annex-B buffer."""
    starts = []
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    out = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        while k + 1 < len(starts) and e > s and data[e - 1] == 0:  # the zero of a 4-byte start code
            e -= 1
        out.append((s, e))
    return out


def nal_type(nal: bytes, codec: str) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


def is_vcl(t: int, codec: str) -> bool:
    return 1 <= t <= 5 if codec == "h264" else t <= 31


def insert_sei(packet: bytes, payload: bytes, codec: str = "h264") -> bytes:
    """Put the SEI NAL right before the first VCL NAL unit of an Annex-B access unit."""
    data = bytes(packet)
    sei = build_sei_nal(payload, codec)
    for s, _ in split_annexb(data):
        if s < len(data) and is_vcl(nal_type(data[s:s + 1], codec), codec):
            cut = s - 3
            if cut > 0 and data[cut - 1] == 0:
                cut -= 1  # keep a 4-byte start code together
            return data[:cut] + sei + data[cut:]
    raise SEIError("packet has no VCL NAL unit (not an Annex-B video access unit?)")


def parse_sei_payloads(rbsp: bytes) -> list[tuple[int, bytes]]:
    """(payloadType, payload) of every SEI message in an SEI RBSP (emulation prevention removed)."""
    def ff_coded(i: int, what: str) -> tuple[int, int]:
        v = 0
        while i < len(rbsp) and rbsp[i] == 0xFF:
            v += 255
            i += 1
        if i >= len(rbsp):
            raise SEIError(f"truncated SEI payload {what}")
        return v + rbsp[i], i + 1

    out, i = [], 0
    while i < len(rbsp) and rbsp[i:] != b"\x80":
        pt, i = ff_coded(i, "type")
        size, i = ff_coded(i, "size")
        if i + size > len(rbsp):
            raise SEIError("SEI payload runs past the NAL unit")
        out.append((pt, rbsp[i:i + size]))
        i += size
    return out


def find_bbmr_payloads(packet: bytes, codec: str = "h264") -> list[bytes]:
    """Our payloads in an Annex-B access unit (packager-side check; players read frame side data)."""
    data = bytes(packet)
    found = []
    sei_type = 6 if codec == "h264" else 39
    hdr = 1 if codec == "h264" else 2
    for s, e in split_annexb(data):
        if s < e and nal_type(data[s:s + 1], codec) == sei_type:
            for pt, p in parse_sei_payloads(unescape(data[s + hdr:e])):
                if pt == 5 and p[:16] == BBMR_UUID:
                    found.append(p[16:])
    return found


def payload_from_side_data(raw: bytes) -> bytes | None:
    """Our payload from an SEI_UNREGISTERED side-data buffer (UUID + payload), or None if not ours."""
    raw = bytes(raw)
    return raw[16:] if raw[:16] == BBMR_UUID else None
