"""Encode: LR pictures -> H.264/HEVC elementary stream in MPEG-TS, one SEI scale map in every access unit.

Closed GOPs of exactly ``gop`` frames (no scene-cut keyframes) so that segments of ``gop`` frames start
with an IDR in every rendition. Pictures are RGB uint8, converted to 4:2:0 with the source's matrix and
range (written into the stream's VUI) by the exact conversion of :mod:`bbmr_stream.colour`. The SEI payload
of a picture travels with its pts: when the encoder emits a packet (B-frames reorder), the payload of that
packet's pts is inserted before its first VCL NAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from bbmr_stream.colour import AV_COLORSPACE, rgb_to_yuv420, video_frame, video_frame_from_planes
from bbmr_stream.sei import insert_sei
from bbmr_stream.x264 import with_asm

CODECS = {"h264": "libx264", "hevc": "libx265"}



def codecs_of(annexb: bytes, codec: str) -> str:
    """RFC 6381 CODECS string from the first SPS of an Annex B access unit: ``avc1.PPCCLL`` (profile_idc,
    constraint flags, level_idc); HEVC (ISO/IEC 14496-15 E.3): ``hvc1.<profile>.<compatibility flags,
    bit-reversed hex>.<L|H><level>.<constraint bytes>`` read from the SPS's profile_tier_level (Main:
    ``hvc1.1.6.L120.90``, Main10: ``hvc1.2.4.L120.90``)."""
    i = annexb.find(b"\x00\x00\x01")
    while i >= 0:
        n = i + 3
        if codec == "h264" and n + 4 <= len(annexb) and annexb[n] & 0x1F == 7:
            return "avc1." + annexb[n + 1:n + 4].hex().upper()
        if codec == "hevc" and n + 2 <= len(annexb) and (annexb[n] >> 1) & 0x3F == 33:
            rbsp = _unescape(annexb[n + 2:n + 40])
            if len(rbsp) >= 13:
                return _hvc1(rbsp[1:13])
        i = annexb.find(b"\x00\x00\x01", n)
    return "avc1.640028" if codec == "h264" else "hvc1.1.6.L120.90"


def _unescape(b: bytes) -> bytes:
    """NAL payload -> RBSP: the emulation-prevention 0x03 after two zero bytes removed."""
    return b.replace(b"\x00\x00\x03", b"\x00\x00")


def _hvc1(ptl: bytes) -> str:
    """``hvc1`` CODECS from general_profile_tier_level's first 12 bytes (profile space/tier/idc, 32 compatibility
    flags, 48 constraint bits, level_idc)."""
    space, tier, idc = ptl[0] >> 6, (ptl[0] >> 5) & 1, ptl[0] & 0x1F
    compat = int.from_bytes(ptl[1:5], "big")
    rev = int(f"{compat:032b}"[::-1], 2)
    cons = list(ptl[5:11])
    while cons and cons[-1] == 0:
        cons.pop()
    tail = "".join(f".{c:X}" for c in cons)
    return f"hvc1.{'ABC'[space - 1] if space else ''}{idc}.{rev:X}.{'HL'[tier == 0]}{ptl[11]}{tail}"


ENCODER_THREADS = 1  # x264/x265 threads per encoder: fixed, because the bitstream depends on the thread count


@dataclass(frozen=True)
class CodedPacket:
    """One coded packet as the encoder gave it (SEI inserted), before any muxer: what a segment task returns
    (:mod:`packager.tasks`). ``stream``: index among the encoder's streams; times in ``time_base``."""

    stream: int
    data: bytes
    pts: int
    dts: int
    duration: int
    time_base: Fraction
    keyframe: bool


class LREncoder:
    """One MPEG-TS file with one video stream per picture size in ``sizes`` (the atlas layout has one, the
    planes layout one per scale); the SEI rides on the first stream.

    ``path`` None: nothing is muxed, the coded packets are kept in :attr:`packets` (a segment task's encoders);
    :meth:`write` muxes such packets into a file made with the same arguments. The encoders run
    ``threads`` threads each (:data:`ENCODER_THREADS`): x264's output depends on its thread count (its default
    follows the machine's cores), so a fixed count gives the same bytes on every machine and worker."""

    def __init__(self, path: str | Path | None, sizes: list[tuple[int, int]], time_base: Fraction, fps: Fraction,
                 codec: str = "h264", crf: float = 23, preset: str = "medium", gop: int = 60,
                 matrix: str = "bt709", full_range: bool = False, bframes: int = 2, lossless: bool = False,
                 tags: tuple[int, int] = (2, 2), threads: int = ENCODER_THREADS) -> None:
        """``tags``: FFmpeg's (colour primaries, transfer) enums written into the VUI beside the matrix (2:
        unspecified)."""
        import io

        import av

        if codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}")
        self.codec, self.matrix, self.full_range, self.tags = codec, matrix, full_range, tags
        self.threads = threads
        self.packets: list[CodedPacket] | None = None if path is not None else []
        self.out = av.open(str(path) if path is not None else io.BytesIO(), "w", format="mpegts")
        self.streams = [self._add_stream(w, h, time_base, fps, crf, preset, gop, bframes, lossless)
                        for w, h in sizes]
        self.stream = self.streams[0]
        self.time_base = time_base
        self.payloads: dict[int, bytes] = {}
        self.frames = 0
        self.codecs: str | None = None  # RFC 6381 CODECS of the first stream, from its first SPS
        self.written = False  # :meth:`write` was used: packets coded elsewhere
        self.last_dts: dict[int, int] = {}  # per stream, the last dts muxed (:meth:`_put`)

    def _add_stream(self, width, height, time_base, fps, crf, preset, gop, bframes, lossless):
        codec, matrix, full_range = self.codec, self.matrix, self.full_range
        st = self.out.add_stream(CODECS[codec], rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.time_base = time_base
        st.codec_context.time_base = time_base
        if codec == "h264":
            opts = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes),
                    "preset": preset, "x264-params": "open-gop=0:scenecut=0"}
            opts.update({"qp": "0"} if lossless else {"crf": str(crf)})
        else:
            x265 = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes={bframes}:log-level=error"
            if lossless:
                x265 += ":lossless=1"
            opts = {"preset": preset, "x265-params": x265}
            if not lossless:
                opts["crf"] = str(crf)
        st.codec_context.options = with_asm(opts) if codec == "h264" else opts
        cc = st.codec_context
        cc.thread_count = self.threads
        cc.colorspace = AV_COLORSPACE[matrix]
        cc.color_range = 2 if full_range else 1
        cc.color_primaries, cc.color_trc = self.tags
        return st

    def planes(self, pictures: list[np.ndarray]) -> list[tuple]:
        """The Y, U, V planes (exact conversion, this encoder's matrix and range) of each RGB picture: rungs
        that share pictures convert them once and pass the planes to :meth:`encode`."""
        return [rgb_to_yuv420(rgb, self.matrix, self.full_range) for rgb in pictures]

    def encode(self, pictures: list, pts: int, payload: bytes | None, duration: int = 0) -> None:
        """One frame: a picture per stream (RGB uint8, or its planes from :meth:`planes`), its pts and duration
        (source time base; 0: unknown), the SEI payload. The duration travels to the packet: fragmented MP4
        takes a fragment's last sample duration from it, so a variable-rate source keeps its timestamps."""

        self.payloads[pts] = payload
        for st, pic in zip(self.streams, pictures, strict=True):
            fr = video_frame_from_planes(pic) if isinstance(pic, tuple) else video_frame(pic, self.matrix,
                                                                                         self.full_range)
            fr.pts = pts
            fr.time_base = self.time_base
            if duration:
                fr.duration = duration
            for pkt in st.encode(fr):
                self._mux(pkt, st)
        self.frames += 1

    def _mux(self, pkt, st) -> None:

        data = bytes(pkt)
        if self.codecs is None and st is self.stream:
            self.codecs = codecs_of(data, self.codec)
        if st is self.stream:
            # packet pts is in the stream time base after encode; map back to the frame's pts
            key = int(round(Fraction(pkt.pts) * Fraction(pkt.time_base) / self.time_base))
            payload = self.payloads.pop(key)
            if payload is not None:  # plain renditions carry no scale map
                data = insert_sei(data, payload, self.codec)
        coded = CodedPacket(self.streams.index(st), data, pkt.pts, pkt.dts, pkt.duration, Fraction(pkt.time_base),
                            bool(pkt.is_keyframe))
        if self.packets is not None:
            self.packets.append(coded)
        else:
            self._put(coded)

    def write(self, packets: list[CodedPacket]) -> None:
        """Mux packets coded elsewhere (an encoder with ``path`` None and the same arguments; in decode order,
        segment after segment) into this file, as if this encoder had coded them. A segment's encoder dates its
        first pictures' decoding from its own first frame durations: where the frame rate drops at a segment
        start, its first dts can fall at or before the previous segment's last, so a dts that does not advance
        is moved to just after the previous one (still at or before its pts; checked)."""
        self.written = True
        for p in packets:
            if self.codecs is None and p.stream == 0:
                self.codecs = codecs_of(p.data, self.codec)
            self._put(p)

    def _put(self, p: CodedPacket) -> None:
        """Mux one packet (a dts that does not advance moved just past the previous one: :meth:`write`)."""
        import av

        dts = p.dts
        last = self.last_dts.get(p.stream)
        if last is not None and dts is not None and dts <= last:
            dts = last + 1
            if p.pts is not None and dts > p.pts:
                raise RuntimeError(f"stream {p.stream}: no decoding time between {last} and pts {p.pts}")
        self.last_dts[p.stream] = dts
        new = av.Packet(p.data)
        new.pts, new.dts, new.time_base, new.duration = p.pts, dts, p.time_base, p.duration
        new.is_keyframe = p.keyframe
        new.stream = self.streams[p.stream]
        self.out.mux(new)

    def close(self) -> None:
        """Flush the encoders (unless this file only muxed packets coded elsewhere: :meth:`write`) and close."""
        if not self.written:
            for st in self.streams:
                for pkt in st.encode(None):
                    self._mux(pkt, st)
        self.out.close()
        if self.payloads:
            raise RuntimeError(f"{len(self.payloads)} frames got no packet from the encoder")
