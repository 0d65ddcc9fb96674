"""Rung families (bbmr_stream.family), the auto ladder's choice (packager.ladder), the RD study's BD-rates
(packager.study, ``bbmr-bench``: packager.study_cli), HLS playlists and plain / plain-sr rungs end to end."""

import json
import subprocess

import m3u8
import numpy as np
import pytest
import torch

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.errors import InputError
from bbmr_stream.family import FAMILIES, Geometry, make_family, parse_ladder, parse_rung
from packager.ladder import Point, candidate_specs, choose, efficient, pareto, sample_segments, shortfall
from tests.media import H, W, _clip


@pytest.mark.parametrize("item", ["plain:23", "plain:640x360:28", "plain-sr:2:18", "plain-sr:4:33", "uniform:12",
                                  "bbmr:23.5"])
def test_rung_text_round_trip(item):
    spec = parse_rung(item)
    assert parse_rung(spec.text) == spec and spec.family in FAMILIES


@pytest.mark.parametrize("bad", ["plain", "plain:x:23", "plain:10x:3", "plain-sr:3:23", "plain-sr:23", "bbmr:abc",
                                 "bbmr:99", "nope:23", ""])
def test_bad_rungs(bad):
    with pytest.raises(InputError):
        parse_ladder(bad)


def test_duplicate_rungs():
    with pytest.raises(InputError):
        parse_ladder("plain:23,plain:23")


def test_odd_plain_size_made_even():
    assert parse_rung("plain:641x361:23").size == (642, 362)


@pytest.mark.parametrize("item", ["plain:23", "plain:160x100:23", "plain-sr:2:23", "plain-sr:4:23", "uniform:23",
                                  "bbmr:23"])
def test_every_family_round_trips_its_pictures(item):
    """pictures() sizes match sizes(), and reconstructing the uncoded pictures with bicubic gives a frame of
    the source size close to the source (the families agree with each other on geometry)."""
    from skimage import data

    from bbmr_stream.upscale import BicubicUpscaler

    img = np.ascontiguousarray(data.astronaut()[:H, :W])
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    geo = Geometry(BlockGrid(H, W), (2, 4, 8), 4, "planes")
    fam = make_family(parse_rung(item), geo)
    f = np.array([2, 4, 8, 8, 4, 8], np.uint8) if fam.allocates else None
    pics = fam.pictures(x, f)
    assert [(p.shape[1], p.shape[0]) for p in pics] == fam.sizes()
    from bbmr_stream.scalemap import ScaleMap

    smap = ScaleMap.from_bytes(fam.scale_map(f, 0)) if fam.carries_map else None
    rec = fam.reconstruct(pics, smap, BicubicUpscaler())
    assert rec.shape == img.shape and rec.dtype == np.uint8
    d = rec.astype(float) - img
    if item == "plain:23":
        assert not d.any()  # full size, uncoded: the frame itself
    else:
        assert 10 * np.log10(255**2 / np.mean(d * d)) > 18


def _pts(rows, family="plain"):
    return [Point(f"{family}:{i}", f"{family}_{i}", family, 10, 10, 23, kbps, q) for i, (kbps, q) in enumerate(rows)]


def test_pareto_and_efficient():
    pts = _pts([(100, 30), (150, 29), (200, 33), (400, 33.5), (800, 37), (1600, 37.2)])
    assert [p.kbps for p in pareto(pts)] == [100, 200, 400, 800, 1600]
    sr = _pts([(300, 33.1)], "plain-sr")  # not dominated, but under plain's line from 200 to 400 kbps
    assert shortfall(sr[0], pareto(pts)) == pytest.approx(33 + 0.5 * np.log(1.5) / np.log(2) - 33.1)
    assert shortfall(Point("a", "a", "plain", 1, 1, 1, 50, 20), pareto(pts)) is None
    assert sr[0] in pareto(pts + sr) and sr[0] not in efficient(pts + sr)
    cheap = _pts([(99, 29.5)], "plain-sr")  # 1 % cheaper than plain's lowest point, 0.5 dB worse: not a rung
    assert cheap[0] in pareto(pts + cheap) and cheap[0] not in efficient(pts + cheap)


def test_choose_spaces_rungs_and_stops_at_saturation():
    pts = _pts([(100, 30), (120, 30.6), (160, 31.5), (250, 33), (400, 35), (700, 37), (1200, 38.5), (2000, 39.5),
                (3500, 39.7)])
    got = choose(pts)
    rates = [p.kbps for p in got]
    assert rates[0] == 100 and all(b >= 1.5 * a for a, b in zip(rates, rates[1:]))
    assert 3500 not in rates and rates[-1] == 2000  # +0.2 dB for 1.75x the bits: saturated
    short = [p.kbps for p in choose(pts, max_rungs=3)]
    assert len(short) == 3 and short[0] == 100 and short[-1] == 2000  # fewer rungs still span the range


def test_choose_spans_a_steep_curve():
    """PSNR-Y that keeps rising fast with rate (a full-size rung gaining 4 dB per CRF step) still gets rungs
    across the whole range, not just its two ends."""
    pts = _pts([(100, 22), (180, 23.5), (300, 25.6), (430, 27), (630, 29), (980, 30.9), (1400, 35.2), (1960, 39.7),
                (2650, 43.8), (3600, 47.9)])
    rates = [p.kbps for p in choose(pts)]
    assert rates[0] == 100 and rates[-1] == 3600 and 6 <= len(rates) <= 8


def test_rd_shortfall_and_rate_at(tmp_path, capsys):
    """`bbmr-bench rd-shortfall`: a family point's gap under the plain front, and where plain reaches its best."""
    import json as _json

    from packager.ladder import points_json
    from packager.study import rate_at
    from packager.study_cli import main as bench

    plain = _pts([(100, 30), (400, 34)])
    assert rate_at(plain, 32) == pytest.approx(200)  # half way in PSNR = the geometric middle in rate
    assert rate_at(plain, 35) is None
    pts = plain + _pts([(200, 31), (300, 31.5)], "bbmr")
    d = tmp_path / "clip"
    d.mkdir()
    (d / "rd.json").write_text(_json.dumps({"meta": {}, "points": points_json(pts)}))
    assert bench(["rd-shortfall", str(d)]) == 0
    out = capsys.readouterr().out
    assert "1.00" in out and "31.50 dB at 300 kbps" in out  # 32 - 31 dB at 200 kbps
    assert bench(["rd-shortfall", str(d), "--family", "uniform"]) == 2


def test_choose_prefers_the_rung_that_asks_less_of_the_client_when_it_is_as_good():
    """A uniform rung 0.01 dB above a plain-sr rung of the same rate (the same pictures since planes v2) is not
    shipped in its place; a bbmr rung 0.3 dB better is."""
    plain = _pts([(100, 30), (400, 34), (800, 36)])
    sr = _pts([(200, 32.0)], "plain-sr")
    uni = _pts([(201, 32.01)], "uniform")
    assert [p.family for p in choose(plain + sr + uni)] == ["plain", "plain-sr", "plain", "plain"]
    bbmr = _pts([(201, 32.3)], "bbmr")
    assert "bbmr" in [p.family for p in choose(plain + sr + uni + bbmr)]


def test_choose_takes_the_winning_family_at_each_rate():
    plain = _pts([(100, 30), (200, 32), (400, 34), (800, 36)])
    sr = _pts([(100, 31), (200, 33)], "plain-sr")  # wins at low rates only
    got = choose(plain + sr)
    assert [p.family for p in got][:2] == ["plain-sr", "plain-sr"] and got[-1].family == "plain"
    assert all(shortfall(p, plain) is None or shortfall(p, plain) <= 0 for p in got)


def test_candidates_cover_every_family():
    specs = candidate_specs(1920, 1080)
    fams = {s.family for s in specs}
    assert fams == set(FAMILIES)
    sizes = {s.size for s in specs if s.family == "plain"}
    assert {None, (1280, 720), (960, 540), (640, 360), (480, 270)} == sizes
    assert len({s.name for s in specs}) == len(specs)


def test_sample_segments():
    assert sample_segments(3, 3) is None
    assert sample_segments(30, 3) == [5, 15, 25]


def test_bd_rate_of_a_shifted_curve():
    """packager.study.bd uses the bjontegaard package: a curve needing 20 % fewer bits everywhere gives -20 %."""
    from packager.study import bd

    plain = _pts([(100, 30), (200, 32), (400, 34), (800, 36)])
    better = [Point("t", f"t{i}", "bbmr", 1, 1, 1, p.kbps * 0.8, p.psnr_y) for i, p in enumerate(plain)]
    r = bd(plain, better)
    assert r["bd_rate_pct"] == pytest.approx(-20.0, abs=0.1) and r["bd_psnr_db"] > 0
    assert bd(plain, _pts([(5000, 50), (6000, 51)], "bbmr"))["bd_rate_pct"] is None  # no overlap: not guessed


def test_plain_and_plain_sr_rungs_package_play_and_validate(tmp_path):
    """An explicit ladder of every family packages; the HLS playlists validate (m3u8) and FFmpeg plays the
    master playlist's plain rung; the player plays each rung and its report names the family."""
    import imageio_ffmpeg

    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from player.cli import main as play

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--scorer", "bicubic", "--segment", "0.4", "--upscaler", "bicubic",
                    "--ladder", "plain:160x100:23,plain-sr:2:23,uniform:23,bbmr:23", "--device", "cpu",
                    "--measure-frames", "0"]) == 0
    man = load(out)
    assert [r.kind for r in man.renditions] == ["plain", "plain-sr", "uniform", "bbmr"]
    plain, psr = man.renditions[0], man.renditions[1]
    assert (plain.lr_width, plain.lr_height) == (160, 100) and (psr.lr_width, psr.lr_height) == (160, 100)
    master = m3u8.load(str(out / "master.m3u8"))
    assert len(master.playlists) == 4
    for pl in master.playlists:
        si = pl.stream_info
        assert si.bandwidth >= si.average_bandwidth > 0 and si.codecs.startswith("avc1.") and si.resolution
        media = m3u8.load(str(out / pl.uri))
        assert media.target_duration >= 1 and media.is_endlist
        assert all(round(s.duration) <= media.target_duration for s in media.segments)
    bws = [pl.stream_info.average_bandwidth for pl in master.playlists]
    assert bws == sorted(bws)
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(out / "master.m3u8"),
                        "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rend in man.renditions:
        rep = tmp_path / f"{rend.name}.json"
        assert play([str(out), "--headless", "--rendition", rend.name, "--reference", str(src), "--report", str(rep),
                     "--niqe-every", "0", "--upscaler", "bicubic"]) == 0
        d = json.loads(rep.read_text())
        assert {f["metrics"]["family"] for f in d["frames"]} == {rend.kind}
        assert d["concealed_frames"] == 0
        assert abs(d["pooled_metrics"]["psnr_y"]["mean"] - rend.psnr_y) < 0.05  # player and packager agree


def test_jointsr_cannot_play_plain_sr(tmp_path):
    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from player.cli import main as play

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--segment", "0.4", "--ladder", "plain-sr:2:23", "--upscaler",
                    "bicubic", "--no-measure", "--device", "cpu"]) == 0
    assert load(out).renditions[0].kind == "plain-sr"
    assert play([str(out), "--headless", "--upscaler", "jointsr"]) == 2


def test_rd_study_auto_ladder_and_check(tmp_path, capsys):
    """`bbmr-bench rd` on a generated clip (plain and plain-sr families), then `bbmr-package --ladder auto
    --study rd.json` ships the rungs the study chose, and `bbmr-bench ladder-check` finds the packaged ladder
    nowhere below the plain front (same frames, same encodes)."""
    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from packager.study_cli import main as bench

    src = tmp_path / "in.mp4"
    _clip(src)
    study = tmp_path / "rd"
    assert bench(["rd", str(src), "--out", str(study), "--frames", "12", "--measure-frames", "4", "--niqe-frames",
                  "0", "--families", "plain,plain-sr", "--segment", "0.4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == (study / "rd.md").read_text() + "\n"  # the table, nothing else on stdout
    d = json.loads((study / "rd.json").read_text())
    assert len(d["points"]) == 35 and (study / "rd.png").stat().st_size > 0 and "plain-sr" in d["bd_vs_plain"]
    assert d["meta"]["conventions"]["measured_frames"] == [0, 4, 7, 11]
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--ladder", "auto", "--study", str(study / "rd.json"),
                    "--segment", "0.4", "--measure-frames", "4", "--device", "cpu"]) == 0
    man = load(out)
    by_name = {p["name"]: p for p in d["points"]}
    assert [r.name for r in man.renditions] == d["auto_ladder"]
    dur = man.source["duration_s"]
    for r in man.renditions:  # the same encode gives the same bytes (the TS muxer may add a packet) and quality
        assert abs(r.bitrate_kbps - by_name[r.name]["kbps"]) <= 2 * 188 * 8 * len(r.segments) / dur / 1000
        assert r.psnr_y == pytest.approx(by_name[r.name]["psnr_y"], abs=0.01)  # SR float results vary ~1e-3
    capsys.readouterr()
    assert bench(["ladder-check", str(out), str(study / "rd.json"), "--json", str(tmp_path / "check.json")]) == 0
    chk = json.loads((tmp_path / "check.json").read_text())
    assert chk["max_below_plain_front_db"] is None or chk["max_below_plain_front_db"] <= 0.1
    other = tmp_path / "other.mp4"
    _clip(other)
    assert package([str(other), "--out", str(tmp_path / "s2"), "--ladder", "auto", "--study",
                    str(study / "rd.json"), "--max-frames", "6"]) == 2  # a study of another run is refused


def test_run_study_prints_nothing_and_returns_what_it_wrote(tmp_path, capsys):
    """The study as a library: rd.json, rd.md and rd.png written, the result returned, nothing on stdout or
    stderr (no progress object: silent); the anchor is the plain family."""
    from bbmr_stream.family import Plain
    from packager.study import StudyConfig, run_study

    src = tmp_path / "in.mp4"
    _clip(src)
    res = run_study(StudyConfig(str(src), str(tmp_path / "rd"), frames=4, measure_frames=2, niqe_frames=0,
                                families=(Plain.name,), segment=0.4, preset="ultrafast", device="cpu"))
    assert capsys.readouterr() == ("", "")
    assert {p.family for p in res.points} == {Plain.name} and len(res.points) == 25
    assert (res.out / "rd.md").read_text() == res.markdown and (res.out / "rd.png").stat().st_size > 0
    d = json.loads((res.out / "rd.json").read_text())
    assert d["auto_ladder"] == res.result["auto_ladder"] and set(d["bd_vs_plain"]) == {"all"}


def test_look_panel(tmp_path, capsys):
    from PIL import Image

    from packager.study_cli import main as bench

    src = tmp_path / "in.mp4"
    _clip(src)
    png = tmp_path / "look.png"
    assert bench(["look", str(src), "--rungs", "plain:160x100:30,bbmr:23", "--out", str(png), "--frames", "12",
                  "--frame", "5", "--crop", "0,0,128,96", "--scorer", "bicubic", "--device", "cpu"]) == 0
    im = Image.open(png)
    assert im.size == (3 * 256 + 2 * 4, 192 + 28)
    out = capsys.readouterr().out
    assert "plain_160x100_crf30 (bicubic)" in out and "bbmr_crf23" in out
    assert bench(["look", str(src), "--rungs", "bbmr:23", "--out", str(png), "--frames", "12", "--frame", "50"]) == 2


def test_encode_groups_bound_the_live_encoders():
    from packager.pipeline import MAX_ENCODERS, encode_groups

    specs = parse_ladder(",".join([f"plain:{c}" for c in range(10, 35)] + [f"bbmr:{c}" for c in range(12, 24)]))
    groups = encode_groups(specs)
    assert [s.family for s in groups[0]] == ["bbmr"] * 12  # one scorer pass for every BBMR rung
    assert all(len(g) <= MAX_ENCODERS for g in groups[1:]) and sum(map(len, groups)) == len(specs)
