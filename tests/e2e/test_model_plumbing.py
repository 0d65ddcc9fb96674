"""Model scorers/upscalers end to end through bbmr-eval and the packager, on a temporary registry of tiny,
untrained models (plumbing, not quality: the shipped weights are tested in test_registry.py)."""

import json

import pytest
import torch

import models.registry as registry
from models.jointsr import JointSR, JointSRConfig
from models.omnisr import OmniSR, OmniSRConfig, count_params
from models.registry import WeightsEntry, sha256_file
from models.train import save_weights
from packager.eval_cli import main as bbmr_eval


@pytest.fixture()
def tiny_registry(tmp_path, monkeypatch):
    wd = tmp_path / "weights"
    wd.mkdir()
    entries = []
    torch.manual_seed(0)

    def add(wid, net, arch, cfg, scales):
        f = wd / f"{wid}.safetensors"
        save_weights(net, f, {"config": cfg})
        entries.append(WeightsEntry(wid, f.name, arch, cfg, scales, count_params(net), "0,1", sha256_file(f),
                                    {"iterations": 1, "data": {"none": "test"}}, {"convention": "test"}).to_dict())

    for k in (2, 4, 8):
        net = OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=16))
        add(f"omnisr-light-x{k}", net, "omnisr", net.cfg.to_dict(), (k,))
    j = JointSR(JointSRConfig(res_num=1, num_feat=16))
    add("jointsr", j, "jointsr", j.cfg.to_dict(), (2, 4, 8))
    reg = wd / "registry.json"
    reg.write_text(json.dumps({"version": 1, "weights": entries}))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", wd)
    monkeypatch.setattr(registry, "REGISTRY_FILE", reg)
    return wd


@pytest.mark.parametrize("upscaler", ["omnisr", "jointsr"])
def test_eval_with_model_scorer_and_upscaler(tiny_registry, tmp_path, upscaler):
    from PIL import Image
    from skimage import data

    img = tmp_path / "a.png"
    Image.fromarray(data.astronaut()[:200, :300]).save(img)
    out = tmp_path / "r.json"
    assert bbmr_eval(["images", str(img), "--scorer", "light", "--upscaler", upscaler, "--allocators",
                      "uniform,optimal", "--json", str(out), "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert r["scorer"] == "light" and r["upscaler"] == upscaler
    im = r["images"][0]
    assert im["lr_pixels"]["optimal"] <= im["budget"]
    assert all(v > 5 for v in im["psnr_y"].values())  # untrained models: finite, sane numbers


def test_tampered_weights_refused(tiny_registry, capsys, tmp_path):
    f = tiny_registry / "omnisr-light-x2.safetensors"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (130, 130)).save(img)
    assert bbmr_eval(["images", str(img), "--scorer", "light"]) == 2
    assert "sha256" in capsys.readouterr().err


def test_packager_with_light_scorer_and_jointsr(tiny_registry, tmp_path):
    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from tests.media import _clip

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "s"
    assert package([str(src), "--out", str(out), "--ladder", "bbmr:23", "--segment", "0.4", "--max-frames", "4"]) == 0
    man = load(out)
    r = man.renditions[0]
    assert man.scorer == "light" and r.psnr_y_upscaler == "jointsr"
    assert r.weights == {"jointsr": registry.load_registry()["jointsr"].sha256}
