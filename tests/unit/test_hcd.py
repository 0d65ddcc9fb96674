"""Collaborative LR (models/hcd.py): the refinement's guarantees on the frame it optimised, before coding."""

import math

import pytest
import torch
from skimage import data

from bbmr_stream.errors import InputError
from bbmr_stream.resize import downscale, upscale
from models.fastsr import FastSR, FastSRConfig
from models.hcd import FrameRefiner, HCDConfig, Objective, ball, pgd, refine_segment


def frame(h: int = 64, w: int = 96, off: int = 0) -> torch.Tensor:
    img = data.astronaut()[100 + off:100 + off + h, 150:150 + w]
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def tiny_sr(k: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = FastSR(FastSRConfig(scale=k, feat=8, feat2=4))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
        p.requires_grad_(False)
    return net.eval()


def bicubic(k: int):
    return lambda x: upscale(x, k)


def loss_of(up, x, y, k):
    return Objective(up, y, k).value_and_grad(x)[0]


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("name", ["bicubic", "fastsr"])
def test_refinement_lowers_the_loss_inside_the_ball_and_range(k, name):
    y = frame()
    up = bicubic(k) if name == "bicubic" else tiny_sr(k)
    cfg = HCDConfig(steps=4, eps=3.0, alpha=1.0)
    ref = FrameRefiner(up, k, cfg, crf=30)
    x0 = downscale(y, k)
    x = ref(y)
    assert x.shape == x0.shape
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    before, after = ref.losses[0]
    assert before == pytest.approx(loss_of(up, x0, y, k), rel=1e-5)
    assert after == pytest.approx(loss_of(up, x, y, k), rel=1e-4)
    assert after < before
    # the LR stage's ball is around the HR stage's picture: |x - g(y)| <= eps_x + what the HR ball moves g by
    assert float((x - x0).norm()) <= ball(x0, cfg.eps) + ball(y, cfg.eps) + 1e-6


def quadratic(target, scale=1e3, calls=None):
    """A loss where big steps overshoot; ``calls`` records whether each evaluation asked for a gradient."""

    def vg(x, grad=True):
        if calls is not None:
            calls.append(grad)
        x = x.detach().requires_grad_(True)
        val = (x - target).pow(2).sum() * scale
        (g,) = torch.autograd.grad(val, x)
        return float(val.detach()), (g if grad else None)

    return vg


def test_pgd_keeps_the_best_point_inside_the_ball():
    torch.manual_seed(0)
    x0 = torch.rand(1, 3, 16, 16)
    target = torch.rand(1, 3, 16, 16)
    calls = []
    vg = quadratic(target, calls=calls)
    eps, alpha = ball(x0, 8.0), ball(x0, 40.0)
    t = pgd(x0, vg, 6, eps, alpha)
    assert len(t.losses) == 7 and calls == [True] * 6 + [False]  # the last point's gradient is not needed
    assert vg(t.x)[0] == pytest.approx(min(t.losses), rel=1e-6) and t.losses[t.best] == min(t.losses)
    assert min(t.losses) <= t.losses[0]
    assert float(t.delta.norm()) <= eps * (1 + 1e-6)
    assert 0.0 <= float(t.x.min()) and float(t.x.max()) <= 1.0
    assert torch.allclose(t.x, x0 + t.delta)


def test_a_worse_warm_start_is_ignored_and_a_better_one_taken():
    torch.manual_seed(1)
    x0 = torch.rand(1, 3, 16, 16).mul(0.5).add(0.25)
    target = x0 + 0.01 * torch.randn_like(x0)
    vg = quadratic(target, scale=1.0)
    eps, alpha = ball(x0, 4.0), ball(x0, 1.0)
    cold = pgd(x0, vg, 2, eps, alpha)
    bad = pgd(x0, vg, 2, eps, alpha, d0=-(target - x0) * 3)  # away from the target: worse than zero
    assert len(bad.losses) == 2 + 2 and bad.losses[1] > bad.losses[0]
    assert torch.equal(bad.x, cold.x) and bad.losses[2:] == cold.losses[1:]
    good = pgd(x0, vg, 2, eps, alpha, d0=(target - x0) * 0.9)  # almost there: taken, and it stays better
    assert min(good.losses) < min(cold.losses) and good.best >= 1


def test_tiled_gradient_equals_the_whole_plane_gradient():
    y = frame(96, 128)
    k, up = 2, tiny_sr(2)  # receptive radius 4 LR px < the 16-px overlap
    x = downscale(y, k)
    v1, g1 = Objective(up, y, k, tile=16).value_and_grad(x)
    v2, g2 = Objective(up, y, k, tile=1024).value_and_grad(x)
    assert v1 == pytest.approx(v2, rel=1e-5)
    assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-4)


def test_rate_term_lowers_the_proxy_bits():
    from bbmr_stream.metrics import rgb_to_y_torch
    from bbmr_stream.rate import gradient_bits

    y, k = frame(), 2
    bits = []
    for rate in (0.0, 50.0):
        x = FrameRefiner(bicubic(k), k, HCDConfig(steps=4, rate=rate, hr=False), crf=30)(y)
        bits.append(float(gradient_bits(rgb_to_y_torch(x), 30).sum()))
    assert bits[1] < bits[0]


def test_segment_with_the_codec_in_the_loop_never_ends_worse_than_it_started():
    k = 2
    ys = [frame(off=i) for i in range(3)]
    xs = [downscale(y, k) for y in ys]
    calls = []

    def codec(pics):  # 8-bit rounding plus a blur: a lossy round trip the gradient does not see
        calls.append(len(pics))
        return [torch.nn.functional.avg_pool2d(p, 3, 1, 1, count_include_pad=False).mul(255).round().div(255)
                for p in pics]

    cfg = HCDConfig(steps=3, eps=4.0, alpha=1.0)
    out, losses = refine_segment(ys, xs, bicubic(k), k, cfg, 30, codec)
    assert calls == [3] * 4
    assert len(out) == 3 and all(o.shape == x.shape for o, x in zip(out, xs))
    dec_loss = sum(loss_of(bicubic(k), d, y, k) for d, y in zip(codec(out), ys))
    assert dec_loss == pytest.approx(min(losses), rel=1e-5)
    assert min(losses) <= losses[0]
    for o, x in zip(out, xs):
        assert float((o - x).norm()) <= ball(x, cfg.eps) * (1 + 1e-6)
        assert 0.0 <= float(o.min()) and float(o.max()) <= 1.0


@pytest.mark.parametrize("kw", [{"steps": -1}, {"steps": 0}, {"steps": 101}, {"eps": float("nan")}, {"eps": 0.0},
                                {"alpha": -1.0}, {"alpha": 0.0}, {"rate": float("inf")}, {"rate": -1.0}])
def test_bad_configs_are_input_errors(kw):
    with pytest.raises(InputError):
        HCDConfig(**kw).check()


def test_label():
    assert HCDConfig().label == "hcd1"
    assert HCDConfig(steps=5, hr=False, warm=False, rate=0.5).label == "hcd5-lr-cold-r0.5"


@pytest.mark.parametrize("family", ["plain-sr", "uniform"])
def test_zero_steps_give_the_unrefined_pictures(family):
    import numpy as np

    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.family import FAMILIES, Geometry, RungSpec, make_family

    y = frame(200, 328)  # odd block grid: padding on both axes
    geo = Geometry(BlockGrid(200, 328, 128), (2, 4, 8), 4, "planes")
    spec = RungSpec(family, 30.0, factor=4 if family == "plain-sr" else None, refine=True)
    fam = make_family(spec, geo)
    assert FAMILIES[family].refinable
    ref = FrameRefiner(bicubic(4), 4, HCDConfig(steps=0), crf=30)
    plain, refined = fam.pictures(y, None), fam.refined_pictures(y, None, ref)
    assert len(plain) == len(refined) == 1
    assert plain[0].shape == refined[0].shape and np.array_equal(plain[0], refined[0])
    ref2 = FrameRefiner(bicubic(4), 4, HCDConfig(steps=2), crf=30)
    assert not np.array_equal(plain[0], fam.refined_pictures(y, None, ref2)[0])


def test_a_study_s_refined_points_are_candidates_only_with_the_same_settings(tmp_path):
    import json
    from types import SimpleNamespace

    from packager.ladder import load_study

    pts = [{"rung": r, "name": r.replace(":", "_"), "family": f, "width": 320, "height": 180, "crf": 30.0,
            "kbps": k, "psnr_y": 30.0 + k / 100} for r, f, k in
           (("plain:30", "plain", 300.0), ("plain-sr:2:30", "plain-sr", 200.0),
            ("plain-sr:2:30:hcd", "plain-sr+hcd", 210.0))]
    made = HCDConfig(steps=1)
    meta = {"source": {"file": "t.mp4", "width": 640, "height": 360, "frames": 10},
            "settings": {"container": "fmp4"}, "conventions": {"refine": {"config": made.to_dict()}}}
    f = tmp_path / "rd.json"
    f.write_text(json.dumps({"meta": meta, "points": pts}))
    info = SimpleNamespace(path="/x/t.mp4", width=640, height=360)
    assert {p.family for p in load_study(f, info, 10, "fmp4")} == {"plain", "plain-sr"}
    assert {p.family for p in load_study(f, info, 10, "fmp4", made)} == {"plain", "plain-sr", "plain-sr+hcd"}
    with pytest.raises(InputError, match="give the study's --refine"):
        load_study(f, info, 10, "fmp4", HCDConfig(steps=3))


def test_bench_hcd_compares_the_refined_front_with_the_unrefined_one(tmp_path):
    import json

    from bench.hcd import run

    def pt(rung, fam, w, crf, kbps, psnr):
        return {"rung": rung, "name": rung.replace(":", "_"), "family": fam, "width": w, "height": w // 2,
                "crf": crf, "kbps": kbps, "psnr_y": psnr}

    pts = [pt(f"plain:{c}", "plain", 640, c, 1000 / 2 ** (i / 2), 40 - 1.5 * i) for i, c in enumerate((20, 25, 30, 35))]
    pts += [pt(f"plain-sr:2:{c}", "plain-sr", 320, c, 600 / 2 ** (i / 2), 37 - 1.5 * i)
            for i, c in enumerate((20, 25, 30, 35))]
    pts += [pt(f"plain-sr:2:{c}:hcd", "plain-sr+hcd", 320, c, 600 / 2 ** (i / 2), 37.5 - 1.5 * i)
            for i, c in enumerate((20, 25, 30, 35))]  # +0.5 dB at the same rate
    meta = {"source": {"file": "t.mp4", "width": 640, "height": 320, "frames": 10, "duration_s": 1.0},
            "settings": {"container": "fmp4"},
            "conventions": {"measured_frames": [0, 5], "refine": {
                "config": HCDConfig().to_dict(),
                "loss": {"plain-sr 2": {"frames": 10, "s_per_frame": 1.0, "mse_y_before": 10.0, "mse_y_after": 5.0,
                                        "upscaler": "fast"}}}}}
    f = tmp_path / "rd.json"
    f.write_text(json.dumps({"meta": meta, "points": pts}))
    r = run("t", str(f))
    assert r["bd_refined_vs_unrefined"]["bd_psnr_db"] == pytest.approx(0.5, abs=0.01)
    assert r["bd_refined_vs_unrefined"]["bd_rate_pct"] < 0
    assert r["before_codec"][0]["gain_db"] == pytest.approx(10 * math.log10(2), abs=1e-3)
    assert [w["psnr_change_db"] for w in r["rungs"]] == [0.5] * 4


def test_rungs_sharing_a_refined_picture_are_encoded_in_one_group():
    from bbmr_stream.family import parse_ladder
    from packager.pipeline import encode_groups

    specs = parse_ladder(",".join([f"plain:{c}" for c in (20, 24, 28)] + [f"plain-sr:4:{c}" for c in (20, 24, 28)]
                                  + [f"plain-sr:2:{c}:hcd" for c in (20, 24, 28, 32)]
                                  + [f"plain-sr:4:{c}:hcd" for c in (20, 24, 28, 32)]))
    groups = encode_groups(specs, size=5)
    assert sorted(s.name for g in groups for s in g) == sorted(s.name for s in specs)
    assert all(len(g) <= 5 for g in groups)
    for k in (2, 4):
        (g,) = [g for g in groups if any(s.refine and s.factor == k for s in g)]
        assert sum(s.refine and s.factor == k for s in g) == 4


def test_refine_is_only_recorded_on_refinable_renditions():
    from types import SimpleNamespace

    from bbmr_stream.family import check_rendition, rendition_label, spec_of

    rend = SimpleNamespace(name="plain_crf30", kind="plain", refine="hcd1", layout="plain", crf=30.0)
    with pytest.raises(ValueError, match="refine 'hcd1' on a plain rendition"):
        check_rendition(rend, None)
    uni = SimpleNamespace(name="uniform_crf30_hcd", kind="uniform", refine="hcd1", crf=30.0)
    assert spec_of(uni).name == uni.name and rendition_label(uni) == "uniform+hcd"


def test_smoothed_steps_still_lower_the_loss_and_keep_constants():
    from models.hcd import gaussian_blur

    c = torch.full((1, 3, 5, 7), 0.3)
    assert torch.allclose(gaussian_blur(c, 2.0), c)
    torch.manual_seed(0)
    noise = torch.randn(1, 3, 32, 32)
    assert float(gaussian_blur(noise, 1.0).std()) < 0.5 * float(noise.std())
    y, k = frame(), 2
    ref = FrameRefiner(tiny_sr(k), k, HCDConfig(steps=2, smooth=1.0), crf=30)
    ref(y)
    before, after = ref.losses[0]
    assert after < before
    assert HCDConfig(smooth=1.5).label == "hcd1-s1.5"


def _tiny_jointsr(margin: int = 0):
    from models.jointsr import JointSR, JointSRConfig

    torch.manual_seed(0)
    net = JointSR(JointSRConfig(scales=(2, 4, 8), res_num=1, num_feat=16, block=32, band=2, margin=margin)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize("hr, margin", [(True, 0), (False, 0), (True, 2)])
def test_planes_refiner_never_increases_the_loss_and_keeps_the_grey(hr, margin):
    """BBMR through JointSR (models.hcd.PlanesRefiner): the best iterate's loss is at most the unrefined
    picture's; the stacked picture keeps its size, its grey (never read by the client) and [0, 1]; the
    perturbation of the blocks stays in the ball; steps=0 is the packer's picture."""
    import numpy as np

    from bbmr_stream.blocks import BlockGrid, pad_tensor
    from bbmr_stream.planes import active_mask, pack_planes, stack_planes
    from bbmr_stream.resize import to_uint8
    from models.hcd import PlanesObjective, PlanesRefiner

    g, scales = BlockGrid(40, 90, 32), (2, 4, 8)
    f = np.array([2, 4, 8, 8, 2, 4], np.uint8)
    x = torch.rand(1, 3, 40, 90)
    xp = pad_tensor(x, 32)
    net = _tiny_jointsr(margin)
    packed = stack_planes(pack_planes(x, g, f, scales), g, scales)
    assert np.array_equal(to_uint8(PlanesRefiner(net, g, scales, HCDConfig(steps=0))(xp, f, (40, 90))), packed)
    cfg = HCDConfig(steps=1, eps=6, alpha=2, hr=hr)
    ref = PlanesRefiner(net, g, scales, cfg)
    s = ref(xp, f, valid=(40, 90))
    before, after = ref.losses[0]
    assert after <= before
    obj = PlanesObjective(net, xp, g, f, scales, (40, 90))
    s0 = torch.from_numpy(packed).permute(2, 0, 1)[None].float() / 255
    assert obj.value_and_grad(s, False)[0] <= obj.value_and_grad(s0, False)[0] + 1e-3  # vs the 8-bit packed one
    mask = active_mask(g, f, scales)
    assert s.shape == s0.shape and 0 <= float(s.min()) and float(s.max()) <= 1
    assert torch.all((s - 128 / 255).abs()[(mask == 0).expand_as(s)] < 1e-6)  # the grey is untouched
    if not hr:  # LR stage only: the blocks moved inside the ball (RMS per moving value, 8-bit scale)
        d = (s - s0.clamp(0, 1))[mask.expand_as(s) > 0]
        assert float(d.pow(2).mean().sqrt()) * 255 <= cfg.eps + 0.6  # + the 8-bit rounding of s0
    if margin or not hr:
        return
    ref(xp, f, valid=(40, 90))  # warm start from the previous frame: still never worse
    assert ref.losses[1][1] <= ref.losses[1][0]
    f2 = np.roll(f, 1)  # another map: the warm start is masked to the new blocks
    s2 = ref(xp, f2, valid=(40, 90))
    m2 = active_mask(g, f2, scales)
    assert torch.all((s2 - 128 / 255).abs()[(m2 == 0).expand_as(s2)] < 1e-6)


def test_planes_objective_gradient_is_the_model_s():
    """The objective's gradient w.r.t. the stacked picture matches a finite difference along it."""
    import numpy as np

    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.planes import active_mask, pack_float
    from models.hcd import PlanesObjective

    g, scales = BlockGrid(64, 64, 32), (2, 4, 8)
    f = np.array([2, 4, 8, 2], np.uint8)
    torch.manual_seed(2)
    xp = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    net = _tiny_jointsr().double()
    obj = PlanesObjective(net, xp, g, f, scales)
    s = pack_float(xp, g, f, scales).detach()
    v, grad = obj.value_and_grad(s)
    assert float(grad[(active_mask(g, f, scales) == 0).expand_as(grad)].abs().max()) == 0.0  # grey: unread
    d = torch.randn_like(s) * active_mask(g, f, scales).double()
    h = 1e-5
    fd = (obj.value_and_grad(s + h * d, False)[0] - obj.value_and_grad(s - h * d, False)[0]) / (2 * h)
    assert fd == pytest.approx(float((grad * d).sum()), rel=1e-4)
