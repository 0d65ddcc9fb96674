"""Rung families (bbmr_stream.family), the auto ladder's choice (packager.ladder), the RD study's BD-rates
(packager.study, ``bbmr-bench``: packager.study_cli), HLS playlists and plain / plain-sr rungs end to end."""


import numpy as np
import pytest
import torch

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.errors import InputError
from bbmr_stream.family import FAMILIES, Geometry, make_family, parse_ladder, parse_rung
from packager.ladder import Point, candidate_specs, choose, efficient, pareto, sample_segments, shortfall
from tests.media import H, W


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


def test_encode_groups_bound_the_live_encoders():
    from packager.pipeline import MAX_ENCODERS, encode_groups

    specs = parse_ladder(",".join([f"plain:{c}" for c in range(10, 35)] + [f"bbmr:{c}" for c in range(12, 24)]))
    groups = encode_groups(specs)
    assert [s.family for s in groups[0]] == ["bbmr"] * 12  # one scorer pass for every BBMR rung
    assert all(len(g) <= MAX_ENCODERS for g in groups[1:]) and sum(map(len, groups)) == len(specs)


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
