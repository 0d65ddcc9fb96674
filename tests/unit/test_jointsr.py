import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import downscale_blocks
from models.jointsr import JointSR, JointSRConfig, JointSRUpscaler, edge_band_mask
from models.omnisr import OmniSR, OmniSRConfig, count_params

TINY = JointSRConfig(scales=(2, 4, 8), res_num=1, num_feat=16, block=32, band=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return JointSR(TINY).eval()


@settings(max_examples=12, deadline=None)
@given(gh=st.integers(1, 3), gw=st.integers(1, 4), seed=st.integers(0, 1000))
def test_shapes_random_maps(tiny, gh, gw, seed):
    rng = np.random.default_rng(seed)
    f = rng.choice([2, 4, 8], size=gh * gw)
    tiles = {k: torch.rand(int((f == k).sum()), 3, 32 // k, 32 // k) for k in (2, 4, 8)}
    index = {k: torch.from_numpy(np.flatnonzero(f == k)) for k in (2, 4, 8)}
    with torch.no_grad():
        out = tiny(tiles, index, gh, gw)
    assert out.shape == (1, 3, gh * 32, gw * 32)
    assert torch.isfinite(out).all()


def test_upscaler_on_odd_frame(tiny):
    h, w = 45, 77  # odd size: padded grid 2 x 3 of 32 px blocks
    x = torch.rand(1, 3, h, w)
    g = BlockGrid(h, w, 32)
    f = np.array([2, 4, 8, 4, 4, 2], np.uint8)
    lr = downscale_blocks(pad_tensor(x, 32), g, f)
    out = JointSRUpscaler(tiny)(lr)
    assert out.shape == (1, 3, 64, 96)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_uniform_map_and_batch_of_frames(tiny):
    tiles = {4: torch.rand(2 * 6, 3, 8, 8)}
    index = {4: torch.arange(12)}
    with torch.no_grad():
        both = tiny(tiles, index, 2, 3, n_frames=2)
        one = tiny({4: tiles[4][6:]}, {4: torch.arange(6)}, 2, 3)
    torch.testing.assert_close(both[1:], one)


def _random_tiles(fmap: torch.Tensor, scales, block: int):
    """Random LR tiles for a flat scale map: ({k: (N_k, 3, block/k, block/k)}, {k: block indices})."""
    tiles = {k: torch.rand(int((fmap == k).sum()), 3, block // k, block // k) for k in scales}
    return tiles, {k: torch.nonzero(fmap == k).flatten() for k in scales}


@pytest.mark.parametrize("scales", [(2, 4), (2, 4, 8), (4, 8)])
def test_untrained_jointsr_equals_stitched_per_block_models(scales):
    """Function-preserving init: JointSR from per-scale OmniSRs == those models per block, stitched."""
    torch.manual_seed(1)
    block, gh, gw = 128, 2, 3
    c = 16 if min(scales) == 2 else 48  # the common grid carries 3 * k_min^2 SR channels
    cfg = JointSRConfig(scales=scales, res_num=1, num_feat=c, block=block)
    nets = {k: OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=c)).eval() for k in scales}
    for net in nets.values():  # non-trivial upsampler biases
        torch.nn.init.normal_(net.up[0].bias, std=0.1)
    m = JointSR(cfg).eval()
    m.load_branches(nets)
    fmap = torch.tensor([scales[i % len(scales)] for i in (0, 1, 2, 2, 1, 0)][: gh * gw])
    tiles, index = _random_tiles(fmap, scales, block)
    expect = torch.zeros(1, 3, gh * block, gw * block)
    with torch.no_grad():
        out = m(tiles, index, gh, gw)
        for k in scales:
            sr = nets[k](tiles[k])
            for t, i in enumerate(index[k].tolist()):
                y, x = divmod(i, gw)
                expect[0, :, y * block:(y + 1) * block, x * block:(x + 1) * block] = sr[t]
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="num_feat"):
        JointSR(JointSRConfig(scales=(4, 8), res_num=1, num_feat=16, block=block)).load_branches(
            {k: OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=16)) for k in (4, 8)})


def test_untrained_jointsr_with_margin_equals_per_block_models_with_context():
    """margin > 0: each block through its scale's OmniSR with `margin` LR pixels of the neighbours (other
    scales resampled, frame border replicated), cropped and stitched."""
    from bbmr_stream.upscale import resample_tiles

    torch.manual_seed(3)
    block, gh, gw, mg, scales = 128, 2, 3, 4, (2, 4, 8)
    cfg = JointSRConfig(scales=scales, res_num=1, num_feat=16, block=block, margin=mg)
    nets = {k: OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=16)).eval() for k in scales}
    m = JointSR(cfg).eval()
    m.load_branches(nets)
    fmap = torch.tensor([2, 8, 4, 8, 8, 4])
    tiles, index = _random_tiles(fmap, scales, block)
    expect = torch.zeros(1, 3, gh * block, gw * block)
    with torch.no_grad():
        out = m(tiles, index, gh, gw)
        for k in scales:
            t = block // k
            plane = torch.zeros(1, 3, gh * t, gw * t)
            for kk in scales:
                for j, i in enumerate(index[kk].tolist()):
                    y, x = divmod(i, gw)
                    plane[0, :, y * t:(y + 1) * t, x * t:(x + 1) * t] = resample_tiles(tiles[kk][j:j + 1], kk, k)[0]
            plane = torch.nn.functional.pad(plane, (mg,) * 4, mode="replicate")
            for i in index[k].tolist():
                y, x = divmod(i, gw)
                sr = nets[k](plane[..., y * t:y * t + t + 2 * mg, x * t:x * t + t + 2 * mg])
                expect[0, :, y * block:(y + 1) * block, x * block:(x + 1) * block] = \
                    sr[0, :, mg * k:mg * k + block, mg * k:mg * k + block]
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-4)


def test_resync_to_new_branches_keeps_trained_layers():
    torch.manual_seed(2)
    block, scales = 128, (2, 4, 8)
    cfg = JointSRConfig(scales=scales, res_num=1, num_feat=16, block=block)
    m = JointSR(cfg).eval()
    with torch.no_grad():  # a "trained" JointSR: every weight perturbed
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    deblock = {k: v.clone() for k, v in m.deblock.state_dict().items()}
    extra_readout = m.up[0].weight[:, 12:].clone()
    nets = {k: OmniSR(OmniSRConfig(scale=k, res_num=1, num_feat=16)).eval() for k in scales}
    m.load_branches(nets, keep_trained=True)
    for k, v in m.deblock.state_dict().items():
        torch.testing.assert_close(v, deblock[k])
    torch.testing.assert_close(m.up[0].weight[:, 12:], extra_readout)
    with torch.no_grad():  # without the trained extras it is exactly the new models stitched
        m.up[0].weight[:, 12:] = 0
        m.deblock[4].weight.zero_()
        m.deblock[4].bias.zero_()
        tiles = {k: torch.rand(2, 3, block // k, block // k) for k in scales}
        index = {2: torch.tensor([0, 5]), 4: torch.tensor([1, 4]), 8: torch.tensor([2, 3])}
        out = m(tiles, index, 2, 3)
        for k in scales:
            sr = nets[k](tiles[k])
            for t, i in enumerate(index[k].tolist()):
                y, x = divmod(i, 3)
                torch.testing.assert_close(out[0, :, y * block:(y + 1) * block, x * block:(x + 1) * block], sr[t],
                                           atol=1e-5, rtol=1e-4)


def test_edge_band_mask():
    m = edge_band_mask(2, 3, 8, 2)[0, 0]
    assert m.shape == (16, 24)
    assert m[6:10, 0:2].all() and m[0, 6:10].all()  # around internal edges
    assert not m[3:5, 3:5].any()  # block interior
    assert not m[0:2, 0:2].any()  # the frame border is not a block edge


def test_state_dict_round_trip_and_param_count():
    a = JointSR(TINY)
    b = JointSR(TINY)
    b.load_state_dict(a.state_dict())
    assert count_params(a) == count_params(b)
    assert any(k.startswith("deblock.") for k in a.state_dict())
    assert not any(k.startswith("branches.2.up.") for k in a.state_dict())


def test_strip_deblock_equals_full_map():
    torch.manual_seed(3)
    m = JointSR(TINY).eval()
    for p in m.deblock.parameters():  # non-trivial deblock weights
        torch.nn.init.normal_(p, std=0.2)
    fr = torch.randn(2, 16, 3 * 16, 4 * 16)
    with torch.no_grad():
        torch.testing.assert_close(m.replace_edges(fr, 3, 4), m.deblock_full(fr, 3, 4))
