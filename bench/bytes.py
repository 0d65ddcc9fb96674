"""``python -m bench.bytes STREAM [--json rows.json]``: where a packaged stream's bytes go, per rendition.

For every rendition of a stream directory: the segment bytes as shipped (fMP4: with the init segment), the
video elementary-stream bytes of each coded stream (H.264/HEVC packets: Annex B in MPEG-TS, 4-byte length
prefixes in fMP4, the same size), the bytes of our scale-map SEI NAL units inside them, and the rest (the
container: MPEG-TS packet headers, PES headers, padding, PAT/PMT; or fMP4 moof/mdat headers and the init
segment), each also as kbps over the rendition's duration (bytes x 8 / duration, the rate convention of
docs/rd.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bbmr_stream.cli import run_cli


def sei_bytes(packet: bytes, codec: str) -> int:
    """Bytes of our scale-map SEI NAL units (with a 4-byte start code each) in one Annex B packet."""
    from bbmr_stream.sei import find_bbmr_payloads, split_annexb

    return sum(e - s + 4 for s, e in split_annexb(packet)
               if find_bbmr_payloads(b"\x00\x00\x00\x01" + packet[s:e], codec))


def sei_bytes_avcc(packet: bytes, codec: str) -> int:
    """:func:`sei_bytes` of one packet of 4-byte length-prefixed NAL units (MP4)."""
    from bbmr_stream.sei import find_bbmr_payloads

    n, i = 0, 0
    while i + 4 <= len(packet):
        size = int.from_bytes(packet[i:i + 4], "big")
        nal = packet[i + 4:i + 4 + size]
        if find_bbmr_payloads(b"\x00\x00\x00\x01" + nal, codec):
            n += size + 4
        i += 4 + size
    return n


def _open(stream: Path, rend, seg):
    import av

    from bbmr_stream.demux import Chained

    if rend.init is None:
        return av.open(str(stream / seg.file), format="mpegts")
    return av.open(Chained(stream / rend.init.file, stream / seg.file), format="mp4")


def rendition_bytes(stream: Path, rend, codec: str) -> dict:
    shipped = (stream / rend.init.file).stat().st_size if rend.init is not None else 0
    es = sei = 0
    count = sei_bytes if rend.init is None else sei_bytes_avcc
    per_stream: dict[int, int] = {}
    for seg in rend.segments:
        shipped += (stream / seg.file).stat().st_size
        with _open(stream, rend, seg) as c:
            for p in c.demux():
                if p.size == 0 or p.stream.type != "video":
                    continue
                b = bytes(p)
                per_stream[p.stream.index] = per_stream.get(p.stream.index, 0) + len(b)
                es += len(b)
                sei += count(b, codec)
    dur = sum(s.duration_s for s in rend.segments)
    kbps = lambda n: round(n * 8 / dur / 1000, 1)  # noqa: E731
    return {"rendition": rend.name, "family": rend.kind, "pictures": rend.pictures, "shipped_bytes": shipped,
            "video_bytes_per_stream": [per_stream[k] for k in sorted(per_stream)], "sei_bytes": sei,
            "container_bytes": shipped - es, "kbps": {"shipped": kbps(shipped), "video_without_sei": kbps(es - sei),
                                                      "sei": kbps(sei), "container": kbps(shipped - es)}}


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with a one-line message on bad input."""
    return run_cli("python -m bench.bytes", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bytes", description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", help="stream directory (manifest.json)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    from bench.common import emit
    from packager.study import load_stream

    man = load_stream(a.stream)
    rows = [rendition_bytes(Path(a.stream), r, r.codec) for r in man.renditions]
    print("| rendition | pictures | shipped kbps | video (no SEI) | map SEI | container |\n|---|---|---|---|---|---|")
    for r in rows:
        k = r["kbps"]
        print(f"| {r['rendition']} | {r['pictures']} | {k['shipped']} | {k['video_without_sei']} | {k['sei']} | "
              f"{k['container']} |")
    if a.json:
        emit(rows, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
