"""tests/sources.py makes what it promises, as read back through PyAV (and, for container boxes and display
rotation, the ffmpeg binary): HDR10 / HLG / 10-bit SDR tags and levels, variable frame rate timestamps with
audio clicks in sync, display rotation, sample aspect ratio, two audio languages."""

import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
from av.sidedata.sidedata import Type

from tests import sources


def _pq_code(nits: float) -> float:
    """Limited-range 10-bit code of a grey at `nits` under SMPTE ST 2084."""
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = (nits / 10000) ** m1
    return 64 + 876 * ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def _frames(path, n=None):
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f)
            if n is not None and len(out) == n:
                break
        return out


def _luma10(frame) -> np.ndarray:
    return frame.to_ndarray()[:frame.height]  # yuv420p10le: the Y rows of a (3/2 h, w) uint16 array


def _ffmpeg_info(path) -> str:
    res = subprocess.run([sources.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return res.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    return {
        "hdr10.mp4": sources.hdr10_clip(d / "hdr10.mp4"),
        "hdr10.mkv": sources.hdr10_clip(d / "hdr10.mkv", frames=4),
        "hlg": sources.hlg_clip(d / "hlg.mp4", frames=6),
        "sdr10": sources.sdr10_clip(d / "sdr10.mp4"),
        "sdr10_hevc": sources.sdr10_clip(d / "sdr10_hevc.mp4", frames=4, codec="libx265"),
        "vfr": sources.vfr_clip(d / "vfr.mp4"),
        "vfr.mkv": sources.vfr_clip(d / "vfr.mkv", seconds=2.5, fps_choices=(60, 15), jitter=0.4),
        "rot90": sources.rotated_clip(d / "rot90.mp4"),
        "rot-90": sources.rotated_clip(d / "rot-90.mp4", rotation=-90, frames=3),
        "sar": sources.sar_clip(d / "sar.mp4"),
        "two": sources.two_audio_clip(d / "two.mp4"),
    }


@pytest.mark.parametrize("name", ["hdr10.mp4", "hdr10.mkv"])
def test_hdr10_tags_and_static_metadata(clips, name):
    with av.open(str(clips[name])) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.profile) == ("hevc", "Main 10")
        f = next(c.decode(s))
    assert f.format.name == "yuv420p10le"
    assert (f.color_primaries, f.color_trc, f.colorspace, f.color_range) == (9, 16, 9, 1)
    types = [sd.type for sd in f.side_data]  # iterating a SideDataContainer yields SideData objects
    assert Type.MASTERING_DISPLAY_METADATA in types and Type.CONTENT_LIGHT_LEVEL in types
    md = sources.mastering_display(f)
    assert md["g"] == pytest.approx((0.265, 0.69)) and md["b"] == pytest.approx((0.15, 0.06))
    assert md["r"] == pytest.approx((0.68, 0.32)) and md["wp"] == pytest.approx((0.3127, 0.329))
    assert (md["max_nits"], md["min_nits"]) == pytest.approx((1000, 0.005))
    assert sources.content_light_level(f) == (1000, 400)
    info = _ffmpeg_info(clips[name])  # the container's own boxes (mdcv / clli, or MKV colour elements)
    assert "Mastering display metadata" in info and "MaxCLL=1000, MaxFALL=400" in info


def test_hdr10_is_a_real_pq_signal_with_highlights(clips):
    f = _frames(clips["hdr10.mp4"], 1)[0]
    y = _luma10(f)
    w, h = f.width, f.height
    strip = y[h - max(4, h // 9) // 2 * 2 + 2:-2]  # the 0 -> 1000 nit ramp, away from its edges
    ramp = np.linspace(0, 1000, w)
    for x in (w // 8, w // 4, w // 2, w - 3):
        assert abs(np.median(strip[:, x]) - _pq_code(ramp[x])) < 12, x
    photo = y[: h // 2]
    assert np.percentile(photo, 50) < _pq_code(203) + 5  # the photo stays at or below reference white...
    assert (y > _pq_code(600)).mean() > 0.02  # ...the discs and the ramp's end go far above it


def test_hlg(clips):
    f = _frames(clips["hlg"], 1)[0]
    assert f.format.name == "yuv420p10le"
    assert (f.color_primaries, f.color_trc, f.colorspace, f.color_range) == (9, 18, 9, 1)
    assert sources.mastering_display(f) is None and sources.content_light_level(f) is None
    y = _luma10(f)
    strip = y[f.height - 12:-2]
    assert abs(np.median(strip[:, -3]) - 940) < 12  # 1000 nits = HLG 100 %
    x203 = round(203 / 1000 * (f.width - 1))
    assert abs(np.median(strip[:, x203]) - (64 + 876 * 0.75)) < 12  # reference white = HLG 75 %


@pytest.mark.parametrize("name, profile", [("sdr10", "High 10"), ("sdr10_hevc", "Main 10")])
def test_sdr10_keeps_more_than_8_bits_in_the_gradient(clips, name, profile):
    with av.open(str(clips[name])) as c:
        assert c.streams.video[0].codec_context.profile == profile
        f = next(c.decode(video=0))
    assert f.format.name == "yuv420p10le"
    assert (f.color_primaries, f.color_trc, f.colorspace, f.color_range) == (1, 1, 1, 1)
    row = _luma10(f)[f.height - 4, 4:-4]
    levels = len(np.unique(row))
    eight_bit = (int(row.max()) - int(row.min())) // 4 + 1  # at most this many at 8 bits
    assert levels > 2.5 * eight_bit and levels > 80
    assert np.all(np.diff(row.astype(int)) > -4)  # a smooth ramp, not noise


def test_vfr_timeline():
    pts = sources.vfr_timeline(3.5, (30, 15, 24))
    assert pts[0] == 0 and all(np.diff(pts) > 0) and pts[-1] < 3.5 * 90000
    assert {90000, 180000, 270000} <= set(pts)  # each whole second starts with a frame
    assert sum(p < 3 * 90000 for p in pts) == 30 + 15 + 24  # fps_choices cycle per second
    assert 14 <= len(pts) - 69 <= 16  # half of a 30 fps second, give or take the jitter
    assert sources.vfr_timeline(3.5, (30, 15, 24)) == pts  # seeded


def test_vfr_clip_per_frame_pts_and_rates(clips):
    expected = sources.vfr_timeline()  # the defaults of vfr_clip: 4 s of (30, 15, 24) fps runs, +-25 % jitter
    with av.open(str(clips["vfr"])) as c:
        v = c.streams.video[0]
        assert v.time_base == Fraction(1, 90000)
        frames = list(c.decode(v))
        assert v.duration * v.time_base == 4
        a = c.streams.audio[0]
        assert a.duration * a.time_base == 4
        avg = v.average_rate
    assert [f.pts for f in frames] == expected
    dur = np.diff([*expected, 4 * 90000]) / 90000
    rates = 1 / dur
    assert rates.min() < 13 and rates.max() > 35  # 15 fps - 25 % ... 30 fps + 25 %
    assert avg == Fraction(len(expected), 4)  # frames / duration: 99 / 4, no frame's own rate
    assert np.abs(rates - float(avg)).min() > 0.01
    lum = np.array([f.to_ndarray(format="gray").mean() for f in frames])
    flashes = [f.time for f, m in zip(frames, lum) if m > 250]
    assert flashes == [1.0, 2.0, 3.0] == sources.click_times(4)


def test_vfr_mkv_pts_within_a_millisecond(clips):
    expected = np.array(sources.vfr_timeline(2.5, (60, 15), 0.4)) / 90000
    got = np.array([f.time for f in _frames(clips["vfr.mkv"])])
    assert len(got) == len(expected) and np.abs(got - expected).max() <= 0.001


def test_vfr_audio_clicks_on_whole_seconds(clips):
    with av.open(str(clips["vfr"])) as c:
        afs = list(c.decode(audio=0))
    rate = afs[0].sample_rate
    t0 = afs[0].time
    x = np.concatenate([f.to_ndarray()[0] for f in afs])
    assert abs(t0) < 1e-9 and len(x) >= 4 * rate  # MP4 edit list hides the AAC priming
    jump = np.abs(np.diff(x)) > 0.08
    onsets = [i + 1 for i in np.flatnonzero(jump) if not jump[max(0, i - 200):i].any()]
    assert np.allclose(t0 + np.array(onsets) / rate, sources.click_times(4), atol=0.002)


def test_a_minute_of_vfr_is_quick_to_make(tmp_path):
    p = sources.vfr_clip(tmp_path / "long.mp4", seconds=60, fps_choices=(15, 30))
    with av.open(str(p)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.frames == len(sources.vfr_timeline(60, (15, 30))) == 30 * 15 + 30 * 30
        assert v.duration * v.time_base == 60 and a.duration * a.time_base == 60


def _autorotated_gray(path) -> np.ndarray:
    """The first frame as ffmpeg shows it (its default autorotate), as a grey array."""
    f = _frames(path, 1)[0]
    res = subprocess.run([sources.ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True)
    w, h = (f.height, f.width) if abs(f.rotation) == 90 else (f.width, f.height)
    return np.frombuffer(res.stdout, np.uint8).reshape(h, w)


@pytest.mark.parametrize("name, rotation, k", [("rot90", 90, 1), ("rot-90", -90, 3)])
def test_rotated_clip(clips, name, rotation, k):
    f = _frames(clips[name], 1)[0]
    assert (f.width, f.height) == (192, 108)  # coded landscape; PyAV does not rotate
    assert f.rotation == rotation and Type.DISPLAYMATRIX in [sd.type for sd in f.side_data]
    g = f.to_ndarray(format="gray")
    m = 108 // 4
    assert g[:m, :m].min() > 240 and abs(np.median(g[:m, -m:]) - 150) < 10 and np.percentile(g[m:, m:], 99) < 100
    shown = _autorotated_gray(clips[name])
    assert shown.shape == (192, 108)
    assert np.abs(shown.astype(int) - np.rot90(g, k)).mean() < 3  # ffmpeg turns it counter-clockwise by rotation
    if rotation == 90:
        assert shown[-m:, :m].min() > 240 and abs(np.median(shown[:m, :m]) - 150) < 10  # white bottom-left


def test_sar_clip(clips):
    from skimage.measure import label, regionprops

    with av.open(str(clips["sar"])) as c:
        s = c.streams.video[0]
        assert s.sample_aspect_ratio == Fraction(4, 3) == s.codec_context.sample_aspect_ratio
        assert s.display_aspect_ratio == Fraction(16, 9)
        f = next(c.decode(s))
    assert (f.width, f.height) == (192, 144)
    big = max(regionprops(label(f.to_ndarray(format="gray") > 200)), key=lambda r: r.area)
    y0, x0, y1, x1 = big.bbox
    assert (y1 - y0) == pytest.approx(72, abs=3)  # display diameter h / 2...
    assert (x1 - x0) / (y1 - y0) == pytest.approx(3 / 4, abs=0.06)  # ...squeezed to 3/4 of it in coded pixels


def test_two_audio_clip(clips):
    with av.open(str(clips["two"])) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "audio"]
        a = c.streams.audio
        assert [s.language for s in a] == ["eng", "fra"] == [s.metadata["language"] for s in a]
        assert [s.metadata["name"] for s in a] == ["English", "Français"]  # MP4 keeps a track title as udta name
        assert bool(a[0].disposition & av.stream.Disposition.default)
        assert not a[1].disposition & av.stream.Disposition.default
        assert all(s.duration * s.time_base == pytest.approx(1.2, abs=0.03) for s in c.streams)
    for i, hz in enumerate((440, 660)):
        with av.open(str(clips["two"])) as c:
            x = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=i)])[:48000]
        assert np.argmax(np.abs(np.fft.rfft(x))) * 48000 / len(x) == pytest.approx(hz, abs=3)
