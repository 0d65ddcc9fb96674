import json

import numpy as np
import pytest
from PIL import Image

from models.train import TrainConfig, train_sr
from models.train_cli import main


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("train")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()[:96, :96]).save(d / f"{name}.png")
    return d


def _cfg(tmp_path, data_dir, **kw):
    base = dict(arch="omnisr-light", scale=2, data=[str(data_dir)], out=str(tmp_path / "ck"), iters=12, batch=2,
                patch=16, lr=2e-3, log_every=1, val_every=1000, ckpt_minutes=60.0, threads=2, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _losses(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_loss_falls(tmp_path, tiny_set):
    train_sr(_cfg(tmp_path, tiny_set, iters=40, lr=2e-3), log=lambda *_: None)
    rec = _losses(tmp_path / "ck")
    first = np.mean([r["loss"] for r in rec[:5]])
    last = np.mean([r["loss"] for r in rec[-5:]])
    assert last < 0.6 * first, (first, last)
    assert (tmp_path / "ck" / "model.safetensors").exists()


def test_resume_continues_exactly(tmp_path, tiny_set):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    train_sr(_cfg(a, tiny_set, iters=8), log=lambda *_: None)
    train_sr(_cfg(b, tiny_set, iters=5), log=lambda *_: None)
    train_sr(_cfg(b, tiny_set, iters=8), resume=True, log=lambda *_: None)
    la, lb = _losses(a / "ck"), _losses(b / "ck")
    assert [r["iter"] for r in lb] == list(range(1, 9))
    np.testing.assert_allclose([r["loss"] for r in lb], [r["loss"] for r in la], rtol=1e-6)


def test_resume_can_shorten_the_decay_period(tmp_path, tiny_set):
    train_sr(_cfg(tmp_path, tiny_set, iters=4, decay_every=1000), log=lambda *_: None)
    msgs = []
    train_sr(_cfg(tmp_path, tiny_set, iters=8, decay_every=3), resume=True, log=msgs.append)
    assert any("decay period 1000 -> 3" in m for m in msgs)
    lrs = {r["iter"]: r["lr"] for r in _losses(tmp_path / "ck")}
    # halved when the step count reaches a multiple of the new period after the resume (6), not before
    assert lrs[4] == lrs[5] == 2e-3 and lrs[6] == lrs[8] == 1e-3


def test_cli_bad_input(tmp_path, capsys):
    assert main(["sr", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--iters", "1"]) == 2
    assert "bbmr-train: error:" in capsys.readouterr().err


def test_jointsr_training_loss_falls(tmp_path, tiny_set, monkeypatch):
    from models.omnisr import OmniSR, OmniSRConfig
    from models.train import save_weights, train_jointsr

    specs = []
    for k in (2, 4, 8):
        net = OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=16))
        d = tmp_path / f"x{k}"
        d.mkdir()
        save_weights(net, d / "model.safetensors", {"config": net.cfg.to_dict()})
        specs.append(f"{k}={d}")
    cfg = TrainConfig(arch="jointsr", scale=0, branches=specs, data=[str(tiny_set)], val=[str(tiny_set)],
                      out=str(tmp_path / "js"), iters=30, batch=2, grid=2, block=32, band=2, lr=3e-3,
                      log_every=1, val_every=30, threads=2, seed=3)
    rec = train_jointsr(cfg, log=lambda *_: None)
    assert np.isfinite(rec["val_psnr_y"])
    losses = [r["loss"] for r in _losses(tmp_path / "js")]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])

    # publish into a temporary registry: the entry's sha256/params match the file, and the comparison
    # metrics with the branch models (stitched, OmniSR-O, context) are there
    import models.registry as registry
    from models.publish import publish_jointsr

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "w")
    monkeypatch.setattr(registry, "REGISTRY_FILE", tmp_path / "w" / "registry.json")
    e = publish_jointsr(str(tmp_path / "js"), "jointsr-test", {"tiny": str(tiny_set)}, [str(tiny_set)])
    m = registry.load_model("jointsr-test")
    assert e.sha256 == registry.sha256_file(tmp_path / "w" / e.file) and e.training["iterations"] == 30
    assert set(e.metrics["tiny"]) >= {"psnr_y", "stitched_psnr_y", "omnisr_o_psnr_y", "omnisr_context_psnr_y"}
    assert m.cfg.block == 32


def test_amp_auto_uses_bf16_only_where_native(monkeypatch):
    import torch

    import models.train as tr

    cpu = torch.device("cpu")
    assert tr.resolve_amp("bf16", cpu) == "bf16" and tr.resolve_amp("none", cpu) == "none"
    monkeypatch.setattr(tr, "native_bf16", lambda dev: False)
    assert tr.resolve_amp("auto", cpu) == "none"
    assert tr._amp(TrainConfig(amp="auto"), cpu) == (torch.float32, False)
    monkeypatch.setattr(tr, "native_bf16", lambda dev: True)
    assert tr.resolve_amp("auto", cpu) == "bf16"
    assert tr.resolve_amp("auto", torch.device("cuda")) == "fp16"


def test_warm_start_from_the_shipped_weights(tmp_path, tiny_set):
    """Training continues from a published weight (no checkpoint in the repo needed): --init omnisr-light-x2
    starts at the shipped model's quality (with lr 0 the weights stay exactly the shipped ones)."""
    from models.registry import load_registry, load_state_dict_file

    shipped = load_state_dict_file(load_registry()["omnisr-light-x2"].path)
    train_sr(_cfg(tmp_path, tiny_set, iters=2, lr=0.0, init="omnisr-light-x2"), log=lambda *_: None)
    got = load_state_dict_file(tmp_path / "ck" / "model.safetensors")
    assert all(np.array_equal(got[k].numpy(), v.numpy()) for k, v in shipped.items())
    with pytest.raises(Exception, match="not an omnisr-light x4"):
        train_sr(_cfg(tmp_path / "x4", tiny_set, scale=4, iters=1, init="omnisr-light-x2"), log=lambda *_: None)
    assert main(["sr", "--data", str(tiny_set), "--out", str(tmp_path / "bad"), "--init", "no-such-id"]) == 2


def test_codec_aware_pairs(tmp_path, tiny_set):
    """Codec-aware training pairs: the LR crop is the x264-coded LR of the image, aligned with its HR crop (the
    coded LR is near the clean LR of the same HR crop, and much further at a high CRF)."""
    import torch

    from bbmr_stream.resize import downscale, quantize
    from models.train import CodedCropSampler, load_images

    imgs = load_images([str(tiny_set)])
    g = torch.Generator().manual_seed(0)

    def gap(crf):
        s = CodedCropSampler(imgs, 2, 16, [crf], log=lambda *_: None)
        hr, lr = s.batch(8, g)
        assert hr.shape == (8, 3, 32, 32) and lr.shape == (8, 3, 16, 16)
        return float((lr - quantize(downscale(hr, 2))).abs().mean())

    lo, hi = gap(10), gap(45)
    assert lo < 0.02 < hi
    msgs = []
    train_sr(_cfg(tmp_path, tiny_set, iters=2, codec_crfs=[23.0, 33.0], init="omnisr-light-x2"), log=msgs.append)
    assert any("coded the LR of 3 images at CRF [23.0, 33.0]" in m for m in msgs)
