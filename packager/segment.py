"""Segment: an encoded MPEG-TS rendition -> HLS media playlist + segments, by FFmpeg's HLS muxer with
``-c copy`` (the ffmpeg binary of imageio-ffmpeg, driven through ffmpeg-python). Segments are cut at the
IDR frames the encoder put every ``segment_s`` seconds, so each one starts with an IDR and decodes alone;
the SEI scale maps are inside the copied NAL units.

Two segment formats (RFC 8216 3.3, 3.4): ``fmp4``, fragmented MP4 (one moof + mdat per segment, the tracks'
codec configuration once in an init segment named by EXT-X-MAP: a few bytes of overhead per frame), and
``mpegts`` (188-byte packets, a PES header per frame: about 1.5 packets per frame at low rates, i.e. tens of
kbps at 30 fps).
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


@dataclass
class Segmented:
    playlist: str  # the media playlist's file name
    segments: list[SegmentFile]  # in order
    init: SegmentFile | None  # fmp4: the initialization segment (duration 0)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def segment_hls(ts_path: Path, out_dir: Path, name: str, segment_s: float, container: str = "fmp4") -> Segmented:
    """The media playlist, its segments and (fmp4) init segment, written into ``out_dir``."""
    import ffmpeg

    playlist = f"{name}.m3u8"
    opts = dict(map="0", c="copy", f="hls", hls_time=segment_s, hls_playlist_type="vod",
                hls_flags="independent_segments")
    if container == "fmp4":
        opts |= dict(hls_segment_type="fmp4", hls_fmp4_init_filename=f"{name}_init.mp4",
                     hls_segment_filename=str(out_dir / f"{name}_%05d.m4s"))
    else:
        opts |= dict(hls_segment_filename=str(out_dir / f"{name}_%05d.ts"))
    (ffmpeg.input(str(ts_path))
     .output(str(out_dir / playlist), **opts)
     .global_args("-nostdin", "-loglevel", "error")
     .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True))
    _fix_target_duration(out_dir / playlist)
    segs, init = [], None
    dur = None
    for line in (out_dir / playlist).read_text().splitlines():
        m = re.match(r"#EXTINF:([0-9.]+)", line)
        mi = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
        if m:
            dur = float(m.group(1))
        elif mi:
            init = SegmentFile(mi.group(1), 0.0, (out_dir / mi.group(1)).stat().st_size)
        elif line and not line.startswith("#"):
            segs.append(SegmentFile(line, float(dur or 0.0), (out_dir / line).stat().st_size))
    if (init is None) != (container == "mpegts"):
        raise RuntimeError(f"{playlist}: FFmpeg's HLS muxer wrote {'an' if init else 'no'} init segment for "
                           f"{container}")
    return Segmented(playlist, segs, init)


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
