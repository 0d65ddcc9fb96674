"""``python -m bench.bytes STREAM [--json rows.json]``: where a packaged stream's bytes go, per rendition.

For every rendition of a stream directory: the segment bytes as shipped, the video elementary-stream bytes of
each coded stream (H.264/HEVC packets), the bytes of our scale-map SEI NAL units inside them, and the rest
(MPEG-TS packet headers, PES headers, padding, PAT/PMT), each also as kbps over the rendition's duration
(bytes x 8 / duration, the rate convention of docs/rd.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bbmr_stream.cli import run_cli
from bbmr_stream.errors import InputError


def sei_bytes(packet: bytes, codec: str) -> int:
    """Bytes of our scale-map SEI NAL units (with a 4-byte start code each) in one Annex B packet."""
    from bbmr_stream.sei import find_bbmr_payloads, split_annexb

    return sum(e - s + 4 for s, e in split_annexb(packet)
               if find_bbmr_payloads(b"\x00\x00\x00\x01" + packet[s:e], codec))


def rendition_bytes(stream: Path, rend, codec: str) -> dict:
    import av

    shipped = es = sei = 0
    per_stream: dict[int, int] = {}
    for seg in rend.segments:
        f = stream / seg.file
        shipped += f.stat().st_size
        with av.open(str(f), format="mpegts") as c:
            for p in c.demux():
                if p.size == 0 or p.stream.type != "video":
                    continue
                b = bytes(p)
                per_stream[p.stream.index] = per_stream.get(p.stream.index, 0) + len(b)
                es += len(b)
                sei += sei_bytes(b, codec)
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
    if man.container != "mpegts":
        raise InputError(f"{a.stream}: container {man.container}, this reads MPEG-TS segments")
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
