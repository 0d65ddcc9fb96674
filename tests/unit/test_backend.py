"""The CPU inference backends (models/backend.py): exported graphs match eager fp32, a wrong graph is refused,
verdicts are cached; FastSR (models/fastsr.py) round-trips and exports."""

import warnings

import numpy as np
import pytest
import torch

from models import backend as B
from models.fastsr import FastSR, FastSRConfig
from models.omnisr import OmniSR, OmniSRConfig
from models.registry import SRModel


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BBMR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_omnisr(scale: int = 4) -> SRModel:
    torch.manual_seed(0)
    return SRModel(OmniSR(OmniSRConfig(scale=scale, res_num=1, num_feat=16)).eval(), scale)


def lr_picture(h: int, w: int) -> torch.Tensor:
    """Smooth content with edges (a random field would make every PSNR meaningless)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([(xx * 3 + yy).sin() * 0.4 + 0.5, (xx > 0.5).float() * 0.6 + 0.2, yy])[None].contiguous()


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_runtime_matches_eager_on_odd_sizes(name):
    # 27 x 45 is not a multiple of the 8-px window: OmniSR pads to 32 x 48 and crops; a truncating divide in
    # the exported padding would give 24 rows (the `-(-n // w)` pitfall)
    m = tiny_omnisr(4)
    x = lr_picture(27, 45)
    with torch.no_grad():
        ref = m(x)
    acc = B.AcceleratedSR(m, "k" * 64, name)
    out = acc(x)
    assert out.shape == ref.shape == (1, 3, 108, 180)
    assert (out - ref).abs().max().item() < 0.02
    v = acc.verdicts[0]
    assert v.used and v.psnr_y_vs_eager >= B.VERIFY_MIN_PSNR and v.variant.startswith(name)


def test_verdict_is_cached_and_reused(cache, monkeypatch):
    m = tiny_omnisr(2)
    x = lr_picture(20, 24)
    B.AcceleratedSR(m, "a" * 64, "onnxruntime")(x)
    assert list((cache / "verdicts").glob("*.json")) and list((cache / "onnx").glob("*.onnx"))
    calls = []
    acc = B.AcceleratedSR(m, "a" * 64, "onnxruntime")
    monkeypatch.setattr(acc, "eager", lambda t: calls.append(1) or B.AcceleratedSR.eager(acc, t))
    acc(x)
    assert calls == [] and acc.verdicts[0].used  # second process: no eager check, the cached verdict
    acc(lr_picture(21, 24))  # a new shape is checked
    assert calls == [1]


def test_a_wrong_graph_is_refused(monkeypatch):
    m = tiny_omnisr(2)
    wrong = tiny_omnisr(2)
    with torch.no_grad():
        for p in wrong.parameters():
            p.add_(0.05 * torch.randn_like(p))
    real_export = B.export_onnx
    monkeypatch.setattr(B, "export_onnx", lambda model, x: real_export(wrong, x))
    acc = B.AcceleratedSR(m, "b" * 64, "onnxruntime")
    x = lr_picture(16, 16)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = acc(x)
    with torch.no_grad():
        assert torch.equal(out, m(x.contiguous(memory_format=torch.channels_last)).contiguous())  # eager fallback
    assert not acc.verdicts[0].used and acc.verdicts[0].psnr_y_vs_eager < B.VERIFY_MIN_PSNR
    assert any("differs from eager" in str(i.message) and "running eager" in str(i.message) for i in w)


def test_torch_backend_and_cuda_tensors_stay_eager():
    m = tiny_omnisr(2)
    acc = B.AcceleratedSR(m, "c" * 64, "torch")
    x = lr_picture(16, 24)
    with torch.no_grad():
        assert (acc(x) - m(x)).abs().max().item() < 1e-5
    assert acc.verdicts == [] and acc.description.startswith("torch")
    meta = B.accelerate(m, "c" * 64, "openvino", torch.device("cuda"))
    assert meta is m  # not wrapped on CUDA: torch runs it in fp16 there


def test_resolve_and_cli_errors():
    with pytest.raises(B.BackendError):
        B.resolve("tensorrt")
    assert B.resolve("auto") == "openvino"  # installed with the package
    from player.cli import main

    assert main(["/nonexistent-stream", "--backend", "tensorrt", "--headless"]) == 2


def test_fastsr_starts_as_nearest_and_round_trips():
    m = FastSR(FastSRConfig(scale=4)).eval()
    x = lr_picture(10, 12)
    with torch.no_grad():
        out = m(x)
    assert torch.equal(out, torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest"))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    m2 = FastSR(FastSRConfig(**m.cfg.to_dict()))
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    acc = B.AcceleratedSR(SRModel(m, 4), "d" * 64, "onnxruntime")
    with torch.no_grad():
        assert np.abs((acc(x) - m(x)).numpy()).max() < 1e-4
