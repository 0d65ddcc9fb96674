"""Weights registry (torchvision style): every shipped weight file with the facts a user needs.

``models/weights/registry.json`` lists entries; each has the architecture and its hyperparameters, the
scale(s), ``num_params``, the input range the weights expect, training data (with licences) and
iterations, the file's sha256 and ``_metrics`` (PSNR-Y with the convention written beside each figure).
Loading checks the sha256 and never unpickles: our weights are safetensors; official Omni-SR ``.pth``
files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bbmr_stream.errors import WeightsError
from models.archs import arch_of, get_arch
from models.omnisr import OmniSR, OmniSRConfig, count_params

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"


@dataclass(frozen=True)
class WeightsEntry:
    id: str
    file: str
    arch: str  # a registered architecture (models/archs.py): "omnisr" | "fastsr" | "jointsr"
    config: dict
    scales: tuple[int, ...]
    num_params: int
    input_range: str  # "0,1" | "-1,1"
    sha256: str
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @classmethod
    def from_dict(cls, d: dict) -> WeightsEntry:
        return cls(id=d["id"], file=d["file"], arch=d["arch"], config=dict(d["config"]),
                   scales=tuple(d["scales"]), num_params=int(d["num_params"]), input_range=d["input_range"],
                   sha256=d["sha256"], training=d.get("training", {}), metrics=d.get("_metrics", {}))

    def to_dict(self) -> dict:
        return {"id": self.id, "file": self.file, "arch": self.arch, "config": self.config,
                "scales": list(self.scales), "num_params": self.num_params, "input_range": self.input_range,
                "sha256": self.sha256, "training": self.training, "_metrics": self.metrics}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_registry(path: Path | None = None) -> dict[str, WeightsEntry]:
    path = path or REGISTRY_FILE
    if not path.exists():
        return {}
    return {d["id"]: WeightsEntry.from_dict(d) for d in json.loads(path.read_text())["weights"]}


def get_entry(weights_id: str) -> WeightsEntry:
    reg = load_registry()
    if weights_id not in reg:
        have = ", ".join(sorted(reg)) or "none"
        raise WeightsError(f"no weights {weights_id!r} in the registry (shipped: {have})")
    return reg[weights_id]


class SRModel(nn.Module):
    """An SR network plus its input range: takes and returns RGB in [0, 1] (N, 3, H, W)."""

    def __init__(self, net: nn.Module, scale: int, input_range: str = "0,1") -> None:
        super().__init__()
        if input_range not in ("0,1", "-1,1"):
            raise ValueError(f"unknown input range {input_range!r}")
        self.net, self.scale, self.input_range = net, scale, input_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_range == "-1,1":
            return (self.net(x * 2 - 1) + 1) / 2
        return self.net(x)


def read_metadata(path: Path) -> dict:
    """The JSON-encoded metadata of a safetensors file written by `bbmr-train` (config, iterations, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or an official ``.pth`` read without unpickling code (weights_only=True); thop's
    ``total_ops``/``total_params`` entries are dropped."""
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
    except Exception as e:  # corrupt file, not a state dict, pickled code refused by weights_only ...
        raise WeightsError(f"{path}: cannot read weights ({e.__class__.__name__}: {e})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()
            if not k.endswith(("total_ops", "total_params"))}


def load_official_omnisr(path: str | Path, scale: int, res_num: int = 5) -> SRModel:
    """An official Omni-SR checkpoint (``epoch*_OmniSR.pth``; expects input in [-1, 1])."""
    net = OmniSR(OmniSRConfig(scale=scale, res_num=res_num))
    try:
        net.load_state_dict(load_state_dict_file(Path(path)))
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit OmniSR x{scale} res_num {res_num}: {e}") from None
    return SRModel(net.eval(), scale, "-1,1")


def load_model(weights_id: str, device: torch.device | str = "cpu", verify: bool = True) -> nn.Module:
    """Build the registry entry's network (its architecture's descriptor, models/archs.py), load and check its
    weights, move to ``device``, eval mode. A per-scale network comes wrapped in :class:`SRModel` with the
    entry's input range; a multi-scale one (JointSR) as is."""
    e = get_entry(weights_id)
    if verify:
        if not e.path.exists():
            raise WeightsError(f"{e.path}: weights file of {weights_id!r} is missing")
        digest = sha256_file(e.path)
        if digest != e.sha256:
            raise WeightsError(f"{e.path}: sha256 {digest[:12]}... does not match the registry ({e.sha256[:12]}...)")
    sd = load_state_dict_file(e.path)
    arch = get_arch(e.arch, f" for {weights_id!r}")
    net = arch.load(e.config, sd)
    model = SRModel(net, e.scales[0], e.input_range) if arch.per_scale else net
    if count_params(model) != e.num_params:
        raise WeightsError(f"{weights_id}: {count_params(model)} parameters, registry says {e.num_params}")
    return model.to(device).eval()


def load_run(run_dir) -> tuple[torch.nn.Module, dict]:
    """The model in a `bbmr-train` run directory (its model.safetensors) and the file's metadata: a JointSR run
    gives the JointSR; an ``sr`` run its network in an :class:`SRModel` (input range from the metadata)."""
    f = Path(run_dir) / "model.safetensors"
    meta = read_metadata(f)
    arch = arch_of(meta.get("arch", "jointsr"))
    model = arch.load(meta["config"], load_state_dict_file(f))
    if arch.per_scale:
        model = SRModel(model, arch.scales(meta["config"])[0], meta.get("input_range", "0,1"))
    return model.eval(), meta
