"""Refined rungs (``--refine hcd``, models/hcd.py) end to end: packaged beside the unrefined ones, recorded in
the manifest, played by the unchanged player; bad option combinations are one-line errors."""

import pytest

from bbmr_stream.family import parse_ladder
from bbmr_stream.manifest import load
from models.hcd import HCDConfig
from packager import PackageConfig, package
from packager.cli import main as package_cli
from player import PlayConfig, play
from tests.media import _clip

REFINE = HCDConfig(steps=2)
LADDER = "plain-sr:2:30,plain-sr:2:30:hcd,plain-sr:2:36:hcd,plain:30"


def _package(d, ladder: str, upscaler: str, refine: HCDConfig, max_frames: int | None = None):
    src = d / "in.mp4"
    _clip(src)
    out = d / "stream"
    man = package(PackageConfig(str(src), str(out), segment=0.4, upscaler=upscaler, device="cpu", measure_frames=0,
                                refine=refine, max_frames=max_frames), tuple(parse_ladder(ladder)))
    return src, out, man


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    return _package(tmp_path_factory.mktemp("refine"), LADDER, "fast", REFINE)


@pytest.fixture(scope="module")
def refined_bbmr(tmp_path_factory):  # through the shipped JointSR (the family's client model), LR stage, 1 step
    return _package(tmp_path_factory.mktemp("refine_bbmr"), "bbmr:30,bbmr:30:hcd", "auto",
                    HCDConfig(steps=1, hr=False), max_frames=4)


@pytest.fixture(scope="module")
def refined_uniform(tmp_path_factory):  # through OmniSR-light x4 (no FastSR x8 ships: uniform loads every scale)
    return _package(tmp_path_factory.mktemp("refine_uniform"), "uniform:30,uniform:30:hcd", "omnisr",
                    HCDConfig(steps=1))


def test_refined_rungs_are_recorded(refined):
    _, out, man = refined
    by = {r.name: r for r in load(out).renditions}
    assert set(by) == {"plainsr_x2_crf30", "plainsr_x2_crf30_hcd", "plainsr_x2_crf36_hcd", "plain_crf30"}
    assert by["plainsr_x2_crf30_hcd"].refine == by["plainsr_x2_crf36_hcd"].refine == "hcd2"
    assert by["plainsr_x2_crf30"].refine is None and by["plain_crf30"].refine is None
    conv = man.conventions["refine"]
    assert conv["config"]["steps"] == 2
    assert conv["upscalers"] == {"plainsr_x2_crf30_hcd": "fast", "plainsr_x2_crf36_hcd": "fast"}
    (loss,) = conv["loss"].values()  # the two CRFs share one refined picture per frame
    assert loss["frames"] == man.source["frames"]
    assert loss["mse_y_after"] < loss["mse_y_before"]
    timing = man.conventions["timing_s"]
    assert timing["pack"] < timing["refine"]  # the refinement's seconds are its own, not the packing stage's
    # the refined pictures differ from the plain-sr ones (same size, other bytes)
    a, b = by["plainsr_x2_crf30"], by["plainsr_x2_crf30_hcd"]
    assert (a.lr_width, a.lr_height) == (b.lr_width, b.lr_height)
    assert [s.bytes for s in a.segments] != [s.bytes for s in b.segments]


@pytest.mark.parametrize("which, label, name, upscaler", [
    ("refined_uniform", "hcd1", "uniform_crf30_hcd", "omnisr"),  # through OmniSR-light x4 over the plane
    ("refined_bbmr", "hcd1-lr", "bbmr_crf30_hcd", "jointsr"),  # the stacked planes through JointSR
])
def test_refined_block_rung(request, which, label, name, upscaler):
    """A refined block-family rung: the same pictures (sizes, maps) as the unrefined one, other bytes, every
    frame refined to a lower loss, through the family's client model."""
    _, out, man = request.getfixturevalue(which)
    a, b = load(out).renditions
    assert (a.refine, b.refine, b.name) == (None, label, name)
    assert a.pictures == b.pictures and [s.bytes for s in a.segments] != [s.bytes for s in b.segments]
    (loss,) = man.conventions["refine"]["loss"].values()
    assert loss["upscaler"] == upscaler and loss["mse_y_after"] < loss["mse_y_before"]
    assert loss["frames"] == man.source["frames"]


@pytest.mark.parametrize("which, name, upscaler", [("refined", "plainsr_x2_crf30_hcd", "fast"),
                                                    ("refined_uniform", "uniform_crf30_hcd", "omnisr"),
                                                    ("refined_bbmr", "bbmr_crf30_hcd", "jointsr")])
def test_refined_rung_plays_in_the_unchanged_player(request, which, name, upscaler):
    src, out, _ = request.getfixturevalue(which)
    sr = next(r for r in load(out).renditions if r.name == name)
    rep = play(PlayConfig(str(out), rendition=sr.name, headless=True, reference=str(src), niqe_every=0, device="cpu",
                          upscaler=upscaler))
    assert rep.to_dict()["pooled_metrics"]["psnr_y"]["mean"] == pytest.approx(sr.psnr_y, abs=0.02)


def test_refined_through_the_per_title_model(tmp_path):
    """--refine hcd --adapt: the refined rung's model is fine-tuned on its first-pass pictures, then the rung is
    refined again through that model (the client's network) and shipped; the unchanged player plays it with the
    model, at the manifest's PSNR-Y."""
    from models.adapt import AdaptConfig

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    adapt = AdaptConfig(steps=25, patch=32, batch=4, warmup=5, seed=1)
    man = package(PackageConfig(str(src), str(out), segment=0.4, upscaler="fast", device="cpu", measure_frames=0,
                                refine=REFINE, adapt=adapt), tuple(parse_ladder("plain-sr:2:30:hcd,plain:30")))
    (rend,) = [r for r in man.renditions if r.kind == "plain-sr"]
    assert rend.refine == "hcd2" and rend.models, rend
    conv = man.conventions["refine"]
    assert conv["upscalers"][rend.name].startswith("fast+title:models/"), conv["upscalers"]
    assert "refine_title" in man.conventions["timing_s"]
    titled = [v for v in conv["loss"].values() if "+title:" in v["upscaler"]]
    assert titled and all(v["mse_y_after"] < v["mse_y_before"] for v in titled)
    # the same rung without --adapt ships other pictures (refined through the generic network)
    plain = package(PackageConfig(str(src), str(tmp_path / "generic"), segment=0.4, upscaler="fast", device="cpu",
                                  measure_frames=4, refine=REFINE), tuple(parse_ladder("plain-sr:2:30:hcd")))
    seg = rend.segments[0].file
    assert (out / seg).read_bytes() != (tmp_path / "generic" / plain.renditions[0].segments[0].file).read_bytes()
    rep = play(PlayConfig(str(out), rendition=rend.name, headless=True, niqe_every=0, reference=str(src),
                          device="cpu", strict=True))
    assert rep.extra.get("model_fallbacks", []) == []
    mean = rep.to_dict()["pooled_metrics"]["psnr_y"]["mean"]
    assert abs(mean - rend.psnr_y) < 0.01, (mean, rend.psnr_y)  # every frame measured, with the model


@pytest.mark.parametrize("args, msg", [
    (["--ladder", "plain:30:hcd"], "refines the LR of plain-sr, uniform, bbmr rungs only"),
    (["--ladder", "bbmr:30:hcd", "--upscaler", "fast"], "BBMR rungs are refined through JointSR"),
    (["--ladder", "bbmr:30:hcd", "--layout", "atlas"], "refined in the planes layout"),
    (["--ladder", "plain-sr:2:30", "--refine-steps", "3"], "need --refine hcd"),
    (["--ladder", "plain:30", "--refine", "hcd"], "no rung it refines"),
    (["--ladder", "plain-sr:2:30", "--refine", "hcd", "--refine-eps", "-1"], "--refine-eps"),
    (["--ladder", "plain-sr:2:30", "--refine", "hcd", "--refine-steps", "0"], "--refine-steps 0: 1..100"),
    (["--ladder", "plain-sr:2:30:hcd", "--upscaler", "jointsr"], "not a per-scale model"),
    (["--ladder", "plain-sr:2:30,plain-sr:2:30:hcd", "--refine", "hcd"], "duplicate rungs"),
])
def test_bad_refine_options_are_one_line_errors(tmp_path, capsys, args, msg):
    src = tmp_path / "in.mp4"
    _clip(src)
    assert package_cli([str(src), "--out", str(tmp_path / "s"), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
