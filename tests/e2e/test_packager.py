import io
import json

import av
import numpy as np
import pytest
import torch

from bbmr_stream.allocate import allocate
from bbmr_stream.atlas import atlas_cols, atlas_rows, fit_to_rows, pack_frame
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.demux import init_path, scalemap_of, segment_frames
from bbmr_stream.manifest import load
from bbmr_stream.resize import to_tensor
from bbmr_stream.score import BicubicScorer
from packager.cli import main
from tests.media import FPS, H, N, W, _clip


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    src = d / "in.mp4"
    _clip(src)
    out = d / "stream"
    rc = main([str(src), "--out", str(out), "--scorer", "bicubic", "--realloc", "every", "--segment", "0.4",
               "--layout", "atlas", "--container", "mpegts",
               "--ladder", "bbmr:23,uniform:23", "--lossless", "--upscaler", "bicubic", "--device", "cpu"])
    assert rc == 0
    return src, out


def _open_segment(out, rend, seg):
    """A segment opened as any player opens it: an fMP4 media segment behind its init segment, or MPEG-TS."""
    if rend.init is None:
        return av.open(str(out / seg.file))
    return av.open(io.BytesIO((out / rend.init.file).read_bytes() + (out / seg.file).read_bytes()))


def _source_frames(src):
    """The source's RGB frames as the packager sees them (bbmr_stream.colour's exact conversion)."""
    from bbmr_stream.decode import frames, probe

    return [f.rgb for f in frames(probe(str(src)))]


def test_scale_maps_round_trip(packaged):
    src, out = packaged
    man = load(out)
    rend = man.renditions[0]
    assert rend.kind == "bbmr" and len(rend.segments) == 3
    grid = BlockGrid(H, W)
    scorer = BicubicScorer()
    expect = []
    for img in _source_frames(src):
        d = scorer.score(to_tensor(img))
        f = allocate("optimal", d, weights=grid.valid_fraction())
        expect.append(fit_to_rows(f, grid, atlas_rows(grid, (2, 4, 8))))
    got, pts, sent = [], [], []
    for seg in rend.segments:  # every segment decodes on its own, starting with a keyframe
        with av.open(str(out / seg.file)) as c:
            frs = list(c.decode(video=0))
        assert frs[0].key_frame
        assert len(frs) == seg.frames
        maps = [m for _, m in segment_frames(out / seg.file, 1)]  # the map rule applied
        own = [scalemap_of(fr) for fr in frs]  # the SEI of each frame, if any
        assert own[0] is not None  # a segment starts with a map
        for i in range(1, len(frs)):  # later frames carry one exactly when the map changes
            assert (own[i] is None) == np.array_equal(maps[i].flat, maps[i - 1].flat)
        got += maps
        sent += [seg.first_frame + i for i, m in enumerate(own) if m is not None]
        pts += [fr.pts for fr in frs]
    assert len(got) == N and all(m is not None for m in got)
    assert len(rend.segments) < len(sent) < N  # re-allocated inside segments, and some maps held for frames
    assert {m.frame_index for m in got} == set(sent)  # every map is one that was sent, with its frame's index
    for m, f in zip(got, expect):
        np.testing.assert_array_equal(m.flat, f)
    assert set(np.diff(pts).tolist()) == {90000 // FPS}  # MPEG-TS 90 kHz clock: the source's frame spacing
    assert any(b"\x00\x00" in m.to_bytes()[4:] for m in got)  # payloads that need emulation prevention


def _assert_encodes_losslessly(decoded, picture: np.ndarray) -> None:
    """The decoded 4:2:0 planes equal the packager's RGB picture converted as the encoder converts it
    (BT.601 limited range for this small clip): qp 0 keeps every YUV sample."""
    from bbmr_stream.colour import planes_of, rgb_to_yuv420

    for got, want in zip(planes_of(decoded, "bt601", False), rgb_to_yuv420(picture, "bt601", False)):
        np.testing.assert_array_equal(got, want)


def test_lossless_tiles_equal_packager(packaged):
    src, out = packaged
    man = load(out)
    rend = man.renditions[0]
    grid = BlockGrid(H, W)
    rows, cols = atlas_rows(grid, (2, 4, 8)), atlas_cols(grid, (2, 4, 8))
    frames = _source_frames(src)
    i = 0
    for seg in rend.segments:
        for (fr,), m in segment_frames(out / seg.file, 1):
            _assert_encodes_losslessly(fr, pack_frame(to_tensor(frames[i]), grid, m.flat, rows, cols))
            i += 1
    assert i == N


def test_manifest_and_playlists(packaged):
    _, out = packaged
    man = load(out)
    assert man.source["frames"] == N and man.container == "mpegts"
    assert [r.name for r in man.renditions] == ["bbmr_crf23", "uniform_crf23"]
    for r in man.renditions:
        assert r.bitrate_kbps > 0 and r.psnr_y is not None and r.psnr_y_upscaler == "bicubic"
        assert 0 < r.es_kbps < r.bitrate_kbps  # the coded video without the MPEG-TS / PES overhead
        assert sum(s.frames for s in r.segments) == N
        assert (out / r.playlist).exists()
    assert "bbmr_crf23.m3u8" in (out / "master.m3u8").read_text()
    # lossless LR: BBMR reconstructs better than uniform at the same LR pixel count
    assert man.renditions[0].psnr_y > man.renditions[1].psnr_y
    assert not list(out.parent.glob(".stream.tmp-*"))


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "truncated", "audio_only"])
def test_bad_input(tmp_path, capsys, kind):
    p = tmp_path / "in.mp4"
    if kind == "text":
        p.write_text("hello")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        _clip(p)
        p.write_bytes(p.read_bytes()[:300])
    elif kind == "audio_only":
        with av.open(str(p), "w") as out:
            s = out.add_stream("aac", rate=8000)
            for i in range(5):
                f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                f.sample_rate, f.pts = 8000, i * 1024
                for pk in s.encode(f):
                    out.mux(pk)
            for pk in s.encode(None):
                out.mux(pk)
    out = tmp_path / "stream"
    assert main([str(p), "--out", str(out), "--scorer", "bicubic"]) == 2
    err = capsys.readouterr().err
    assert "bbmr-package: error:" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".stream.tmp-*"))


def test_fmp4_and_mpegts_carry_the_same_video(packaged, tmp_path):
    """The same rungs as ``packaged`` in fMP4 (the default): identical decoded frames, scale maps and coded
    video; fewer bytes; the init segment counted in the rate and named by EXT-X-MAP."""
    src, ts = packaged
    out = tmp_path / "fmp4"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--realloc", "every", "--segment", "0.4",
                 "--layout", "atlas", "--ladder", "bbmr:23,uniform:23", "--lossless", "--upscaler", "bicubic",
                 "--device", "cpu"]) == 0
    a, b = load(ts), load(out)
    assert (a.container, b.container) == ("mpegts", "fmp4")
    for ra, rb in zip(a.renditions, b.renditions):
        assert ra.init is None and rb.init is not None and rb.init.file == f"{rb.name}_init.mp4"
        assert (out / rb.init.file).stat().st_size == rb.init.bytes
        assert f'#EXT-X-MAP:URI="{rb.init.file}"' in (out / rb.playlist).read_text()
        seg_bytes = sum(s.bytes for s in rb.segments)
        assert rb.bitrate_kbps == pytest.approx((seg_bytes + rb.init.bytes) * 8 / (N / FPS) / 1000, abs=0.01)
        assert rb.bitrate_kbps < ra.bitrate_kbps
        peak = max((s.bytes + rb.init.bytes * s.duration_s / (N / FPS)) * 8 / s.duration_s for s in rb.segments)
        assert f"BANDWIDTH={int(round(peak))},AVERAGE-BANDWIDTH={int(round(rb.bitrate_kbps * 1000))}," \
               f"RESOLUTION={rb.lr_width}x{rb.lr_height}" in (out / "master.m3u8").read_text()
        for sa, sb in zip(ra.segments, rb.segments):
            fa = list(segment_frames(ts / sa.file, 1))
            fb = list(segment_frames(out / sb.file, 1, init_path(out, rb)))
            assert len(fa) == len(fb) == sa.frames == sb.frames
            for (x,), (y,) in zip((f for f, _ in fa), (f for f, _ in fb)):
                assert np.array_equal(x.to_ndarray(), y.to_ndarray())
            assert [m and m.flat.tolist() for _, m in fa] == [m and m.flat.tolist() for _, m in fb]


def test_existing_out_refused(packaged, capsys):
    src, out = packaged
    assert main([str(src), "--out", str(out), "--scorer", "bicubic"]) == 2
    assert "--force" in capsys.readouterr().err


def test_planes_layout_lossless(tmp_path):
    from bbmr_stream.planes import pack_planes, split_planes, stack_planes

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--layout", "planes", "--segment", "0.4",
                 "--ladder", "bbmr:23", "--lossless", "--upscaler", "bicubic", "--device", "cpu"]) == 0
    man = load(out)
    rend = man.renditions[0]
    # one picture: the x2 plane cropped to the 320x200 frame (160x100) on top, x4 (80x50) and x8 (40x26) below
    assert rend.layout == "planes" and rend.pictures == [[160, 150]]
    grid = BlockGrid(H, W)
    frames = _source_frames(src)
    i = 0
    assert man.container == "fmp4" and rend.init is not None  # the default
    for seg in rend.segments:
        with _open_segment(out, rend, seg) as c:
            assert len(c.streams.video) == 1
        for (fr,), m in segment_frames(out / seg.file, 1, init_path(out, rend)):
            assert m is not None and m.frame_index <= i
            planes = pack_planes(to_tensor(frames[i]), grid, m.flat, (2, 4, 8))
            assert [p.shape[:2] for p in planes] == [(100, 160), (50, 80), (26, 40)]
            pic = stack_planes(planes, grid, (2, 4, 8))
            assert all(np.array_equal(a, b) for a, b in zip(split_planes(pic, grid, (2, 4, 8)), planes))
            _assert_encodes_losslessly(fr, pic)
            i += 1
    assert i == N
    assert rend.psnr_y > 20


def test_map_reuse_modes():
    from packager.reuse import MapReuse

    g = BlockGrid(H, W)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    shifted = np.roll(img, 3, axis=1)  # same content, moved: no re-allocation in auto
    flat = np.full_like(img, 90)  # a scene cut
    for mode, expect in (("every", [True, True, True, True]), ("gop", [True, False, False, True]),
                         ("auto", [True, False, True, True])):
        r = MapReuse(mode, g)
        got = []
        for frame, start in ((img, False), (shifted, False), (flat, False), (flat, True)):
            need = r.needs_realloc(frame, start)
            got.append(need)
            if need:
                r.allocated(frame)
        assert got == expect, mode


def test_audio_passed_through_once(tmp_path):
    src = tmp_path / "av.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = 256, 128, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        rng = np.random.default_rng(1)
        for i in range(6):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for i in range(10):
            af = av.AudioFrame.from_ndarray(rng.standard_normal((1, 1024)).astype(np.float32) * 0.1,
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, i * 1024
            for p in a.encode(af):
                out.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                out.mux(p)
    out = tmp_path / "stream"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--ladder", "bbmr:30,uniform:30",
                 "--no-measure", "--segment", "0.4"]) == 0
    man = load(out)
    assert len(man.audio) == 1  # an HLS alternative audio rendition (packager/audio.py), the source's AAC as is
    track = man.audio[0]
    assert (track.source_stream, track.copied, track.codecs, track.channels, track.default, track.language) == (
        0, True, "mp4a.40.2", 2, True, None)
    text = (out / track.playlist).read_text()
    assert "#EXT-X-ENDLIST" in text
    init = [ln.split('"')[1] for ln in text.splitlines() if ln.startswith("#EXT-X-MAP:URI=")]
    head = (out / init[0]).read_bytes() if init else b""
    for seg in [ln for ln in text.splitlines() if ln and not ln.startswith("#")]:
        with av.open(io.BytesIO(head + (out / seg).read_bytes())) as c:  # audio only, decodes alone
            assert c.streams.audio and not c.streams.video
            assert sum(f.samples for f in c.decode(audio=0)) > 0
    master = (out / "master.m3u8").read_text().splitlines()
    media = [ln for ln in master if ln.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(media) == 1 and all(a in media[0] for a in ('GROUP-ID="audio"', "DEFAULT=YES", 'CHANNELS="2"',
                                                           f'NAME="{track.name}"', f'URI="{track.playlist}"'))
    variants = [ln for ln in master if ln.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == len(man.renditions)
    for v in variants:  # every variant plays with the group: its CODECS and BANDWIDTH count the audio
        assert 'AUDIO="audio"' in v and "mp4a.40.2" in v
        assert int(v.split("BANDWIDTH=")[1].split(",")[0]) >= track.peak_kbps * 1000
    assert not (out / "audio.ts").exists()


def test_plain_rung_plays_anywhere(tmp_path):
    from player.cli import main as play

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--segment", "0.4", "--ladder",
                 "bbmr:23,plain:23", "--upscaler", "bicubic", "--measure-frames", "0"]) == 0
    man = load(out)
    plain = [r for r in man.renditions if r.kind == "plain"][0]
    assert plain.pictures == [[W, H]] and plain.weights is None and plain.psnr_y > 30
    with _open_segment(out, plain, plain.segments[0]) as c:  # an ordinary H.264 stream without our SEI
        fr = next(c.decode(video=0))
        assert scalemap_of(fr) is None and (fr.width, fr.height) == (W, H)
    rep = tmp_path / "r.json"
    assert play([str(out), "--headless", "--rendition", plain.name, "--reference", str(src), "--report", str(rep),
                 "--niqe-every", "0"]) == 0
    r = json.loads(rep.read_text())
    assert abs(r["pooled_metrics"]["psnr_y"]["mean"] - plain.psnr_y) < 0.05


def test_ten_bit_hd_input(tmp_path):
    """10-bit 4:2:0 input, tagged BT.709: converted to 8-bit RGB with BT.709, which the manifest records."""
    from bbmr_stream.decode import probe

    src = tmp_path / "ten.mkv"
    rng = np.random.default_rng(2)
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 256, 128, "yuv420p10le"
        s.codec_context.colorspace = 1  # BT.709
        s.codec_context.color_range = 1
        for i in range(4):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p10le", dst_colorspace="ITU709")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    info = probe(str(src))
    assert info.bit_depth == 10 and info.matrix == "bt709"
    out = tmp_path / "stream"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--ladder", "bbmr:20", "--upscaler",
                 "bicubic", "--segment", "0.4"]) == 0
    man = load(out)
    assert man.source["matrix"] == "bt709" and man.source["frames"] == 4


def test_vfr_timestamps_kept(tmp_path):
    src = tmp_path / "vfr.mkv"
    pts_ms = [0, 40, 80, 200, 240, 400, 440, 480]  # irregular frame spacing
    rng = np.random.default_rng(3)
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 256, 128, "yuv420p"
        s.codec_context.time_base = __import__("fractions").Fraction(1, 1000)
        s.codec_context.options = {"bf": "0"}
        for t in pts_ms:
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), format="rgb24")
            f.pts = t
            f.time_base = s.codec_context.time_base
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    out = tmp_path / "stream"
    assert main([str(src), "--out", str(out), "--scorer", "bicubic", "--ladder", "bbmr:28", "--no-measure"]) == 0
    man = load(out)
    got = []
    for seg in man.renditions[0].segments:
        with _open_segment(out, man.renditions[0], seg) as c:
            got += [float(f.pts * f.time_base) for f in c.decode(video=0)]
    rel = [round((g - got[0]) * 1000) for g in got]
    assert rel == pts_ms


def test_planes_keep_a_margin_of_real_content_around_tiles():
    """Tiles are the same with or without the margin; the margin is the frame's own downscale at that scale,
    grey beyond it."""
    from bbmr_stream.blocks import pad_tensor
    from bbmr_stream.downscale import downscale_blocks, to_uint8_tiles
    from bbmr_stream.planes import pack_planes
    from bbmr_stream.resize import downscale, levels8

    grid = BlockGrid(256, 384)
    x = torch.rand(1, 3, 256, 384)
    f = np.array([2, 8, 8, 8, 8, 8], np.uint8)  # one x2 block at the top left
    tiles = to_uint8_tiles(downscale_blocks(pad_tensor(x, 128), grid, f))
    for m in (0, 4, 16):
        x2 = pack_planes(x, grid, f, (2, 4, 8), margin=m)[0]  # 192x128 plane of scale 2
        np.testing.assert_array_equal(x2[:64, :64], tiles[0])
        full = levels8(downscale(x, 2))[0].permute(1, 2, 0).to(torch.uint8).numpy()
        np.testing.assert_array_equal(x2[:64 + m, :64 + m], full[:64 + m, :64 + m])
        assert (x2[64 + m:] == 128).all() and (x2[:, 64 + m:] == 128).all()
