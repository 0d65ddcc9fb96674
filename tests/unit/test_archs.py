"""Architecture descriptors and the name registries of models/ (architectures, upscalers, scorers): each name is
resolved in one place, so a new architecture (this module's TinySR, standing for a future one) works in the
weights registry, the upscalers and the scorers after its registration alone."""

import json
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from torch import nn

import models.registry as registry
from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import downscale_blocks
from bbmr_stream.errors import InputError, WeightsError
from models import archs, scorers, upscalers
from models.arch import ArchSpec
from models.factory import make_scorer, make_upscaler
from models.omnisr import count_params
from models.registry import SRModel, WeightsEntry, load_model, load_run, load_state_dict_file, sha256_file
from models.train import save_weights

CPU = torch.device("cpu")

# tiny configs of every registered architecture (a new architecture adds its line here)
TINY = {
    "omnisr": {"scale": 2, "res_num": 1, "num_feat": 16},
    "fastsr": {"scale": 4, "feat": 8, "feat2": 8},
    "jointsr": {"scales": [2, 4, 8], "res_num": 1, "num_feat": 16, "block": 32, "band": 2, "margin": 2},
    "craft": {"scale": 2, "embed_dim": 32, "depths": [1], "num_heads": [2], "split_size_0": 4, "split_size_1": 8},
}


# --- a fake architecture: one module (this one), one registration --------------------------------------


@dataclass(frozen=True)
class TinyConfig:
    scale: int = 2
    feat: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class TinySR(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = nn.Sequential(nn.Conv2d(3, cfg.feat, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(cfg.feat, 3 * cfg.scale ** 2, 3, padding=1))
        self.shuffle = nn.PixelShuffle(cfg.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


TINY_ARCH = ArchSpec(name="tinysr", config_cls=TinyConfig, net_cls=TinySR, per_scale=True, supports_half=False,
                     presets={"tinysr": {}})


def _frame_lr(h=64, w=96, block=32, scales=(2, 4)):
    torch.manual_seed(1)
    g = BlockGrid(h, w, block)
    f = np.resize(np.array(scales, np.uint8), g.n_blocks)
    return torch.rand(1, 3, h, w), downscale_blocks(pad_tensor(torch.rand(1, 3, h, w), block), g, f)


@pytest.fixture()
def temp_registry(tmp_path, monkeypatch):
    """An empty weights registry in tmp_path; ``add(wid, net, arch, config, scales)`` ships a weight file."""
    wd = tmp_path / "weights"
    wd.mkdir()
    reg = wd / "registry.json"
    entries = []
    monkeypatch.setattr(registry, "WEIGHTS_DIR", wd)
    monkeypatch.setattr(registry, "REGISTRY_FILE", reg)

    def add(wid, net, arch, config, scales, input_range="0,1"):
        f = wd / f"{wid}.safetensors"
        save_weights(net, f, {"config": config})
        entries.append(WeightsEntry(wid, f.name, arch, config, tuple(scales), count_params(net), input_range,
                                    sha256_file(f), {"iterations": 1}, {"convention": "test"}).to_dict())
        reg.write_text(json.dumps({"version": 1, "weights": entries}))

    return add


@pytest.fixture()
def tiny_arch(monkeypatch, temp_registry):
    """TinySR registered (architecture + upscaler + scorer names) and shipped at x2 and x4."""
    monkeypatch.setitem(archs.ARCHS, TINY_ARCH.name, TINY_ARCH)
    monkeypatch.setitem(upscalers.UPSCALERS, "tiny", upscalers.UpscalerSpec("tiny", "tinysr", per_scale=True))
    monkeypatch.setitem(scorers.SCORERS, "tiny", scorers.ScorerSpec("tiny", "tinysr"))
    torch.manual_seed(0)
    nets = {}
    for k in (2, 4):
        nets[k] = TINY_ARCH.build({"scale": k})
        temp_registry(f"tinysr-x{k}", nets[k], "tinysr", nets[k].cfg.to_dict(), (k,))
    return nets


def test_every_architecture_is_registered_and_described():
    assert list(archs.ARCHS) == ["omnisr", "fastsr", "jointsr", "craft"]
    assert set(TINY) == set(archs.ARCHS)
    for name, spec in archs.ARCHS.items():
        assert spec.name == name and isinstance(spec, ArchSpec)
        assert archs.get_arch(name) is spec
    assert [n for n, s in archs.ARCHS.items() if s.per_scale] == ["omnisr", "fastsr", "craft"]
    assert archs.ARCHS["jointsr"].adapter is not None


@pytest.mark.parametrize("name", sorted(TINY))
def test_descriptor_round_trip_through_safetensors(name, tmp_path):
    spec = archs.get_arch(name)
    cfg = spec.config(TINY[name])
    assert spec.config(cfg.to_dict()) == cfg  # config dict <-> config object
    torch.manual_seed(0)
    net = spec.build(cfg.to_dict()).eval()
    for p in net.parameters():  # some layers start at zero (function-preserving inits): make every weight count
        p.data.normal_(0, 0.05)
    f = tmp_path / "w.safetensors"
    save_weights(net, f, {"arch": name, "config": cfg.to_dict()})
    back = spec.load(cfg.to_dict(), load_state_dict_file(f)).eval()
    assert type(back) is type(net) and count_params(back) == count_params(net)
    for (k, a), (k2, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert spec.scales(cfg.to_dict()) == (tuple(TINY[name]["scales"]) if not spec.per_scale else (TINY[name]["scale"],))
    if spec.per_scale:
        x = torch.rand(1, 3, 12, 12)
        with torch.no_grad():
            assert torch.equal(net(x), back(x))


def test_a_registered_architecture_works_everywhere_without_other_edits(tiny_arch):
    """load_model, the upscaler and the scorer registries and weights_ids pick TinySR up by name."""
    m = load_model("tinysr-x2")
    assert isinstance(m, SRModel) and isinstance(m.net, TinySR) and m.scale == 2
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(m(x), tiny_arch[2](x))

    up = make_upscaler("tiny", (2, 4), CPU)
    assert isinstance(up, upscalers.OmniSRUpscaler) and up.name == "tiny"
    assert up.half is False  # TinySR says supports_half=False: never fp16 autocast
    hr, lr = _frame_lr()
    out = up(lr)
    assert out.shape == (1, 3, 64, 96) and torch.isfinite(out).all()
    assert "tiny" in upscalers.upscaler_names() and upscalers.UPSCALERS["tiny"].per_scale
    assert upscalers.weights_ids("tiny", (2, 4)) == ["tinysr-x2", "tinysr-x4"]

    sc = make_scorer("tiny", (2, 4), CPU)
    d = sc.score(hr, 32)
    assert d.shape == (6, 2) and np.isfinite(d).all()

    assert archs.sr_presets()["tinysr"] == (TINY_ARCH, {})  # and `bbmr-train sr --arch tinysr` offers it
    assert archs.arch_of("tinysr") is TINY_ARCH


def test_a_multi_scale_architecture_is_used_through_its_adapter(monkeypatch, temp_registry):
    made = []

    def adapter(model, device, fp16):
        made.append((model, device, fp16))
        return "an upscaler"

    class Multi(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.w = nn.Parameter(torch.zeros(3))

    @dataclass(frozen=True)
    class MultiConfig:
        scales: tuple = (2, 4)

        @classmethod
        def from_dict(cls, d):
            return cls(tuple(d["scales"]))

        def to_dict(self):
            return {"scales": list(self.scales)}

    spec = ArchSpec("multi", MultiConfig, Multi, per_scale=False, adapter=adapter)
    monkeypatch.setitem(archs.ARCHS, "multi", spec)
    monkeypatch.setitem(upscalers.UPSCALERS, "multi", upscalers.UpscalerSpec("multi", "multi-w"))
    net = Multi(MultiConfig())
    temp_registry("multi-w", net, "multi", net.cfg.to_dict(), (2, 4))
    assert make_upscaler("multi", (2, 4), CPU) == "an upscaler"
    assert isinstance(made[0][0], Multi) and made[0][2] is None  # supports_half: fp16 on CUDA as usual
    with pytest.raises(InputError, match=r"multi-w weights are for scales \(2, 4\), not \(2, 4, 8\)"):
        make_upscaler("multi", (2, 4, 8), CPU)
    assert upscalers.weights_ids("multi", (2, 4)) == ["multi-w"]


def test_unknown_architecture(temp_registry):
    net = TINY_ARCH.build({"scale": 2})
    temp_registry("odd-x2", net, "no-such-arch", net.cfg.to_dict(), (2,))
    with pytest.raises(WeightsError, match=r"unknown architecture 'no-such-arch' for 'odd-x2' \(registered: omnisr, "
                                           r"fastsr, jointsr, craft\)"):
        load_model("odd-x2")
    with pytest.raises(WeightsError, match="unknown architecture 'nope'"):
        archs.get_arch("nope")
    with pytest.raises(WeightsError, match="unknown architecture 'nope'"):
        archs.arch_of("nope")
    with pytest.raises(ValueError, match="already registered"):
        archs.register(archs.ARCHS["omnisr"])


def test_unknown_upscaler_and_scorer_names():
    with pytest.raises(InputError, match=r"^unknown upscaler 'nope' \(choose from bicubic, omnisr, fast, jointsr\)$"):
        make_upscaler("nope", (2, 4, 8), CPU)
    with pytest.raises(InputError, match=r"^unknown scorer 'nope' \(choose from bicubic, light, full\)$"):
        make_scorer("nope", (2, 4, 8), CPU)
    with pytest.raises(WeightsError, match="unknown upscaler"):
        upscalers.get_upscaler("nope")
    with pytest.raises(WeightsError, match="unknown upscaler"):
        upscalers.weights_ids("nope", (2,))
    with pytest.raises(WeightsError, match="unknown scorer"):
        scorers.get_scorer("nope")
    assert upscalers.upscaler_names() == ("bicubic", "omnisr", "fast", "jointsr")
    assert scorers.scorer_names() == ("bicubic", "light", "full")
    assert {n: s.per_scale for n, s in upscalers.UPSCALERS.items()} == \
        {"bicubic": False, "omnisr": True, "fast": True, "jointsr": False}


def test_missing_weights_are_input_errors(temp_registry):
    with pytest.raises(InputError, match="no weights 'omnisr-light-x2' in the registry"):
        make_upscaler("omnisr", (2,), CPU)
    with pytest.raises(InputError, match="no weights 'omnisr-x2' in the registry"):
        make_scorer("full", (2,), CPU)
    with pytest.raises(InputError, match="no weights 'jointsr' in the registry"):
        make_upscaler("jointsr", (2, 4, 8), CPU)


def test_bicubic_by_name():
    from bbmr_stream.score import BicubicScorer
    from bbmr_stream.upscale import BicubicUpscaler

    assert isinstance(make_upscaler("bicubic", (2, 4, 8), CPU, border="tile"), BicubicUpscaler)
    sc = make_scorer("bicubic", (2, 4, 8), CPU, mode="frame")
    assert isinstance(sc, BicubicScorer)
    assert upscalers.weights_ids("bicubic", (2, 4, 8)) == []


def test_weights_ids_match_the_manifest_record():
    """The ids whose sha256 manifests record: unchanged from the packager's first formula (byte-identical
    manifests), including ``fast`` recording the omnisr-light ids."""
    reg = registry.load_registry()
    legacy = sorted(k for k in reg if k.startswith("omnisr-light-x"))
    assert upscalers.weights_ids("jointsr", (2, 4, 8)) == ["jointsr"]
    assert upscalers.weights_ids("omnisr", (4,)) == legacy
    assert upscalers.weights_ids("fast", (2, 4)) == legacy


def test_training_presets():
    from models.train import build_sr_net
    from models.train_cli import build_parser

    assert list(archs.sr_presets()) == ["omnisr", "omnisr-light", "fastsr", "craft"]
    assert archs.arch_of("omnisr-light").name == "omnisr" and archs.arch_of("fastsr").name == "fastsr"
    net, cfg = build_sr_net("omnisr-light", 4)
    assert cfg["res_num"] == 1 and cfg["scale"] == 4 and net.cfg.res_num == 1
    net, cfg = build_sr_net("omnisr", 2)
    assert cfg["res_num"] == 5
    net, cfg = build_sr_net("fastsr", 2)
    assert cfg == {"scale": 2, "feat": 48, "feat2": 32}
    args = build_parser().parse_args(["sr", "--arch", "fastsr", "--data", "d", "--out", "o", "--device", "cpu"])
    assert args.arch == "fastsr" and args.device == "cpu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sr", "--arch", "nope", "--data", "d", "--out", "o"])


def test_load_run_of_either_kind(tmp_path):
    """A run directory's model, by the architecture its metadata records (an sr preset or jointsr)."""
    torch.manual_seed(0)
    spec = archs.get_arch("omnisr")
    net = spec.build(TINY["omnisr"])
    d = tmp_path / "sr"
    d.mkdir()
    cfg = spec.config(TINY["omnisr"]).to_dict()
    save_weights(net, d / "model.safetensors", {"arch": "omnisr-light", "config": cfg, "input_range": "0,1"})
    m, meta = load_run(d)
    assert isinstance(m, SRModel) and m.scale == 2 and meta["arch"] == "omnisr-light"
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), net.eval()(x))

    js = archs.get_arch("jointsr")
    jcfg = js.config(TINY["jointsr"]).to_dict()
    j = js.build(jcfg)
    d = tmp_path / "js"
    d.mkdir()
    save_weights(j, d / "model.safetensors", {"arch": "jointsr", "config": jcfg})
    m, _ = load_run(d)
    assert type(m) is type(j) and m.cfg == j.cfg


def test_publish_dispatches_on_the_run_architecture(tmp_path, monkeypatch):
    """`bbmr-train publish` picks the sr or jointsr publisher by the architecture the run recorded."""
    import models.publish as pub

    monkeypatch.setattr(pub, "publish_omnisr", lambda *a: ("sr", a))
    monkeypatch.setattr(pub, "publish_jointsr", lambda *a: ("jointsr", a))
    for arch, want in (("omnisr-light", "sr"), ("fastsr", "sr"), ("omnisr", "sr"), ("jointsr", "jointsr")):
        d = tmp_path / arch
        d.mkdir()
        save_weights(nn.Linear(1, 1), d / "model.safetensors", {"arch": arch, "config": {}})
        assert pub.publish(str(d), "some-id", {}, []) == (want, (str(d), "some-id", {}, []))
