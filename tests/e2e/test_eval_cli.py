import json

import numpy as np
import pytest
from PIL import Image

from packager.eval_cli import main


@pytest.fixture()
def images(tmp_path):
    from skimage import data

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(data.astronaut()[:300, :400]).save(d / "a.png")
    Image.fromarray(data.coffee()[:250, :260]).save(d / "b.png")
    return d


def test_images_json(images, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["images", str(images), "--json", str(out), "--niqe", "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert r["scorer"] == "bicubic" and r["upscaler"] == "bicubic" and r["overall"] == 4
    assert [im["name"] for im in r["images"]] == ["a.png", "b.png"]
    for im in r["images"]:
        assert set(im["psnr_y"]) == {"uniform", "paper", "optimal"}
        assert im["lr_pixels"]["uniform"] == im["budget"]
        assert all(v <= im["budget"] for v in im["lr_pixels"].values())
        assert im["psnr_y"]["optimal"] >= im["psnr_y"]["uniform"] - 0.05
        assert all(np.isfinite(v) for v in im["niqe"].values())
    assert set(r["mean"]) == {"psnr_y", "niqe"}
    assert "optimal" in capsys.readouterr().out


def test_niqe_json(images, tmp_path):
    out = tmp_path / "n.json"
    assert main(["niqe", str(images / "a.png"), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"][0]["name"] == "a.png" and r["images"][0]["niqe"] > 0


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "emptydir"])
@pytest.mark.parametrize("cmd", ["images", "niqe"])
def test_bad_input_exit_2(tmp_path, capsys, kind, cmd):
    p = tmp_path / "x.png"
    if kind == "text":
        p.write_text("not an image")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "emptydir":
        p = tmp_path / "d"
        p.mkdir()
    out = tmp_path / "o.json"
    assert main([cmd, str(p), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bbmr-eval: error:") and "\n" not in err
    assert "Traceback" not in err
    assert not out.exists()


def test_unknown_allocator_exit_2(images, capsys):
    assert main(["images", str(images), "--allocators", "uniform,greedy"]) == 2
    assert "greedy" in capsys.readouterr().err


def test_five_scale_set(images, tmp_path):
    out = tmp_path / "r5.json"
    assert main(["images", str(images), "--scales", "1,2,4,8,16", "--allocators", "uniform,optimal",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for im in r["images"]:
        assert set(im["share"]["optimal"]) == {"1", "2", "4", "8", "16"}
        assert im["lr_pixels"]["optimal"] <= im["budget"]
        assert im["psnr_y"]["optimal"] >= im["psnr_y"]["uniform"] - 0.05
