"""Down-Net (models/downnet.py, models/train_downnet.py): the LR size for every scale and any frame size, bicubic
exactly before training, the 8-bit straight-through rounding, and a training step that lowers Eq. 6's loss."""

import numpy as np
import pytest
import torch

from bbmr_stream.resize import downscale, quantize
from models.downnet import DownNet, DownNetConfig
from models.train_downnet import evaluate_downnet, straight_through_8bit


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(64, 64), (72, 40), (33, 19), (5, 130)])
def test_lr_size_for_every_scale_and_frame_size(scale, size):
    h, w = size
    net = DownNet(scale=scale).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.tail.weight, std=0.01)  # a trained-looking net, not the zero start
        lr = net(torch.rand(2, 3, h, w))
    assert lr.shape == (2, 3, -(-h // scale), -(-w // scale))
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1


def test_untrained_is_bicubic_and_the_config_is_checked():
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(DownNet(scale=4)(x), downscale(x, 4))
    with pytest.raises(ValueError):
        DownNet(scale=3)
    assert DownNetConfig(scale=2, channels=8).to_dict() == {"scale": 2, "channels": 8, "blocks": 4}


def test_straight_through_rounding():
    x = torch.tensor([0.1, 0.50123, 0.9], requires_grad=True)
    y = straight_through_8bit(x)
    assert torch.equal(y.detach(), quantize(x.detach()))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_a_few_steps_lower_the_loss_and_validation_compares_with_bicubic():
    """Eq. 6 against a frozen upscaler (bicubic x2, differentiable) on a fixed batch of fine detail: 30 AdamW steps
    lower it by a quarter (measured: 0.077 -> 0.054); evaluate_downnet of an untrained Down-Net equals the bicubic
    baseline (it is bicubic)."""
    from bbmr_stream.resize import upscale

    torch.manual_seed(0)

    def up(x):
        return upscale(x, 2)

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    hr = (0.5 + 0.4 * torch.sin(xx[None, None] + yy * 0.7)).repeat(4, 3, 1, 1)
    net = DownNet(scale=2, channels=8, blocks=1)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)

    def loss():
        lr = net(hr, clamp=False)
        return 0.25 * torch.nn.functional.l1_loss(lr, downscale(hr, 2)) + \
            torch.nn.functional.l1_loss(up(straight_through_8bit(lr.clamp(0, 1))), hr)

    first = float(loss().detach())
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.8 * first
    img = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    fresh = DownNet(scale=2).eval()
    assert evaluate_downnet(fresh, up, [img], 2, "cpu") == pytest.approx(evaluate_downnet(None, up, [img], 2, "cpu"))
