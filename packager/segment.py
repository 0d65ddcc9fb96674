"""Segment: an encoded MPEG-TS rendition -> HLS media playlist + segments, by FFmpeg's HLS muxer with
``-c copy`` (the ffmpeg binary of imageio-ffmpeg, driven through ffmpeg-python). Segments are cut at the
IDR frames the encoder put every ``segment_s`` seconds, so each one starts with an IDR and decodes alone;
the SEI scale maps are inside the copied NAL units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SegmentFile:
    file: str
    duration_s: float
    bytes: int


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def segment_hls(ts_path: Path, out_dir: Path, name: str, segment_s: float) -> tuple[str, list[SegmentFile]]:
    """Returns the playlist file name and the segments (in order) written into ``out_dir``."""
    import ffmpeg

    playlist = f"{name}.m3u8"
    (ffmpeg.input(str(ts_path))
     .output(str(out_dir / playlist), map="0", c="copy", f="hls", hls_time=segment_s, hls_playlist_type="vod",
             hls_segment_filename=str(out_dir / f"{name}_%05d.ts"), hls_flags="independent_segments")
     .global_args("-nostdin", "-loglevel", "error")
     .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True))
    _fix_target_duration(out_dir / playlist)
    segs = []
    dur = None
    for line in (out_dir / playlist).read_text().splitlines():
        m = re.match(r"#EXTINF:([0-9.]+)", line)
        if m:
            dur = float(m.group(1))
        elif line and not line.startswith("#"):
            segs.append(SegmentFile(line, float(dur or 0.0), (out_dir / line).stat().st_size))
    return playlist, segs


def _fix_target_duration(path: Path) -> None:
    """RFC 8216 4.3.3.1: EXT-X-TARGETDURATION is an integer >= every EXTINF rounded to the nearest integer,
    and at least 1 (FFmpeg writes 0 for segments under 0.5 s)."""
    text = path.read_text()
    durs = [float(m) for m in re.findall(r"#EXTINF:([0-9.]+)", text)]
    target = max([1] + [int(d + 0.5) for d in durs])
    path.write_text(re.sub(r"#EXT-X-TARGETDURATION:\d+", f"#EXT-X-TARGETDURATION:{target}", text))


def master_playlist(renditions: list[tuple[str, float, float, int, int, str]]) -> str:
    """HLS master playlist text: (playlist, average bit/s, peak bit/s, width, height, CODECS) per rendition,
    lowest bitrate first (RFC 8216 4.3.4.2: BANDWIDTH is the peak segment bitrate)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for pl, avg, peak, w, h, codecs in sorted(renditions, key=lambda r: r[1]):
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={int(round(max(peak, avg)))},AVERAGE-BANDWIDTH={int(round(avg))},"
                     f"RESOLUTION={w}x{h},CODECS=\"{codecs}\"")
        lines.append(pl)
    return "\n".join(lines) + "\n"
