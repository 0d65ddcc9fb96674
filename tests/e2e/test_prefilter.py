"""`python -m bench.prefilter`: the continuous-picture lever against plain rungs (bench/prefilter.py)."""

import json

import numpy as np
import pytest
import torch

from bbmr_stream.resize import downscale
from bench.prefilter import Variant, blend, prefiltered
from tests.media import _clip


def _frames(n: int = 3) -> list[torch.Tensor]:
    from skimage import data

    img = np.asarray(data.astronaut()[:256, :384, :3])
    return [torch.from_numpy(np.roll(img, 5 * i, axis=1)).permute(2, 0, 1)[None].float() / 255 for i in range(n)]


@pytest.mark.parametrize("base", [1, 2])
def test_zero_rate_weight_keeps_the_plain_picture(base):
    frames = _frames(2)
    pics, shares = prefiltered(frames, Variant(base, 0.0, 1, False), crf=30, gop=4)
    assert shares == [1.0, 0.0, 0.0]
    for f, p in zip(frames, pics):
        assert p.shape[-2:] == (256 // base, 384 // base)
        assert torch.equal(p, downscale(f, base))


def test_rate_weight_moves_blocks_to_coarser_scales_and_the_map_can_be_held_per_gop():
    frames = _frames(3)
    _, few = prefiltered(frames, Variant(2, 0.5, 1, False), crf=38, gop=4)
    _, many = prefiltered(frames, Variant(2, 1000.0, 1, False), crf=38, gop=4)
    assert abs(sum(many) - 1) < 1e-6 and many[0] < few[0] and many[2] > few[2]
    pics_gop, _ = prefiltered(frames, Variant(2, 8.0, 16, True), crf=38, gop=4)
    assert all(p.shape[-2:] == (128, 192) for p in pics_gop)


def test_blend_is_a_partition_of_unity():
    """Feathered masks sum to one: blending copies of one picture gives that picture back."""
    p = torch.rand(1, 3, 100, 160)
    choice = torch.tensor([[0, 1, 2], [2, 0, 1]])
    out = blend([p, p, p], choice, base=2, feather=16)
    assert torch.allclose(out, p, atol=1e-6)
    hard = blend([torch.zeros_like(p), torch.ones_like(p), torch.ones_like(p) * 2], choice, base=2, feather=1)
    assert hard[0, 0, 0, 0] == 0 and hard[0, 0, 0, 64] == 1 and hard[0, 0, 0, 128] == 2


def test_cli_writes_the_study_and_lam_zero_matches_the_plain_rung(tmp_path):
    from bench.prefilter import main as prefilter

    src = tmp_path / "clip.mp4"
    _clip(src)
    out = tmp_path / "pf"
    assert prefilter([str(src), "--out", str(out), "--frames", "4", "--crfs", "30,40", "--bases", "2",
                  "--lams", "0,1000", "--feathers", "1", "--gop", "4", "--preset", "ultrafast"]) == 0
    res = json.loads((out / "prefilter.json").read_text())
    rows = {r["variant"]: r for r in res["summary"]}
    assert rows["cont2:lam0:f1:frame"]["bd_rate_vs_same_size_plain_pct"] == 0.0  # identical pictures, identical bits
    plain = {p["crf"]: p for p in res["points"] if p["kind"] == "plain" and p["div10"] == 20}
    for crf, kbps, psnr, _ in rows["cont2:lam0:f1:gop"]["points"]:
        assert (kbps, psnr) == (plain[crf]["kbps"], plain[crf]["psnr_y"])
    coarse = rows["cont2:lam1000:f1:frame"]["points"]
    assert all(k < plain[c]["kbps"] and p < plain[c]["psnr_y"] for c, k, p, _ in coarse)
    assert "cont2:lam1000:f1:frame" in (out / "prefilter.md").read_text()


@pytest.mark.parametrize("bad", [["--bases", "3"], ["--crfs", "a"], ["--frames", "0"]])
def test_cli_bad_arguments_exit_2(tmp_path, bad, capsys):
    from bench.prefilter import main as prefilter

    src = tmp_path / "clip.mp4"
    _clip(src)
    assert prefilter([str(src), "--out", str(tmp_path / "o"), *bad]) == 2
    assert "Traceback" not in capsys.readouterr().err
