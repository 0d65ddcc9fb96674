"""Segment: an encoded MPEG-TS rendition -> HLS media playlist + segments, by FFmpeg's HLS muxer with
``-c copy`` (the ffmpeg binary of imageio-ffmpeg, driven through ffmpeg-python). Segments are cut at the
IDR frames the encoder put every ``segment_s`` seconds, so each one starts with an IDR and decodes alone;
the SEI scale maps are inside the copied NAL units.

Two segment formats (RFC 8216 3.3, 3.4): ``fmp4``, fragmented MP4 (one moof + mdat per segment, the tracks'
codec configuration once in an init segment named by EXT-X-MAP: a few bytes of overhead per frame), and
``mpegts`` (188-byte packets, a PES header per frame: about 1.5 packets per frame at low rates, i.e. tens of
kbps at 30 fps).

Write errors: FFmpeg's HLS muxer does not report them (FFmpeg 9.0: on a full disk it exits 0 with truncated
segments and an empty playlist), so the playlist must end with EXT-X-ENDLIST and every file it names must be
whole (:func:`check_written`); an incomplete one on a (nearly) full filesystem is ENOSPC. The errors FFmpeg
does report (the audio pass-through) are turned into the ``OSError`` they were (:func:`run_ffmpeg`).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bbmr_stream.errors import DISK_FULL

TS_PACKET = 188
GOP_CUT_S = 0.001  # hls_time: below any frame duration, so every keyframe starts a segment
NEARLY_FULL = 1 << 20  # bytes free under which an incomplete file FFmpeg wrote is taken for ENOSPC


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


def run_ffmpeg(node, where: Path) -> None:
    """Run an ffmpeg-python graph writing ``where`` (no stdin, errors only). A write error FFmpeg reports (no
    space, quota, file size: :data:`~bbmr_stream.errors.DISK_FULL`) is raised as that ``OSError``; any other
    failure as ``ffmpeg.Error``."""
    import ffmpeg

    try:
        node.global_args("-nostdin", "-loglevel", "error").run(cmd=ffmpeg_exe(), capture_stdout=True,
                                                              capture_stderr=True)
    except ffmpeg.Error as e:
        raise_disk_full((e.stderr or b"").decode(errors="replace"), where)
        raise


def run_ffmpeg_args(args: list[str], where: Path) -> str:
    """Run the FFmpeg binary with ``args`` (after ``-nostdin -loglevel error``) writing ``where``: "" when it
    succeeds, else its last error line; a write error it reports is raised as the ``OSError`` it was
    (:func:`raise_disk_full`)."""
    import subprocess

    r = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", *args], capture_output=True)
    if not r.returncode:
        return ""
    said = r.stderr.decode(errors="replace")
    raise_disk_full(said, where)
    return (said.strip().splitlines() or [f"exit code {r.returncode}"])[-1]


def raise_disk_full(said: str, where: Path) -> None:
    """Raise the ``OSError`` of a write error (no space, quota, file size: :data:`~bbmr_stream.errors.DISK_FULL`)
    FFmpeg reported in ``said`` (its stderr), if any."""
    for code in DISK_FULL:
        if os.strerror(code) in said:
            raise OSError(code, os.strerror(code), str(where)) from None


def segment_hls(ts_path: Path, out_dir: Path, name: str, segment_s: float, container: str = "fmp4") -> Segmented:
    """The media playlist, its segments and (fmp4) init segment, written into ``out_dir``: one segment per closed
    GOP; OSError (ENOSPC) when the filesystem filled up (:func:`check_written`)."""
    playlist = f"{name}.m3u8"
    # a segment per IDR (every closed GOP): FFmpeg cuts at the first keyframe past hls_time * segment number,
    # which for a variable-rate source would merge short GOPs; the packager's GOPs are segment_s long on average
    opts = {"hls_time": f"{min(segment_s, GOP_CUT_S)}", "hls_playlist_type": "vod", "hls_flags": "independent_segments"}
    if container == "fmp4":
        opts |= {"hls_segment_type": "fmp4", "hls_fmp4_init_filename": f"{name}_init.mp4",
                 "hls_segment_filename": str(out_dir / f"{name}_%05d.m4s")}
    else:
        opts["hls_segment_filename"] = str(out_dir / f"{name}_%05d.ts")
    remux_hls(ts_path, out_dir / playlist, opts)
    check_written(out_dir / playlist)
    fix_target_duration(out_dir / playlist)
    init, segs = read_playlist(out_dir / playlist)
    if (init is None) != (container == "mpegts"):
        raise RuntimeError(f"{playlist}: FFmpeg's HLS muxer wrote {'an' if init else 'no'} init segment for "
                           f"{container}")
    return Segmented(playlist, segs, init)


def gop_segments(cut: Segmented, n_frames: int, gop: int, name: str) -> list:
    """The manifest's segments of a rendition cut by :func:`segment_hls` (one per closed GOP of ``gop`` frames,
    the last one shorter), checked against the GOP count."""
    from bbmr_stream.manifest import Segment

    if len(cut.segments) != -(-n_frames // gop):
        raise RuntimeError(f"{name}: FFmpeg's HLS muxer cut {len(cut.segments)} segments from {-(-n_frames // gop)} "
                           f"GOPs")
    return [Segment(s.file, s.duration_s, s.bytes, i * gop, min(gop, n_frames - i * gop))
            for i, s in enumerate(cut.segments)]


def read_playlist(playlist: Path) -> tuple[SegmentFile | None, list[SegmentFile]]:
    """The init segment (EXT-X-MAP, or None) and the media segments (EXTINF seconds) of a VOD media playlist,
    with their sizes on disk (beside the playlist)."""
    segs, init, dur = [], None, None
    for line in playlist.read_text().splitlines():
        if m := re.match(r"#EXTINF:([0-9.]+)", line):
            dur = float(m.group(1))
        elif m := re.match(r'#EXT-X-MAP:URI="([^"]+)"', line):
            init = SegmentFile(m.group(1), 0.0, (playlist.parent / m.group(1)).stat().st_size)
        elif line and not line.startswith("#"):
            segs.append(SegmentFile(line, float(dur or 0.0), (playlist.parent / line).stat().st_size))
    return init, segs


def remux_hls(ts_path: Path, playlist: Path, options: dict) -> None:
    """Copy the video streams of an MPEG-TS file into FFmpeg's HLS muxer (PyAV), each packet with its frame's
    presentation duration (the next frame's pts less its own; the last frame: the one before it's). MPEG-TS
    carries no durations and FFmpeg would guess them from the average frame rate: fragmented MP4 starts each
    fragment where the previous one ends by those durations, which moves a variable-rate source's keyframes.
    HEVC is tagged ``hvc1`` (the sample entry HLS clients expect: CODECS hvc1.*). A write error is the OSError
    it was (av.error.OSError)."""
    import av

    with av.open(str(ts_path), format="mpegts") as c:
        order = {s.index: sorted(p.pts for p in c.demux(s) if p.size and p.pts is not None) for s in c.streams.video}
    dur = {}
    for k, pts in order.items():
        last = pts[-1] - pts[-2] if len(pts) > 1 else 0
        dur[k] = dict(zip(pts, [b - a for a, b in zip(pts, pts[1:])] + [last]))
    with av.open(str(ts_path), format="mpegts") as c, \
            av.open(str(playlist), "w", format="hls", options=options) as out:
        streams = {}
        for s in c.streams.video:
            o = out.add_stream_from_template(s)
            if s.codec_context.name == "hevc" and options.get("hls_segment_type") == "fmp4":
                o.codec_tag = "hvc1"
            streams[s.index] = o
        for p in c.demux(*c.streams.video):
            if not p.size:
                continue
            p.duration = dur[p.stream.index].get(p.pts, 0)
            p.stream = streams[p.stream.index]
            out.mux(p)


def check_written(playlist: Path) -> None:
    """The VOD playlist FFmpeg's HLS muxer wrote is complete (ends with EXT-X-ENDLIST) and so is every file it
    names (init and media segments): else :func:`lost_write`."""
    text = playlist.read_text(errors="replace")
    if "#EXT-X-ENDLIST" not in text.split():
        raise lost_write(playlist)
    names = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text) + [ln for ln in text.splitlines()
                                                             if ln and not ln.startswith("#")]
    for n in names:
        if not is_whole(playlist.parent / n):
            raise lost_write(playlist.parent / n)


def is_whole(path: Path) -> bool:
    """A segment file that is not cut short: MPEG-TS, whole 188-byte packets, the last one starting with its
    sync byte; fMP4 (ISO BMFF), top-level boxes that end exactly at the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.suffix == ".ts":
            if size == 0 or size % TS_PACKET:
                return False
            f.seek(size - TS_PACKET)
            return f.read(1) == b"\x47"
        at = 0
        while at + 8 <= size:
            f.seek(at)
            head = f.read(16)
            box = int.from_bytes(head[:4], "big")
            if box == 1:  # 64-bit size after the type
                box = int.from_bytes(head[8:16], "big") if len(head) == 16 else 0
            elif box == 0:  # to the end of the file
                box = size - at
            if box < 8:
                return False
            at += box
        return at == size > 0


def lost_write(path: Path) -> Exception:
    """What a file FFmpeg left incomplete without an error means: ENOSPC when its filesystem has less than
    :data:`NEARLY_FULL` bytes free (for root, the reserved blocks count as free), else a RuntimeError (an
    unreported write error of another kind, which surfaces)."""
    free = free_bytes(path.parent)
    if free < NEARLY_FULL:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return RuntimeError(f"{path.name}: FFmpeg's HLS muxer left it incomplete without reporting an error "
                        f"({free} bytes free)")


def free_bytes(directory: Path) -> int:
    """Bytes this process may still write on ``directory``'s filesystem (root: the reserved blocks too)."""
    st = os.statvfs(directory)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def fix_target_duration(path: Path) -> None:
    """RFC 8216 4.3.3.1: EXT-X-TARGETDURATION is an integer >= every EXTINF rounded to the nearest integer,
    and at least 1 (FFmpeg writes 0 for segments under 0.5 s)."""
    text = path.read_text()
    durs = [float(m) for m in re.findall(r"#EXTINF:([0-9.]+)", text)]
    target = max([1] + [int(d + 0.5) for d in durs])
    path.write_text(re.sub(r"#EXT-X-TARGETDURATION:\d+", f"#EXT-X-TARGETDURATION:{target}", text))


def master_playlist(renditions: list[tuple[str, float, float, int, int, str, str]], audio=()) -> str:
    """HLS master playlist text: (playlist, average bit/s, peak bit/s, width, height, CODECS, VIDEO-RANGE) per
    rendition, lowest bitrate first (RFC 8216 4.3.4.2: BANDWIDTH is the peak segment bitrate, with the largest
    audio rendition's peak when there are ``audio`` tracks (:class:`~bbmr_stream.manifest.AudioTrack`): their
    EXT-X-MEDIA group is on every variant, its CODECS listing the audio codec too). VIDEO-RANGE is written on
    every variant when one of them is HDR (PQ or HLG)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio = list(audio)
    lines += media_tags(audio) if audio else []
    a_peak = max((a.peak_kbps * 1000 for a in audio), default=0.0)
    a_avg = max((a.kbps * 1000 for a in audio), default=0.0)
    a_codecs = sorted({a.codecs for a in audio})
    hdr = any(r[6] != "SDR" for r in renditions)
    for pl, avg, peak, w, h, codecs, vrange in sorted(renditions, key=lambda r: r[1]):
        attrs = (f"BANDWIDTH={int(round(max(peak, avg) + a_peak))},AVERAGE-BANDWIDTH={int(round(avg + a_avg))},"
                 f"RESOLUTION={w}x{h},CODECS=\"{','.join([codecs] + a_codecs)}\"")
        attrs += f",VIDEO-RANGE={vrange}" if hdr else ""
        attrs += ',AUDIO="audio"' if audio else ""
        lines += [f"#EXT-X-STREAM-INF:{attrs}", pl]
    return "\n".join(lines) + "\n"


def media_tags(tracks: list, group: str = "audio") -> list[str]:
    """The master playlist's ``#EXT-X-MEDIA:TYPE=AUDIO`` lines of ``tracks`` in group ``group`` (RFC 8216
    4.3.4.1: quoted-string values; LANGUAGE only when known; CHANNELS the channel count as a quoted decimal)."""
    lines = []
    for t in tracks:
        lang = f',LANGUAGE="{t.language}"' if t.language else ""
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{group}",NAME="{t.name}"{lang},'
                     f'DEFAULT={"YES" if t.default else "NO"},AUTOSELECT=YES,CHANNELS="{t.channels}",'
                     f'URI="{t.playlist}"')
    return lines
