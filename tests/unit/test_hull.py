"""The hull search (packager.hull) on synthetic rate-quality surfaces with a known dense front."""

from __future__ import annotations

import math

import numpy as np
import pytest

from packager.hull import HullConfig, Line, lines_of, rate_targets, search
from packager.ladder import DENSE_FRACTIONS, HULL_RATIO, Point, candidate_specs, choose, pareto, shortfall

W, H = 1280, 720


def surface(noise_db: float = 0.0, seed: int = 0):
    """A plain title whose size ``f`` (fraction of the source) at CRF ``c`` costs ``3000 f^1.6 2^(-c/6)`` kbps
    and gives ``40 + 6 log2 f - 300 f^2 / kbps`` dB: concave in log rate, a ceiling that falls with the size (a
    downscale loses detail) and a penalty that grows with the pixels to pay for, so smaller sizes win at low
    rates and the hull changes size along the ladder, as in a real title. ``noise_db``: seeded noise."""
    rng = np.random.default_rng(seed)
    table = {}
    for spec in candidate_specs(W, H, ("plain",), plain_crfs=tuple(range(18, 52)), fractions=DENSE_FRACTIONS):
        w, h = spec.size or (W, H)
        f = w / W
        kbps = 3000 * f ** 1.6 * 2 ** (-spec.crf / 6)
        q = 40 + 6 * math.log2(f) - 300 * f * f / kbps
        q += float(rng.normal(0, noise_db)) if noise_db else 0.0
        table[(w, h, int(spec.crf))] = Point(spec.text, spec.name, "plain", w, h, spec.crf, kbps, q)
    return table


def run(table, config=HullConfig()):
    asked: list = []

    def measure(specs):
        asked.append(len(specs))
        return [table[((s.size or (W, H))[0], (s.size or (W, H))[1], int(s.crf))] for s in specs]

    lines = lines_of(candidate_specs(W, H, ("plain",), plain_crfs=(0,), fractions=DENSE_FRACTIONS))
    return search(lines, measure, config), asked


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_search_finds_the_dense_hull(noise):
    table = surface(noise)
    front = pareto(list(table.values()))
    res, asked = run(table)
    rungs = choose(res.points, 8, ratio=HULL_RATIO, allowed={p.name for p in res.rungs})
    assert len(rungs) >= 5
    for p in rungs:  # every rung on the dense front at its rate (0.05 dB: the acceptance's tolerance)
        assert (shortfall(p, front) or 0.0) <= 0.05, p
    sizes = {(p.width, p.height) for p in rungs}
    assert len(sizes) >= 3  # the hull changes size along the ladder: the search found where
    assert len(res.points) < 0.35 * len(table)  # far fewer points than the dense grid
    assert sum(asked) == len(res.points) and len(asked) == res.rounds


def test_no_rung_is_dominated_by_a_measured_point():
    table = surface(0.1, seed=3)
    res, _ = run(table)
    rungs = choose(res.points, 8, ratio=HULL_RATIO, allowed={p.name for p in res.rungs})
    for p in rungs:
        assert not any(q.kbps <= p.kbps and q.psnr_y > p.psnr_y for q in res.points), p


def test_bottom_rate_and_targets():
    table = surface()
    res, _ = run(table, HullConfig(min_kbps=40.0, max_rungs=6))
    assert res.min_kbps == 40.0 and len(res.targets) <= 6
    assert min(p.kbps for p in res.rungs) >= 40.0 / 1.13
    default, _ = run(table)  # default bottom: the smallest size at the last probe CRF
    assert default.min_kbps == pytest.approx(table[(320, 180, 38)].kbps)
    assert min(p.kbps for p in default.rungs) == pytest.approx(default.min_kbps, rel=0.13)


def test_min_kbps_above_the_top_is_an_input_error():
    from bbmr_stream.errors import InputError

    with pytest.raises(InputError, match="auto-min-kbps"):
        run(surface(), HullConfig(min_kbps=1e6))


def test_upper_bound_never_under_a_measured_lower_rate_point():
    ln = Line(candidate_specs(W, H, ("plain",), plain_crfs=(0,), fractions=(1.0,))[0])
    for c, kbps, q in ((20, 400.0, 34.0), (22, 300.0, 40.0), (30, 100.0, 30.0)):  # noisy: not monotone
        ln.points[c] = Point("plain:%d" % c, "p", "plain", W, H, c, kbps, q)
    assert ln.upper(350.0, (18, 51)) >= 40.0


def test_rate_targets():
    assert rate_targets(100, 100 * 1.5 ** 3, 1.5) == pytest.approx([100, 150, 225, 337.5])
    t = rate_targets(100, 400, 1.5)
    assert t[0] == 100 and t[-1] == 400 and all(b / a >= 1.3 for a, b in zip(t, t[1:]))


def test_line_estimate_and_crf_prediction():
    ln = Line(candidate_specs(W, H, ("plain",), plain_crfs=(0,), fractions=(1.0,))[0])
    for c, kbps, q in ((26, 400.0, 40.0), (38, 100.0, 34.0)):
        ln.points[c] = Point("plain:%d" % c, "p", "plain", W, H, c, kbps, q)
    assert ln.estimate(200.0, (18, 51)) == pytest.approx(37.0)  # linear in log rate between points
    assert ln.crf_for(200.0, (18, 51)) == pytest.approx(32.0)
    assert ln.crf_for(1.0, (18, 51)) == 51  # clamped
    assert ln.estimate(1e-3, (18, 51)) == -math.inf  # would need a CRF far beyond 51
    assert ln.bracket(200.0) == (26, 38) and ln.bracket(1000.0) is None


def test_dense_grid_flags():
    """``bbmr-bench rd --crfs/--fractions/--dense``: the dense plain front the ladder is checked against."""
    import argparse

    from packager.ladder import DENSE_CRFS
    from packager.study_cli import parse_crfs, parse_fractions

    assert parse_crfs("18-51") == tuple(float(c) for c in range(18, 52)) and len(DENSE_CRFS) == 34
    assert parse_crfs("23.5,18,18.0") == (18.0, 23.5)  # sorted, one of each
    assert parse_fractions("1,3/4,3/8") == (1.0, 0.75, 0.375)
    for bad in ("", "x", "40-60", "52", "18-a"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_crfs(bad)
    for bad in ("", "0", "3/2", "1/0", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_fractions(bad)
    specs = candidate_specs(W, H, ("plain",), plain_crfs=DENSE_CRFS, fractions=DENSE_FRACTIONS)
    assert len(specs) == 7 * 34 and len(lines_of(specs)) == 7


def test_dense_refuses_other_grids(tmp_path, capsys):
    from packager.study_cli import main

    assert main(["rd", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "d"), "--dense", "--crfs", "18"]) == 2
    assert "--dense sets the families" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
