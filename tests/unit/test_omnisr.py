import pytest
import torch

from models.omnisr import OmniSR, OmniSRConfig, count_params

# parameter counts of the official Omni-SR code (components/OmniSR.py, 64 channels, window 8)
OFFICIAL = {(5, 2): 784_604, (5, 4): 805_376, (5, 8): 888_464, (1, 2): 193_436, (1, 4): 214_208, (1, 8): 297_296}


@pytest.mark.parametrize("res_num,scale", sorted(OFFICIAL))
def test_param_counts_match_official(res_num, scale):
    assert count_params(OmniSR(scale=scale, res_num=res_num)) == OFFICIAL[(res_num, scale)]


# a sample of the official checkpoint's keys (module tree of the official code, einops layers included)
OFFICIAL_KEYS = [
    "input.weight", "input.bias", "output.weight", "up.0.weight", "up.0.bias",
    "residual_layer.0.residual_layer.0.layer.0.fn.0.weight",
    "residual_layer.0.residual_layer.0.layer.0.fn.2.weight",
    "residual_layer.0.residual_layer.0.layer.0.fn.4.gate.1.weight",
    "residual_layer.0.residual_layer.0.layer.0.fn.4.gate.3.weight",
    "residual_layer.0.residual_layer.0.layer.0.fn.5.bias",
    "residual_layer.0.residual_layer.0.layer.2.norm.weight",
    "residual_layer.0.residual_layer.0.layer.2.fn.to_qkv.weight",
    "residual_layer.0.residual_layer.0.layer.2.fn.rel_pos_bias.weight",
    "residual_layer.0.residual_layer.0.layer.2.fn.to_out.0.weight",
    "residual_layer.0.residual_layer.0.layer.4.fn.project_in.weight",
    "residual_layer.0.residual_layer.0.layer.4.fn.dwconv.weight",
    "residual_layer.0.residual_layer.0.layer.5.fn.temperature",
    "residual_layer.0.residual_layer.0.layer.5.fn.qkv_dwconv.weight",
    "residual_layer.0.residual_layer.0.layer.8.fn.rel_pos_bias.weight",
    "residual_layer.0.residual_layer.0.layer.11.fn.project_out.weight",
    "residual_layer.0.residual_layer.0.layer.12.norm.bias",
    "residual_layer.0.residual_layer.1.weight",
    "residual_layer.0.esa.conv1.weight", "residual_layer.0.esa.conv2.weight", "residual_layer.0.esa.conv_f.bias",
    "residual_layer.0.esa.conv3.weight", "residual_layer.0.esa.conv4.weight",
]


def test_state_dict_keys_official():
    sd = OmniSR(scale=4, res_num=1).state_dict()
    for k in OFFICIAL_KEYS:
        assert k in sd, k
    assert not any("rel_pos_indices" in k for k in sd)  # non-persistent buffer, as official
    # 6 (input/output/up) + OSA block 50 (MBConv 8, 2 attn x 5, 4 FFN x 5, 2 channel attn x 6) + 2 + ESA 10
    assert len(sd) == 68


def test_state_dict_round_trip_and_shapes():
    torch.manual_seed(0)
    a = OmniSR(scale=2, res_num=1).eval()
    b = OmniSR(scale=2, res_num=1).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 21, 35)  # odd size: padded to the window, cropped back
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == (1, 3, 42, 70)
    torch.testing.assert_close(ya, yb)
    assert a.features(x).shape == (1, 64, 21, 35)


def test_tiny_input_and_config():
    m = OmniSR(OmniSRConfig(scale=8, res_num=1, num_feat=32)).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 1, 1)).shape == (2, 3, 8, 8)
