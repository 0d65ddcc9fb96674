"""Audio: every audio stream of the source as an HLS alternative audio rendition (RFC 8216 4.3.4.1): one media
playlist ``audio_K.m3u8`` per stream K (K counts the source's audio streams, FFmpeg's ``0:a:K``), its segments
in the stream's container, cut by FFmpeg's HLS muxer every ``segment_s`` seconds (every audio frame is a
random access point, so a segment ends at the first frame at or after each multiple of ``segment_s``), and
the EXT-X-MEDIA lines of the group every video variant names (:func:`packager.segment.media_tags`).

Copied as is (``-c:a copy``) when the codec goes in the container (what FFmpeg 9.0's muxers write *and* read
back as that audio, and HLS clients play):

=========  ======  ======  ==============================================================================
codec      fmp4    mpegts  notes
=========  ======  ======  ==============================================================================
AAC        copy    copy    LC, HE-AAC, HE-AACv2; other profiles (Main, LTP, LD, ...) are transcoded
AC-3       copy    copy
E-AC-3     copy    copy
MP3        AAC     copy    FFmpeg's mp4 muxer takes it (object type 0x6B, not HLS's mp4a.40.34): TS only
Opus       copy    AAC     FFmpeg's MPEG-TS Opus (a draft mapping) plays in FFmpeg only
FLAC       copy    AAC     FFmpeg writes FLAC (and PCM) into MPEG-TS as a data stream without error
=========  ======  ======  ==============================================================================

Anything else (PCM, MP2, Vorbis, DTS, ...) is transcoded to AAC-LC, 64 kb/s per channel (128 kb/s stereo),
at the source's sample rate (a rate AAC has not, e.g. 88.2 / 96 kHz: 48 kHz), and said through ``note``.

Timeline: FFmpeg's HLS muxer starts the playlist at the stream's first packet, the encoder's priming (AAC:
1024 samples, at pts < 0 in MP4 / Matroska, decoded and dropped by players that read edit lists, played in
MPEG-TS), so the content is one priming frame into it. A cut at ``duration_s`` (the packaged video's end) is
therefore made at ``duration_s`` less the priming, and FFmpeg's ``-t`` keeps every packet starting before the
cut: the playlist's total EXTINF is ``duration_s`` to within one codec frame, the audio stops with the video.

Rates: ``kbps`` = (segments + init segment) bytes * 8 / the playlist's total EXTINF duration / 1000;
``peak_kbps`` = the highest (segment bytes + its duration-share of the init segment) * 8 / its EXTINF / 1000.
A short last segment (the stream's tail past the last multiple of ``segment_s``) counts at its own rate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from bbmr_stream.manifest import AudioTrack
from packager.segment import check_written, fix_target_duration, read_playlist, run_ffmpeg

COPY = {"aac": ("fmp4", "mpegts"), "ac3": ("fmp4", "mpegts"), "eac3": ("fmp4", "mpegts"), "mp3": ("mpegts",),
        "opus": ("fmp4",), "flac": ("fmp4",)}  # codec -> the containers it is copied into
AAC_PROFILES = {"LC": "mp4a.40.2", "HE-AAC": "mp4a.40.5", "HE-AACv2": "mp4a.40.29"}  # PyAV profile -> RFC 6381
CODECS = {"ac3": "ac-3", "eac3": "ec-3", "mp3": "mp4a.40.34", "opus": "Opus", "flac": "fLaC"}
AAC_KBPS_PER_CHANNEL = 64  # transcoded AAC-LC: 128 kb/s stereo
AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder puts before the audio (its initial_padding)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)  # kept; others -> 48 kHz
LANGUAGES = {"eng": "English", "en": "English", "fra": "French", "fre": "French", "fr": "French",
             "deu": "German", "ger": "German", "de": "German", "spa": "Spanish", "es": "Spanish",
             "ita": "Italian", "it": "Italian", "jpn": "Japanese", "ja": "Japanese", "zho": "Chinese",
             "chi": "Chinese", "zh": "Chinese", "por": "Portuguese", "pt": "Portuguese", "rus": "Russian",
             "ru": "Russian", "kor": "Korean", "ko": "Korean"}
MAX_NAME = 64  # characters of NAME (the manifest's limit)


def audio_renditions(source: str, out_dir: Path, container: str, segment_s: float, duration_s: float | None,
                     note: Callable[[str], None], delay_s: float = 0.0) -> list[AudioTrack]:
    """Segment every audio stream of ``source`` into ``out_dir`` (``audio_K.m3u8``, ``audio_K_%05d.m4s`` +
    ``audio_K_init.mp4`` for fmp4, ``audio_K_%05d.ts`` for mpegts), ``segment_s`` seconds per segment, the
    first ``duration_s`` seconds of the source (None: all). Returns the packaged tracks in source order, exactly
    one of them ``default`` (the source's default-disposition stream, else the first); [] without audio.
    ``delay_s``: the video renditions' delay against the source's timestamps (their encoders' B-frame delay,
    packager.pipeline.video_delay_s): the audio keeps the source's timestamps (``-copyts``) shifted by as much,
    so that players, which line the renditions up by timestamp, keep the source's audio-video sync.

    A stream FFmpeg cannot package (``ffmpeg.Error``, or no audio within ``duration_s``) leaves no files and a
    ``note("warning: ...")``; the others go on. A full disk is the ``OSError`` of
    :func:`~packager.segment.run_ffmpeg` / :func:`~packager.segment.check_written`, raised."""
    import av
    import ffmpeg

    with av.open(source) as c:
        streams = [_describe(s) for s in c.streams.audio]
        lead = _lead_in(c) if duration_s is not None else {}
    tracks, wanted_default, names = [], None, set()
    for k, st in enumerate(streams):
        copy = container in COPY.get(st["codec"], ()) and (st["codec"] != "aac" or st["profile"] in AAC_PROFILES)
        opts = {"c:a": "copy"}
        if copy and st["codec"] == "aac" and container == "fmp4":
            opts["bsf:a"] = "aac_adtstoasc"  # ADTS (an MPEG-TS source's AAC) -> the MP4 sample format; MP4's: as is
        if not copy:
            kbps = AAC_KBPS_PER_CHANNEL * max(1, st["channels"])
            opts = {"c:a": "aac", "profile:a": "aac_low", "b:a": f"{kbps}k"}
            if st["rate"] not in AAC_RATES:
                opts["ar"] = 48000
        span = duration_s
        if duration_s is not None:  # the HLS timeline starts with the priming frame: the content stops with the video
            prime = lead.get(k, 0.0) if copy else AAC_PRIMING / (opts.get("ar") or st["rate"] or 48000)
            span = duration_s - prime if duration_s > prime else duration_s
        try:
            playlist, init, segs = _segment(ffmpeg, source, out_dir, k, container, segment_s, span,
                                            opts | {"copyts": None, "output_ts_offset": f"{delay_s:.6f}",
                                                    "muxdelay": 0, "muxpreload": 0})  # as the video's muxer (PyAV)
        except ffmpeg.Error as e:
            _remove(out_dir, k)
            note(f"warning: audio stream {k} not packaged ({st['codec']}: {_first_error(e)})")
            continue
        if not any(d > 0 for d, _ in segs):
            _remove(out_dir, k)
            note(f"warning: audio stream {k} not packaged ({st['codec']}: no audio in the packaged span)")
            continue
        if not copy:
            note(f"audio stream {k} ({st['codec']}): transcoded to AAC {opts['b:a'][:-1]} kb/s")
        kbps, peak = _rates(init, segs)
        name = _unique(_name(st, k), names)
        names.add(name)
        if st["default"] and wanted_default is None:
            wanted_default = len(tracks)
        tracks.append(AudioTrack(playlist=playlist, name=name, language=st["language"],
                                 codecs=_codecs(st) if copy else AAC_PROFILES["LC"], channels=max(1, st["channels"]),
                                 kbps=round(kbps, 3), peak_kbps=round(peak, 3), default=False, source_stream=k,
                                 copied=copy))
    if tracks:
        tracks[wanted_default or 0].default = True
    return tracks


def _describe(s) -> dict:
    """What the packager needs of PyAV audio stream ``s`` (the title: Matroska's title, MP4's track name)."""
    cc = s.codec_context
    codec = (getattr(cc.codec, "canonical_name", None) or cc.name) if cc is not None else "unknown"
    lang = (s.metadata.get("language") or "").strip().lower()
    channels = 0
    if cc is not None:
        channels = cc.layout.nb_channels if cc.layout is not None else getattr(cc, "channels", 0)
    return {"codec": codec, "profile": cc.profile if cc is not None else None, "channels": int(channels or 0),
            "rate": cc.sample_rate if cc is not None else 0, "title": s.metadata.get("title") or s.metadata.get("name"),
            "language": lang if re.fullmatch(r"[a-z]{2,3}", lang) and lang != "und" else None,
            "default": bool(s.disposition & type(s.disposition).default)}


def _lead_in(c, max_packets: int = 10000) -> dict[int, float]:
    """{K: seconds} the first packet of audio stream K starts before the container's start: the encoder's
    priming (AAC in MP4 / Matroska: 1024 samples at pts -1024, which FFmpeg's HLS muxer puts at 0)."""
    audio = list(c.streams.audio)
    first: dict[int, float] = {}
    if not audio:
        return first
    start = (c.start_time or 0) / 1e6
    for n, pkt in enumerate(c.demux(audio)):
        k = audio.index(pkt.stream)
        if pkt.pts is not None and k not in first:
            first[k] = max(0.0, start - float(pkt.pts * pkt.time_base))
        if len(first) == len(audio) or n >= max_packets:
            break
    return first


def _codecs(st: dict) -> str:
    """RFC 6381 CODECS of a copied stream."""
    return AAC_PROFILES[st["profile"]] if st["codec"] == "aac" else CODECS[st["codec"]]


def _segment(ffmpeg, source: str, out_dir: Path, k: int, container: str, segment_s: float,
             duration_s: float | None, codec_opts: dict) -> tuple[str, int, list[tuple[float, int]]]:
    """FFmpeg's HLS muxer on audio stream ``k``: the playlist's name, its init segment's bytes (0: mpegts) and
    [(EXTINF seconds, bytes)] of its media segments."""
    name = f"audio_{k}"
    playlist = out_dir / f"{name}.m3u8"
    opts = dict(map=f"0:a:{k}", f="hls", hls_time=segment_s, hls_playlist_type="vod",
                hls_flags="independent_segments", **codec_opts)
    if container == "fmp4":
        opts |= dict(hls_segment_type="fmp4", hls_fmp4_init_filename=f"{name}_init.mp4",
                     hls_segment_filename=str(out_dir / f"{name}_%05d.m4s"))
    else:
        opts |= dict(hls_segment_filename=str(out_dir / f"{name}_%05d.ts"))
    # -t on the input: with -copyts an output -t would count from the source's first timestamp, not from 0
    src = ffmpeg.input(source, t=duration_s) if duration_s is not None else ffmpeg.input(source)
    run_ffmpeg(src.output(str(playlist), **opts), playlist)
    check_written(playlist)
    fix_target_duration(playlist)
    text = playlist.read_text()
    if "#EXT-X-INDEPENDENT-SEGMENTS" not in text:  # FFmpeg 9.0 writes it for video variants only
        text = re.sub(r"(#EXT-X-VERSION:\d+\n)", r"\1#EXT-X-INDEPENDENT-SEGMENTS\n", text, count=1)
        playlist.write_text(text)
    init, segs = read_playlist(playlist)
    return playlist.name, init.bytes if init else 0, [(sg.duration_s, sg.bytes) for sg in segs]


def _rates(init: int, segs: list[tuple[float, int]]) -> tuple[float, float]:
    """(average, peak) kb/s of media segments [(EXTINF seconds, bytes)] behind an ``init``-byte init segment,
    which is shared among them by duration."""
    total = sum(d for d, _ in segs)
    avg = (init + sum(b for _, b in segs)) * 8 / total / 1000
    peak = max((b + init * d / total) * 8 / d / 1000 for d, b in segs if d > 0)
    return avg, peak


def _name(st: dict, k: int) -> str:
    """NAME: the title, else the language's English name (else its code), else "Audio K+1"; no double quotes
    or line breaks (RFC 8216 quoted-string), at most :data:`MAX_NAME` characters."""
    for cand in (st["title"], LANGUAGES.get(st["language"] or "", st["language"])):
        if cand:
            cand = "".join(c for c in " ".join(str(cand).replace('"', "'").split()) if c.isprintable())
            cand = cand[:MAX_NAME].strip()
            if cand:
                return cand
    return f"Audio {k + 1}"


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... : the first not in ``taken`` (NAME is unique in a group)."""
    if name not in taken:
        return name
    n = 2
    while (cand := f"{name[:MAX_NAME - len(f' ({n})')].rstrip()} ({n})") in taken:
        n += 1
    return cand


def _first_error(e) -> str:
    """The first line FFmpeg logged for ``ffmpeg.Error`` ``e`` (the cause; later ones are its consequences),
    without the ``[component @ 0x...]`` prefixes."""
    for line in (e.stderr or b"").decode(errors="replace").splitlines():
        if line := re.sub(r"^(\[[^]]*\]\s*)+", "", line).strip():
            return line[:200]
    return "FFmpeg failed"


def _remove(out_dir: Path, k: int) -> None:
    """The files FFmpeg may have left for audio stream ``k``."""
    for p in [*out_dir.glob(f"audio_{k}.m3u8*"), *out_dir.glob(f"audio_{k}_*")]:
        p.unlink(missing_ok=True)
