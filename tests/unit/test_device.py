"""CUDA paths without a GPU: the ``meta`` device plays the GPU. Models and the tensors they make live on meta;
moving a meta tensor to the CPU gives zeros of its shape (a real copy is impossible), so every pipeline runs end
to end, while an op that mixes meta and CPU tensors (a forgotten ``.to(device)``) still raises."""

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.family import Geometry, RungSpec, make_family
from bbmr_stream.scalemap import ScaleMap
from models.factory import make_scorer, make_upscaler

META = torch.device("meta")


class MetaAsGPU(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.cpu, torch.Tensor.to, torch.Tensor.numpy) and args \
                and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            to_cpu = func is not torch.Tensor.to or any(
                isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu"
                for a in list(args[1:]) + list(kwargs.values()))
            if to_cpu:
                dtype = kwargs.get("dtype") or next((a for a in args[1:] if isinstance(a, torch.dtype)), args[0].dtype)
                z = torch.zeros(args[0].shape, dtype=dtype)
                return z.numpy() if func is torch.Tensor.numpy else z
        return func(*args, **kwargs)


def test_the_fake_gpu_catches_device_mixing():
    with MetaAsGPU(), pytest.raises((RuntimeError, NotImplementedError)):
        torch.zeros(2, 3, device=META) + torch.zeros(2, 3)[torch.tensor([0, 1])].sum()  # noqa: B018
        torch.cat([torch.zeros(1, 3, device=META), torch.zeros(1, 3)])


@pytest.mark.parametrize("frame_on_device", [False, True])
def test_light_scorer_on_a_device(frame_on_device):
    x = torch.rand(1, 3, 256, 384)
    with MetaAsGPU():
        sc = make_scorer("light", (2, 4, 8), META)
        d = sc.score(x.to(META) if frame_on_device else x, 128)
    assert d.shape == (6, 3)


@pytest.mark.parametrize("family,upscaler", [("bbmr", "jointsr"), ("bbmr", "omnisr"), ("uniform", "omnisr"),
                                             ("plain-sr", "omnisr")])
def test_upscalers_on_a_device(family, upscaler):
    geo = Geometry(BlockGrid(256, 384, 128), (2, 4, 8), 4, "planes")
    fam = make_family(RungSpec(family, 23.0, factor=2 if family == "plain-sr" else None), geo)
    f = fam.fit(np.array([2, 4, 8, 8, 4, 2], np.uint8)) if fam.allocates else None
    pics = fam.pictures(torch.rand(1, 3, 256, 384), f)
    smap = ScaleMap.from_bytes(fam.scale_map(f, 0)) if fam.carries_map else None
    with MetaAsGPU():
        out = fam.reconstruct(pics, smap, make_upscaler(upscaler, (2, 4, 8), META))
    assert out.shape == (256, 384, 3) and out.dtype == np.uint8
