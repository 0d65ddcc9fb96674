"""packager.audio: the source's audio streams as HLS alternative audio renditions (generated media, both
segment containers)."""

import io
import re
from pathlib import Path

import av
import numpy as np
import pytest

from packager.audio import audio_renditions
from packager.segment import check_written, media_tags

CONTAINERS = ("fmp4", "mpegts")
SEG = 0.4


def _write(path: Path, tracks: list[dict], seconds: float, video: bool = False) -> None:
    """A clip of ``seconds``: optional 64x64 10 fps H.264 video, then one audio stream per ``tracks`` entry
    (codec, rate, layout, and optional language, title, default), noise at -20 dBFS."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:  # every stream added before the first packet is muxed
        v = out.add_stream("libx264", rate=10) if video else None
        if v is not None:
            v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        streams = [out.add_stream(t["codec"], rate=t["rate"], layout=t["layout"]) for t in tracks]
        for a, t in zip(streams, tracks):
            for key in ("language", "title"):
                if key in t:
                    a.metadata[key] = t[key]
            if t.get("default"):
                a.disposition = av.stream.Disposition.default
        if v is not None:
            for i in range(int(round(seconds * 10))):
                f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), format="rgb24")
                f.pts = i
                for p in v.encode(f):
                    out.mux(p)
            for p in v.encode(None):
                out.mux(p)
        for a, t in zip(streams, tracks):
            ch = av.AudioLayout(t["layout"]).nb_channels
            n = int(seconds * t["rate"])
            for at in range(0, n, 1024):
                k = min(1024, n - at)
                x = (rng.standard_normal((1, k * ch)) * 3000).astype(np.int16)  # packed s16: any channel count
                f = av.AudioFrame.from_ndarray(x, format="s16", layout=t["layout"])
                f.sample_rate, f.pts = t["rate"], at
                for p in a.encode(f):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)


def _extinf(playlist: Path) -> list[float]:
    return [float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", playlist.read_text())]


def _check_playlist(out: Path, track, container: str, codec: str, channels: int) -> None:
    """The media playlist is complete and every segment (behind its init segment for fMP4) decodes alone as
    audio only, in ``codec`` with ``channels``; the rates are the module's formulas of the files."""
    pl = out / track.playlist
    assert pl.name == f"audio_{track.source_stream}.m3u8"
    check_written(pl)
    text = pl.read_text()
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-INDEPENDENT-SEGMENTS" in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text
    durs = _extinf(pl)
    assert durs and int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1)) >= max(int(d + 0.5) for d in durs)
    segs = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    if container == "fmp4":
        assert init == [f"audio_{track.source_stream}_init.mp4"] and all(s.endswith(".m4s") for s in segs)
    else:
        assert not init and all(s.endswith(".ts") for s in segs)
    head = (out / init[0]).read_bytes() if init else b""
    for s in segs:
        with av.open(io.BytesIO(head + (out / s).read_bytes())) as c:
            assert len(c.streams) == len(c.streams.audio) == 1
            cc = c.streams.audio[0].codec_context
            assert cc.codec.canonical_name == codec and cc.layout.nb_channels == channels
            assert sum(f.samples for f in c.decode(audio=0)) > 0
    sizes = [(out / s).stat().st_size for s in segs]
    ib = len(head)
    total = sum(durs)
    assert track.kbps == pytest.approx((ib + sum(sizes)) * 8 / total / 1000, abs=2e-3)
    assert track.peak_kbps == pytest.approx(max((b + ib * d / total) * 8 / d / 1000 for b, d in zip(sizes, durs)),
                                            abs=2e-3)
    assert track.peak_kbps >= track.kbps - 2e-3


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio_src")
    aac = dict(codec="aac", rate=16000, layout="mono")
    _write(d / "langs.mkv", [{**aac, "language": "eng"},
                             {**aac, "layout": "stereo", "language": "fra", "title": 'Director "cut"\nnotes',
                              "default": True},
                             {**aac, "language": "eng"}, {**aac, "language": "xx1"}], 1.2)
    _write(d / "pcm.mkv", [dict(codec="pcm_s16le", rate=48000, layout="stereo"),
                           dict(codec="pcm_s16le", rate=16000, layout="hexadecagonal")], 1.0)
    _write(d / "av.mp4", [dict(codec="aac", rate=48000, layout="stereo")], 2.0, video=True)
    _write(d / "silent.mp4", [], 1.0, video=True)
    return d


@pytest.mark.parametrize("container", CONTAINERS)
def test_tagged_aac_tracks_copied(media, tmp_path, container):
    notes = []
    tracks = audio_renditions(str(media / "langs.mkv"), tmp_path, container, SEG, None, notes.append)
    assert notes == []
    assert [t.source_stream for t in tracks] == [0, 1, 2, 3]
    assert [t.name for t in tracks] == ["English", "Director 'cut' notes", "English (2)", "Audio 4"]
    assert [t.language for t in tracks] == ["eng", "fra", "eng", None]
    assert [t.default for t in tracks] == [False, True, False, False]  # the stream with the default disposition
    assert [t.channels for t in tracks] == [1, 2, 1, 1]
    assert all(t.copied and t.codecs == "mp4a.40.2" for t in tracks)
    for t in tracks:
        _check_playlist(tmp_path, t, container, "aac", t.channels)
        assert sum(_extinf(tmp_path / t.playlist)) == pytest.approx(1.2, abs=2 * 1024 / 16000)
    assert media_tags(tracks[:3], "aud") == [
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="eng",DEFAULT=NO,AUTOSELECT=YES,'
        'CHANNELS="1",URI="audio_0.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Director \'cut\' notes",LANGUAGE="fra",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio_1.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English (2)",LANGUAGE="eng",DEFAULT=NO,AUTOSELECT=YES,'
        'CHANNELS="1",URI="audio_2.m3u8"']
    assert media_tags(tracks[3:])[0] == ('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Audio 4",DEFAULT=NO,'
                                         'AUTOSELECT=YES,CHANNELS="1",URI="audio_3.m3u8"')


@pytest.mark.parametrize("container", CONTAINERS)
def test_pcm_transcoded_and_unpackageable_track_skipped(media, tmp_path, container):
    """PCM goes in no HLS container: AAC-LC 128 kb/s, said; a 16-channel track AAC cannot carry is left out with
    a warning (no files), and the first packaged track is the default."""
    notes = []
    tracks = audio_renditions(str(media / "pcm.mkv"), tmp_path, container, SEG, None, notes.append)
    assert notes[0] == "audio stream 0 (pcm_s16le): transcoded to AAC 128 kb/s"
    assert len(notes) == 2 and notes[1].startswith("warning: audio stream 1 not packaged (pcm_s16le: ")
    assert len(tracks) == 1
    t = tracks[0]
    assert (t.source_stream, t.copied, t.codecs, t.channels, t.default, t.name) == (0, False, "mp4a.40.2", 2, True,
                                                                                    "Audio 1")
    _check_playlist(tmp_path, t, container, "aac", 2)
    assert 100 < t.kbps < 200
    assert not list(tmp_path.glob("audio_1*"))


@pytest.mark.parametrize("container", CONTAINERS)
def test_duration_cut(media, tmp_path, container):
    """The packager packaged the first second of a 2 s clip: the audio stops with it (within one AAC frame, the
    priming frame that starts the playlist included), copied or transcoded."""
    frame = 1024 / 48000
    tracks = audio_renditions(str(media / "av.mp4"), tmp_path, container, SEG, 1.0, lambda s: None)
    assert len(tracks) == 1 and tracks[0].copied
    _check_playlist(tmp_path, tracks[0], container, "aac", 2)
    assert abs(sum(_extinf(tmp_path / tracks[0].playlist)) - 1.0) <= frame
    assert len(_extinf(tmp_path / tracks[0].playlist)) == 3  # 0.4 + 0.4 + 0.2: no one-frame tail segment
    pcm = tmp_path / "pcm"
    pcm.mkdir()
    tracks = audio_renditions(str(media / "pcm.mkv"), pcm, container, SEG, 0.5, lambda s: None)
    assert len(tracks) == 1 and not tracks[0].copied
    assert abs(sum(_extinf(pcm / tracks[0].playlist)) - 0.5) <= frame


def test_no_audio(media, tmp_path):
    notes = []
    assert audio_renditions(str(media / "silent.mp4"), tmp_path, "fmp4", SEG, None, notes.append) == []
    assert notes == [] and not list(tmp_path.iterdir())
    assert media_tags([]) == []
