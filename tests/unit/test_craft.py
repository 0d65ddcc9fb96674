import io
import json

import pytest
import torch

from models import archs
from models.craft import CRAFT, CRAFTConfig, count_params

# parameter counts of the paper (Table: CRAFT, 737K x2 / 753K x4) = those of the official code
PAPER = {2: 737_756, 4: 753_344}

# a sample of the official checkpoint's keys (AVC2-UESTC/CRAFT-SR, basicsr/archs/craft_arch.py)
OFFICIAL_KEYS = [
    "relative_position_index_h", "relative_position_index_v", "biases_h", "biases_v",
    "conv_first.weight", "conv_first.bias",
    "layers.0.residual_group.srwa_blocks.0.norm1.weight",
    "layers.0.residual_group.srwa_blocks.0.qkv.weight",
    "layers.0.residual_group.srwa_blocks.0.proj.bias",
    "layers.0.residual_group.srwa_blocks.0.get_v.weight",
    "layers.0.residual_group.srwa_blocks.1.attns.0.pos.pos_proj.weight",
    "layers.0.residual_group.srwa_blocks.1.attns.1.pos.pos1.0.weight",
    "layers.0.residual_group.srwa_blocks.1.attns.1.pos.pos3.2.bias",
    "layers.0.residual_group.srwa_blocks.3.mlp.fc1.weight",
    "layers.0.residual_group.srwa_blocks.3.mlp.fc2.bias",
    "layers.1.residual_group.hfer_blocks.1.last_fc.weight",
    "layers.1.residual_group.hfer_blocks.1.fc.weight",
    "layers.1.residual_group.hfer_blocks.1.conv.bias",
    "layers.2.residual_group.hf_blocks.0.norm1.body.weight",
    "layers.2.residual_group.hf_blocks.0.attn.temperature",
    "layers.2.residual_group.hf_blocks.0.attn.q_dwconv.weight",
    "layers.2.residual_group.hf_blocks.0.attn.kv.weight",
    "layers.2.residual_group.hf_blocks.0.attn.project_out.weight",
    "layers.3.residual_group.hf_blocks.1.ffn.project_in.weight",
    "layers.3.residual_group.hf_blocks.1.ffn.dwconv.weight",
    "layers.3.residual_group.hf_blocks.1.norm2.body.bias",
    "layers.3.conv.weight",
    "norm.body.weight", "norm.body.bias", "conv_after_body.weight", "upsample.0.weight", "upsample.0.bias",
]


def _tiny(scale: int = 2) -> CRAFT:
    # smallest valid width (the position-bias MLP needs embed_dim >= 32); 4 x 8 windows: inputs pad to 8
    return CRAFT(CRAFTConfig(scale=scale, embed_dim=32, depths=(1,), num_heads=(2,), split_size_0=4,
                             split_size_1=8)).eval()


@pytest.mark.parametrize("scale", sorted(PAPER))
def test_param_counts_match_paper(scale):
    with torch.device("meta"):
        net = archs.get_arch("craft").build({"scale": scale, **archs.sr_presets()["craft"][1]})
    assert count_params(net) == PAPER[scale]


def test_state_dict_keys_official():
    sd = CRAFT(scale=4).state_dict()
    for k in OFFICIAL_KEYS:
        assert k in sd, k
    assert "mean" not in sd  # a plain attribute officially: not in its checkpoints
    assert sd["upsample.0.weight"].shape == (48, 48, 3, 3)
    assert sd["layers.0.residual_group.hf_blocks.0.ffn.project_in.weight"].shape == (254, 48, 1, 1)  # 2*int(48*2.66)
    assert sd["relative_position_index_h"].shape == (64, 64) and sd["biases_h"].shape == (7 * 31, 2)
    # per group: 4 SRWAB x 42 (2 position-bias MLPs x 14) + 2 HFERB x 6 + 2 HFB x 13 + conv 2;
    # + 4 buffers + conv_first, norm, conv_after_body, upsample (2 each)
    assert len(sd) == 4 * (4 * 42 + 2 * 6 + 2 * 13 + 2) + 4 + 8


def test_forward_pads_and_crops_any_size():
    torch.manual_seed(0)
    net = _tiny(2)
    x = torch.rand(1, 3, 20, 28)  # not multiples of the 8-pixel window lcm
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, 3, 40, 56)
        assert torch.isfinite(y).all()
        assert _tiny(4)(torch.rand(2, 3, 3, 5)).shape == (2, 3, 12, 20)  # smaller than one window


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = _tiny(2)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _tiny(2)
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_config_from_metadata_and_validation():
    spec = archs.get_arch("craft")
    cfg = CRAFTConfig(scale=3)
    assert spec.config(json.loads(json.dumps(cfg.to_dict()))) == cfg  # lists from JSON -> tuples
    assert spec.scales(cfg.to_dict()) == (3,) and spec.per_scale and not spec.supports_half
    assert CRAFTConfig(num_heads=6).num_heads == (6, 6, 6, 6)
    with pytest.raises(ValueError):
        CRAFTConfig(embed_dim=16)
    with pytest.raises(ValueError):
        CRAFTConfig(num_heads=(5, 5, 5, 5))
