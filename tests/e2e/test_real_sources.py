"""Real sources (generated, tests/sources.py): HDR10 and HLG (an HDR ladder beside a tone-mapped SDR one), 10-bit SDR
(kept or reduced, never silently), variable frame rate (timestamps and audio sync over 10 minutes), rotation,
non-square pixels, several audio tracks."""

import io
import json
import re
import subprocess

import av
import numpy as np
import pytest

from bbmr_stream.manifest import load
from bbmr_stream.tonemap import ToneMap, frame_planes, hdr_metadata
from packager.cli import main
from player.cli import main as play_main
from tests.sources import (
    MASTER_DISPLAY,
    MAX_CLL,
    ffmpeg_exe,
    hdr10_clip,
    hlg_clip,
    rotated_clip,
    sar_clip,
    sdr10_clip,
    two_audio_clip,
    vfr_clip,
)

LADDER = ["--ladder", "plain:23,plain:128x72:28", "--segment", "0.4", "--no-web-models"]


def _package(src, out, *extra, ladder=LADDER) -> int:
    return main([str(src), "--out", str(out), *ladder, *extra])


def _first_frames(stream, rend, n=None):
    """Decoded PyAV frames of a rendition's segments (init + segment), in order."""
    out = []
    for seg in rend.segments:
        data = (stream / rend.init.file).read_bytes() + (stream / seg.file).read_bytes()
        with av.open(io.BytesIO(data), format="mp4") as c:
            out += list(c.decode(video=0))
        if n is not None and len(out) >= n:
            return out[:n]
    return out


def _ffmpeg_tonemapped_y(src, tm: ToneMap, w, h) -> np.ndarray:
    """FFmpeg's zscale + tonemap of the source (the operator's reference): (frames, h, w) uint8 Y planes."""
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(src), "-vf", tm.ffmpeg_filter,
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"], check=True, capture_output=True).stdout
    frame = w * h * 3 // 2
    return np.frombuffer(raw, np.uint8).reshape(-1, frame)[:, :w * h].reshape(-1, h, w)


@pytest.mark.parametrize("transfer", ["PQ", "HLG"])
def test_hdr_source_gives_an_hdr_ladder_and_a_tone_mapped_sdr_one(tmp_path, capsys, transfer):
    """HDR rungs: HEVC Main10 with the source's tags (and PQ's mastering metadata), VIDEO-RANGE, measured on 10-bit
    values. SDR rungs: tagged BT.709; coded losslessly here, their Y plane is FFmpeg's zscale + tonemap (hable,
    peak 1000 nits) of the same frames within the tolerance: PSNR-Y >= 54 dB per frame, at most 0.5 % of the
    pixels more than 1 code value off, none more than 8 (measured: 55.4-56.2 dB, <= 0.14 %, max 5: RGB rounded
    to 8 bits, and RGB clipped at white beside the highlights, which zscale does not clip; tests/unit/
    test_tonemap.py compares the operator itself within 1 code value)."""
    src = (hdr10_clip if transfer == "PQ" else hlg_clip)(tmp_path / "hdr.mp4")
    out = tmp_path / "s"
    assert _package(src, out, "--lossless") == 0
    said = capsys.readouterr()
    assert f"{transfer} HDR source: 10-bit {transfer} rungs" in said.out + said.err
    man = load(out)
    hdr = [r for r in man.renditions if r.video_range != "SDR"]
    sdr = [r for r in man.renditions if r.video_range == "SDR"]
    assert sorted((r.lr_width, r.lr_height) for r in hdr) == [(128, 72), (256, 144)]
    assert {r.video_range for r in hdr} == {transfer} and {r.bit_depth for r in hdr} == {10}
    assert all(r.codecs.startswith("hvc1.2.4.") and r.codec == "hevc" and r.psnr_y > 30 for r in hdr)
    assert len(sdr) == 2 and all(r.bit_depth == 8 for r in sdr)
    assert man.source["transfer"] == transfer and "psnr_y_10bit" in man.conventions
    master = (out / "master.m3u8").read_text()
    for r in man.renditions:
        assert re.search(rf"VIDEO-RANGE={r.video_range}\n{re.escape(r.playlist)}\n", master), r.name

    f = _first_frames(out, max(hdr, key=lambda r: r.lr_width), 1)[0]
    trc = 16 if transfer == "PQ" else 18
    assert (f.format.name, f.color_primaries, f.color_trc, f.colorspace) == ("yuv420p10le", 9, trc, 9)
    if transfer == "PQ":
        meta = hdr_metadata(f)
        assert meta.master_display_x265 == MASTER_DISPLAY and (meta.max_cll, meta.max_fall) == MAX_CLL
    assert int(frame_planes(f)[0].max()) > 255  # 10-bit code values, not 8

    top = next(r for r in sdr if r.lr_width == 256)
    got = _first_frames(out, top)
    assert (got[0].color_primaries, got[0].color_trc, got[0].colorspace) == (1, 1, 1)
    ref = _ffmpeg_tonemapped_y(src, ToneMap(transfer.lower()), 256, 144)
    assert len(got) == len(ref) == 12
    for g, r in zip(got, ref):
        y = np.frombuffer(memoryview(g.planes[0]), np.uint8).reshape(144, -1)[:, :256].astype(int)
        d = np.abs(y - r)
        assert d.max() <= 8 and np.mean(d > 1) <= 0.005 and 10 * np.log10(255**2 / max(np.mean(d**2.0), 1e-12)) >= 54


def test_hdr_only_and_sdr_only(tmp_path, capsys):
    src = hdr10_clip(tmp_path / "hdr.mp4", frames=6)
    assert _package(src, tmp_path / "h", "--hdr-only", ladder=["--segment", "0.4"]) == 0
    man = load(tmp_path / "h")
    assert {r.video_range for r in man.renditions} == {"PQ"} and len(man.renditions) == 2  # the default 10-bit rungs
    assert man.source["frames"] == 6
    assert _package(src, tmp_path / "s", "--sdr-only") == 0
    assert {r.video_range for r in load(tmp_path / "s").renditions} == {"SDR"}
    assert "VIDEO-RANGE" not in (tmp_path / "s" / "master.m3u8").read_text()
    capsys.readouterr()
    sdr = sdr10_clip(tmp_path / "sdr.mp4", frames=6)
    assert _package(sdr, tmp_path / "x", "--hdr-only") == 2
    err = capsys.readouterr().err
    assert "--hdr-only" in err and "is SDR" in err and "Traceback" not in err and not (tmp_path / "x").exists()
    assert _package(src, tmp_path / "x", "--hdr-only", ladder=["--ladder", "plain:23,plain-sr:2:28"]) == 2
    err = capsys.readouterr().err
    assert "plain-sr:2:28 cannot be HDR rungs" in err and len(err.strip().splitlines()) == 1


def test_ten_bit_rungs_on_a_full_disk(tmp_path, monkeypatch, capsys):
    """FFmpeg reporting a full disk while it makes a 10-bit rung: the packager's one-line disk-full error, exit 4,
    nothing left behind."""
    import packager.segment

    src = sdr10_clip(tmp_path / "sdr10.mp4", frames=6)
    exe = tmp_path / "ffmpeg"
    exe.write_text('#!/bin/sh\necho "[out#0] Error writing trailer: No space left on device" >&2; exit 228\n')
    exe.chmod(0o755)
    monkeypatch.setattr(packager.segment, "ffmpeg_exe", lambda: str(exe))
    assert _package(src, tmp_path / "s") == 4
    err = capsys.readouterr().err
    assert "no space left on device" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.*"))


def test_player_shows_sdr_and_says_when_it_tone_maps(tmp_path, capsys):
    src = hdr10_clip(tmp_path / "hdr.mp4", frames=6)
    out = tmp_path / "s"
    assert _package(src, out) == 0
    capsys.readouterr()
    rep = tmp_path / "r.json"
    assert play_main([str(out), "--headless", "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["stream"]["rendition"].startswith("plain_")  # an SDR display: the SDR ladder
    assert play_main([str(out), "--headless", "--rendition", "hdr_256x144_crf23", "--report", str(rep),
                      "--frames-dir", str(tmp_path / "png")]) == 0
    said = capsys.readouterr()
    assert "is PQ HDR: shown tone-mapped to SDR BT.709" in said.out + said.err
    assert "tone-mapped" in json.loads(rep.read_text())["stream"]["display"]
    shown = np.asarray(av.open(str(sorted((tmp_path / "png").iterdir())[0])).decode(video=0).__next__()
                       .to_ndarray(format="rgb24"), np.float64)
    sdr = _first_frames(out, next(r for r in load(out).renditions if r.name == "plain_crf23"), 1)[0]
    ref = sdr.to_ndarray(format="rgb24").astype(np.float64)
    assert 10 * np.log10(255**2 / np.mean((shown - ref) ** 2)) > 30  # the same picture as the SDR rung's


@pytest.mark.parametrize("choice", ["hevc", "h264", "off"])
def test_ten_bit_sdr_is_kept_or_reduced_with_a_note(tmp_path, capsys, choice):
    src = sdr10_clip(tmp_path / "sdr10.mp4", frames=6)
    assert _package(src, tmp_path / "s", "--ten-bit", choice) == 0
    said = capsys.readouterr()
    said = said.out + said.err
    assert "10-bit SDR source: the 8-bit ladder is reduced from it by swscale (ordered" in said.replace("\n", " ")
    man = load(tmp_path / "s")
    deep = [r for r in man.renditions if r.bit_depth == 10]
    if choice == "off":
        assert not deep and "--ten-bit off" in said
        return
    assert len(deep) == 2 and {r.video_range for r in deep} == {"SDR"}
    assert all(r.codecs.startswith("hvc1.2.4." if choice == "hevc" else "avc1.6E") for r in deep)
    f = _first_frames(tmp_path / "s", max(deep, key=lambda r: r.lr_width), 1)[0]
    y = frame_planes(f)[0]
    assert f.format.name == "yuv420p10le" and np.any(y % 4)  # 10-bit values, not 8-bit ones shifted


def _flashes(playlist) -> list[float]:
    with av.open(str(playlist)) as c:
        return [float(f.time) for f in c.decode(video=0) if f.to_ndarray(format="gray").mean() > 200]


def _clicks(playlist) -> list[float]:
    """Onsets of the 2 kHz clicks (sample-accurate) of an audio playlist, seconds on its timeline."""
    xs, t0, rate = [], None, None
    with av.open(str(playlist)) as c:
        for f in c.decode(audio=0):
            t0, rate = (float(f.time), f.sample_rate) if t0 is None else (t0, rate)
            xs.append(f.to_ndarray()[0])
    hp = np.abs(np.diff(np.concatenate(xs)))
    idx = np.flatnonzero(hp > 0.5 * hp.max())
    return [t0 + (i + 1) / rate for k, i in enumerate(idx) if k == 0 or i - idx[k - 1] > rate // 4]


@pytest.mark.parametrize("seconds,container", [(600, "fmp4"), (30, "mpegts")])
def test_vfr_timestamps_and_audio_sync(tmp_path, capsys, seconds, container):
    """A 10-minute variable-rate clip (11-44 fps) with audio: every frame keeps its timestamp (within one
    90 kHz tick, after the renditions' constant B-frame delay), segment durations are real, and the video's white
    flashes and the audio's clicks (together each second in the source) stay within one frame of each other from
    the first minute to the last: no drift, no offset. MPEG-TS segments on 30 s."""
    src = vfr_clip(tmp_path / "vfr.mp4", seconds=seconds)
    with av.open(str(src)) as c:
        st = c.streams.video[0]
        want = sorted(p.pts for p in c.demux(st) if p.size)
        tb = st.time_base
    out = tmp_path / "s"
    assert _package(src, out, "--no-measure", "--container", container,
                    ladder=["--ladder", "plain:23", "--no-web-models"]) == 0
    said = capsys.readouterr()
    assert "variable frame rate" in said.out + said.err
    man = load(out)
    rend = man.renditions[0]
    assert man.source["frames"] == len(want) and man.source["max_fps"] > 35
    assert sum(s.duration_s for s in rend.segments) == pytest.approx(seconds, abs=0.1)
    with av.open(str(out / rend.playlist)) as c:
        st = c.streams.video[0]
        got = sorted(p.pts * st.time_base for p in c.demux(st) if p.size)
    delay = got[0] - want[0] * tb
    assert 0 <= delay < 0.2
    assert len(got) == len(want)
    assert max(abs(g - delay - w * tb) for g, w in zip(got, want)) <= tb
    flashes, clicks = _flashes(out / rend.playlist), _clicks(out / man.audio[0].playlist)
    assert len(flashes) == len(clicks) == seconds - 1
    frame = 1 / man.source["max_fps"]
    assert max(abs(f - c) for f, c in zip(flashes, clicks)) < frame


def _marker_corner(rgb: np.ndarray) -> str:
    """Where the white square marker of tests.sources.rotated_clip is: 'top-left', 'bottom-left', ..."""
    g = rgb.mean(axis=2) if rgb.ndim == 3 else rgb
    h, w = g.shape
    m = min(h, w) // 6
    corners = {"top-left": g[:m, :m], "top-right": g[:m, -m:], "bottom-left": g[-m:, :m], "bottom-right": g[-m:, -m:]}
    return max(corners, key=lambda k: corners[k].mean())


def test_rotated_source_plays_upright(tmp_path):
    """A phone video (coded landscape, display matrix 90 degrees): the rungs are portrait and the marker sits where
    FFmpeg's autorotate puts it (bottom-left), in bbmr-play's frames and in FFmpeg's decode of the stream."""
    src = rotated_clip(tmp_path / "rot.mp4")
    ffmpeg_png = tmp_path / "src.png"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(src), "-frames:v", "1",
                    str(ffmpeg_png)], check=True)
    upright = next(av.open(str(ffmpeg_png)).decode(video=0)).to_ndarray(format="rgb24")
    assert upright.shape[:2] == (192, 108) and _marker_corner(upright) == "bottom-left"
    out = tmp_path / "s"
    assert _package(src, out, ladder=["--ladder", "plain:23,plain-sr:2:28", "--segment", "0.4", "--no-web-models"]) == 0
    man = load(out)
    assert (man.source["width"], man.source["height"]) == (108, 192)
    assert all(r.lr_height > r.lr_width for r in man.renditions)
    assert play_main([str(out), "--headless", "--frames-dir", str(tmp_path / "png"), "--max-frames", "2"]) == 0
    shown = next(av.open(str(sorted((tmp_path / "png").iterdir())[0])).decode(video=0)).to_ndarray(format="rgb24")
    assert shown.shape[:2] == (192, 108) and _marker_corner(shown) == "bottom-left"
    png = tmp_path / "hls.png"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(out / "master.m3u8"), "-frames:v", "1",
                    str(png)], check=True)
    hls = next(av.open(str(png)).decode(video=0)).to_ndarray(format="rgb24")
    assert hls.shape[:2] == (192, 108) and _marker_corner(hls) == "bottom-left"


def test_non_square_pixels_give_the_display_size(tmp_path, capsys):
    """Coded 192x144 at SAR 4:3: the stream is 256x144 square pixels and the circles are round again."""
    from scipy import ndimage

    src = sar_clip(tmp_path / "sar.mp4")
    out = tmp_path / "s"
    assert _package(src, out) == 0
    said = capsys.readouterr()
    assert "SAR 4:3" in said.out + said.err
    man = load(out)
    assert (man.source["width"], man.source["height"]) == (256, 144) and man.source["sar"] == [4, 3]
    top = next(r for r in man.renditions if r.lr_width == 256)
    assert (top.lr_width, top.lr_height) == (256, 144)
    y = _first_frames(out, top, 1)[0].to_ndarray(format="gray")
    lab, n = ndimage.label(y > 200)
    big = max(ndimage.find_objects(lab), key=lambda s: (s[0].stop - s[0].start) * (s[1].stop - s[1].start))
    hh, ww = big[0].stop - big[0].start, big[1].stop - big[1].start
    assert abs(ww / hh - 1) < 0.1, (ww, hh)


def test_two_audio_tracks_are_both_in_the_master_playlist(tmp_path):
    src = two_audio_clip(tmp_path / "two.mp4")
    out = tmp_path / "s"
    assert _package(src, out) == 0
    man = load(out)
    assert [(a.language, a.default) for a in man.audio] == [("eng", True), ("fra", False)]
    master = (out / "master.m3u8").read_text()
    media = [ln for ln in master.splitlines() if ln.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(media) == 2 and 'LANGUAGE="eng"' in media[0] and 'LANGUAGE="fra"' in media[1]
    assert all('AUDIO="audio"' in ln and "mp4a.40.2" in ln for ln in master.splitlines()
               if ln.startswith("#EXT-X-STREAM-INF"))
    for a in man.audio:
        with av.open(str(out / a.playlist)) as c:
            assert sum(f.samples for f in c.decode(audio=0)) > 0.9 * 1.2 * c.streams.audio[0].sample_rate


def test_hdr_mpegts_source_with_audio(tmp_path):
    """An HDR source in MPEG-TS (timestamps from 1.4 s, ADTS AAC) with --max-frames: the 8-bit and the 10-bit
    renditions share one timeline (else the packager stops), the audio is copied into fMP4 (ADTS to MP4 samples),
    starts with the video and stops with it, within one AAC frame."""
    mp4 = hdr10_clip(tmp_path / "hdr.mp4")
    src = tmp_path / "hdr.ts"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(mp4), "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=1.2", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-f", "mpegts", str(src)], check=True)
    with av.open(str(src)) as c:
        assert c.streams.video[0].start_time * c.streams.video[0].time_base > 1
    out = tmp_path / "s"
    assert _package(src, out, "--max-frames", "8") == 0
    man = load(out)
    assert {r.bit_depth for r in man.renditions} == {8, 10} and len(man.audio) == 1 and man.audio[0].copied

    def first(playlist, kind):
        with av.open(str(out / playlist)) as c:
            st = c.streams.video[0] if kind == "video" else c.streams.audio[0]
            ts = sorted(float(p.pts * st.time_base) for p in c.demux(st) if p.size)
        return ts[0], ts[-1]

    v0, v1 = first(man.renditions[0].playlist, "video")
    a0, a1 = first(man.audio[0].playlist, "audio")
    aac_frame = 1024 / 48000
    assert abs(a0 - v0) <= aac_frame + 1e-3  # the audio's priming frame starts up to one AAC frame before
    assert abs((a1 + aac_frame) - (v1 + 0.1)) <= aac_frame + 1e-3  # the last video frame lasts 0.1 s
    assert sum(s.duration_s for s in man.renditions[0].segments) == pytest.approx(0.8, abs=1e-3)
