"""Per-title models: the model file (models/title.py) and the fine-tuning (models/adapt.py)."""

import hashlib
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbmr_stream.errors import InputError
from models import title
from models.adapt import AdaptConfig, PatchPool, adapt, frames_to_keep
from models.fastsr import FastSR, FastSRConfig
from models.registry import SRModel
from tests.unit.test_fuzz import mutate

CFG = {"scale": 2, "feat": 8, "feat2": 4}


def tiny(seed: int = 0) -> SRModel:
    torch.manual_seed(seed)
    net = FastSR(FastSRConfig(**CFG))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return SRModel(net, 2).eval()


BASE = title.Base("fastsr-x2", dict(CFG), "0" * 64, tiny(seed=7).net.state_dict())


def write(tmp_path, model=None, config=CFG, name="m.safetensors", encoding="fp16"):
    path = tmp_path / name
    n, sha = title.save(model or tiny(), path, "fastsr", dict(config), BASE, {"steps": 3}, encoding)
    return path, n, sha


def test_delta_int8_round_trip_in_half_the_bytes(tmp_path):
    m = tiny()
    for p in m.parameters():  # a fine-tune: the base plus a small change
        p.data = BASE.state[[k for k, q in m.net.named_parameters() if q is p][0]] + 0.01 * torch.randn_like(p)
    path, n, sha = write(tmp_path, m, encoding="delta-int8")
    full, _, _ = write(tmp_path, m, name="full.safetensors")
    body = lambda f: len(title.parse(f.read_bytes())[2])  # noqa: E731 (the tensors; the header is small at scale)
    assert body(path) < 0.6 * body(full) and n < full.stat().st_size
    got, meta = title.load(path, 2, nbytes=n, sha256=sha, arch="fastsr", base=BASE)
    assert meta["encoding"] == "delta-int8"
    for k, v in m.net.state_dict().items():
        err = (got.net.state_dict()[k] - v).abs().max()
        assert err <= (v - BASE.state[k]).abs().max() / 127 * 0.51 + 1e-6  # half an int8 step at most
    other = title.Base("fastsr-x2", dict(CFG), "1" * 64, BASE.state)  # another base file: refused
    with pytest.raises(title.TitleModelError) as e:
        title.load(path, 2, base=other)
    assert e.value.cause == "arch"
    with pytest.raises(title.TitleModelError):  # no base weights at all: a delta cannot be read
        title.load(path, 2)


def test_delta_int4_round_trip_in_a_quarter_of_fp16(tmp_path):
    m = tiny()
    for p in m.parameters():
        p.data = BASE.state[[k for k, q in m.net.named_parameters() if q is p][0]] + 0.01 * torch.randn_like(p)
    path, n, sha = write(tmp_path, m, encoding="delta-int4")
    i8, _, _ = write(tmp_path, m, name="i8.safetensors", encoding="delta-int8")
    full, _, _ = write(tmp_path, m, name="full.safetensors")
    body = lambda f: len(title.parse(f.read_bytes())[2])  # noqa: E731
    assert body(path) < 0.6 * body(i8) and body(path) < 0.35 * body(full)
    got, meta = title.load(path, 2, nbytes=n, sha256=sha, arch="fastsr", base=BASE)
    assert meta["encoding"] == "delta-int4"
    for k, v in m.net.state_dict().items():
        q, s = title.quantize_delta(v - BASE.state[k], 4)
        assert int(q.abs().max()) <= 7
        want = BASE.state[k] + (q.float().reshape(s.shape[0], -1) * s[:, None]).reshape(v.shape)
        assert torch.allclose(got.net.state_dict()[k], want, atol=1e-7)  # exactly what was quantized
        d = (v - BASE.state[k]).reshape(s.shape[0], -1)
        err = (got.net.state_dict()[k] - v).reshape(d.shape).abs().amax(1)
        assert bool((err <= d.abs().amax(1) * 0.7 + 1e-7).all())  # at worst the clipped excess (clip >= 0.3)
    with pytest.raises(title.TitleModelError):
        title.load(path, 2)  # a delta needs the base weights


def test_int4_packing_is_low_nibble_first():
    assert title.pack_int4(torch.tensor([1, -1, -7], dtype=torch.int8)).tolist() == [0xF1, 0x09]
    assert title.unpack_int4(torch.tensor([0xF1, 0x09], dtype=torch.uint8), 3).tolist() == [1, -1, -7]


def test_int4_pad_nibble_must_be_zero():
    assert title._int4_ok(torch.tensor([0x01], dtype=torch.uint8), 1)
    assert not title._int4_ok(torch.tensor([0x11], dtype=torch.uint8), 1)  # an odd count: the high nibble pads
    assert title._int4_ok(torch.tensor([0x11], dtype=torch.uint8), 2)


@pytest.mark.parametrize("edit", ["nibble8", "huge_scale"])
def test_delta_int4_values_are_checked(tmp_path, edit):
    """A delta file with a value that decodes outside -7..7, or whose finite scale makes the weights overflow:
    refused with cause ``values`` (a fallback, never inf/NaN weights)."""
    path, n, sha = write(tmp_path, encoding="delta-int4")
    meta, specs, body = title.parse(path.read_bytes())
    k = next(k for k, sp in specs.items() if sp.dtype == torch.uint8)
    data = bytearray(path.read_bytes())
    start = len(data) - len(body)
    if edit == "nibble8":
        data[start + specs[k].start] = 0x08
    else:
        sc = specs[k + ".scale"]
        data[start + sc.start:start + sc.start + 4] = struct.pack("<f", 3e38)
    with pytest.raises(title.TitleModelError) as e:
        title.check(*title.parse(bytes(data)), 2, "fastsr", BASE)
    assert e.value.cause == "values"


@pytest.mark.parametrize("numel", [1, 2, 7, 8, 33])
def test_int4_packing_round_trips(numel):
    q = torch.randint(-8, 8, (numel,), dtype=torch.int8)
    p = title.pack_int4(q)
    assert p.dtype == torch.uint8 and p.numel() == (numel + 1) // 2
    assert torch.equal(title.unpack_int4(p, numel), q.float())


def test_int4_clip_beats_absmax_in_squared_error():
    torch.manual_seed(0)
    d = torch.randn(16, 64) * torch.rand(16, 1)  # heavy-ish tails per row: clipping pays
    d[:, 0] *= 8
    q, s = title.quantize_delta(d, 4)
    err = ((q.float() * s[:, None] - d) ** 2).sum(1)
    s0 = d.abs().amax(1) / 7
    err0 = ((torch.round(d / s0[:, None]).clamp(-7, 7) * s0[:, None] - d) ** 2).sum(1)
    assert bool((err <= err0 + 1e-6).all()) and float(err.sum()) < 0.95 * float(err0.sum())


def test_round_trip_in_fp16(tmp_path):
    m = tiny()
    path, n, sha = write(tmp_path, m)
    assert n == path.stat().st_size and sha == hashlib.sha256(path.read_bytes()).hexdigest()
    got, meta = title.load(path, 2, nbytes=n, sha256=sha, arch="fastsr")
    assert meta["base"]["id"] == "fastsr-x2" and meta["adapt"] == {"steps": 3} and meta["format"] == title.FORMAT
    for (k, a), (k2, b) in zip(m.net.state_dict().items(), got.net.state_dict().items()):
        assert k == k2 and torch.equal(a.half().float(), b)  # exactly the fp16 values
    x = torch.rand(1, 3, 12, 10)
    assert torch.allclose(m(x), got(x), atol=2e-3)


@pytest.mark.parametrize("case,cause", [
    ("missing", "missing"), ("oversized", "oversized"), ("size", "size"), ("sha256", "sha256"),
    ("scale", "scale"), ("arch", "arch"), ("garbage", "format"), ("huge_config", "arch"), ("shape", "shape"),
    ("nan", "values"), ("not_title", "format"), ("dtype_list", "format"), ("deep_json", "format"),
    ("big_int", "format"), ("overlap", "format"), ("gap", "format"), ("not_base", "arch"), ("fifo", "format"),
    ("zero_div", "arch")])
def test_bad_models_say_why(tmp_path, case, cause):
    path, n, sha = write(tmp_path)
    kw = {"nbytes": n, "sha256": sha, "arch": "fastsr"}
    scale = 2
    if case == "missing":
        path.unlink()
    elif case == "oversized":
        kw["max_bytes"] = n - 1
    elif case == "size":
        kw["nbytes"] = n + 1
    elif case == "sha256":
        path.write_bytes(mutate(path.read_bytes(), [(n - 3, 7)]))
    elif case == "scale":
        scale = 4
    elif case == "arch":
        kw["arch"] = "omnisr"
    elif case == "garbage":
        path.write_bytes(b"\xff" * 64)
        kw = {}
    elif case == "not_base":  # a valid file whose config is not the base weights' (the client's own registry)
        kw["base"] = title.Base("fastsr-x2", {"scale": 2, "feat": 48, "feat2": 32}, "0" * 64)
    elif case == "fifo":
        path.unlink()
        import os

        os.mkfifo(path)
        kw = {}
    else:
        header_edit(path, case)
        kw = {}
    with pytest.raises(title.TitleModelError) as e:
        title.load(path, scale, **kw)
    assert e.value.cause == cause


def header_edit(path, case):
    """Rewrite a model file's safetensors header (metadata or a tensor) the way ``case`` says."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    head, body = json.loads(data[8:8 + n]), bytearray(data[8 + n:])
    meta = head["__metadata__"]
    if case == "huge_config":  # 10^10 parameters: refused from the meta-device count, nothing allocated
        meta["config"] = json.dumps({"scale": 2, "feat": 100000, "feat2": 100000})
    elif case == "shape":
        meta["config"] = json.dumps({"scale": 2, "feat": 16, "feat2": 4})
    elif case == "not_title":
        meta["format"] = json.dumps("something-else")
    elif case == "nan":
        off = head["body.0.bias"]["data_offsets"][0]
        body[off:off + 2] = np.array([np.nan], np.float16).tobytes()
    elif case == "dtype_list":  # an unhashable dtype
        head["body.0.bias"]["dtype"] = []
    elif case == "deep_json":
        meta["adapt"] = "[" * 100000 + "]" * 100000
    elif case == "big_int":
        meta["adapt"] = "9" * 5000
    elif case == "overlap":  # every tensor over the same bytes: would multiply the memory a small file costs
        for k in head:
            if k != "__metadata__":
                head[k]["data_offsets"] = [0, head[k]["data_offsets"][1] - head[k]["data_offsets"][0]]
    elif case == "gap":
        body += b"\0" * 16
    elif case == "zero_div":  # an OmniSR config that divides by zero when built
        meta["arch"] = json.dumps("omnisr")
        meta["config"] = json.dumps({"scale": 2, "num_feat": 2, "res_num": 1})
    h = json.dumps(head).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + bytes(body))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 600))
def test_parser_fuzz(tmp_path, edits, cut):
    """Mutated or truncated model files (fp16, and delta-int4 read with its base weights): a model or a
    TitleModelError, nothing else (no unpickling path exists)."""
    for enc in ("fp16", "delta-int4"):
        path = tmp_path / f"{enc}.safetensors"
        if not path.exists():
            write(tmp_path, name=path.name, encoding=enc)
        data = mutate(path.read_bytes(), edits)
        data = data[:len(data) - cut] if cut < len(data) else data
        try:
            title.check(*title.parse(data), 2, base=BASE)
        except title.TitleModelError:
            pass


def pool(n=4, k=2):
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    hr = np.stack([np.stack([128 + 100 * np.sin(0.21 * xx + 0.13 * yy * (c + 1) + i) for c in range(3)], -1)
                   for i in range(n)]).astype(np.uint8)
    lr = hr.reshape(n, 24, 2, 32, 2, 3).mean((2, 4)).astype(np.uint8)
    return PatchPool(lr, hr, k, (24, 32))


def test_adaptation_is_deterministic_for_a_seed_and_learns():
    cfg = AdaptConfig(steps=40, seed=3, patch=16, batch=4, warmup=5, lr=5e-3)
    runs = []
    for _ in range(2):
        m = tiny()
        res = adapt(m, pool(), cfg, "fastsr", budget_s=0.0)
        runs.append((m, res))
    (a, ra), (b, rb) = runs
    assert ra.steps == rb.steps == 40
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    other = tiny()
    adapt(other, pool(), AdaptConfig(steps=40, seed=4, patch=16, batch=4, warmup=5, lr=5e-3), "fastsr", 0.0)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))
    p = pool()
    x, y = p.batch(np.random.default_rng(9), 8, 16)
    l1 = lambda m: torch.nn.functional.l1_loss(m(x), y).item()  # noqa: E731
    assert l1(a) < 0.8 * l1(tiny())  # it learned the pairs


def test_budget_and_frames():
    cfg = AdaptConfig()
    assert cfg.budget_minutes(10.0, 1920, 1080) == pytest.approx(1.0)  # 1 min per 10 s of 1080p
    assert cfg.budget_minutes(80.0, 768, 576) == pytest.approx(80 / 10 * 768 * 576 / (1920 * 1080))
    assert cfg.budget_minutes(2.0, 320, 200) == 0.5 and AdaptConfig(minutes=3).budget_minutes(1, 1, 1) == 3
    keep = frames_to_keep(1000, AdaptConfig(frames=10), 1)
    assert len(keep) == 10 and keep[0] == 0 and keep[-1] == 999
    assert len(frames_to_keep(1000, AdaptConfig(mem_mib=16), 4 << 20)) == 4  # the memory cap
    for bad in (AdaptConfig(minutes=0), AdaptConfig(steps=0), AdaptConfig(lr=2.0)):
        with pytest.raises(InputError):
            bad.check()


def test_title_candidates_sit_beside_the_lower_half():
    from bbmr_stream.family import RungSpec
    from packager.titled import title_candidates

    specs = [RungSpec("plain", 30.0, (480, 270)), RungSpec("plain", 26.0, (960, 540)), RungSpec("plain", 22.0)]
    kbps = {specs[0].name: 100.0, specs[1].name: 400.0, specs[2].name: 3000.0}
    got = title_candidates(specs, 1920, 1080, kbps)
    # the two lower-half rungs (<= sqrt(100 * 3000) = 548 kbps), each at x2 and x4, CRFs by the pixel ratio
    assert {s.text for s in got} == {"plain-sr:2:39", "plain-sr:4:30", "plain-sr:2:26", "plain-sr:4:18"}


def test_select_titled_keeps_a_model_only_where_it_pays(tmp_path):
    from bbmr_stream.manifest import ModelRef, Rendition, Segment
    from packager.titled import select_titled

    def rend(name, kind, kbps, psnr, model_kbps=0.0, generic=None):
        seg = Segment(f"{name}_0.ts", 1.0, 100, 0, 10)
        (tmp_path / seg.file).write_bytes(b"x")
        (tmp_path / f"{name}.m3u8").write_bytes(b"x")
        r = Rendition(name, kind, "h264", 30.0, "plain", [1], 1, 10, 10, kbps, f"{name}.m3u8", [seg], psnr_y=psnr,
                      psnr_y_generic=generic, parts_kbps={"video": kbps - model_kbps})
        if model_kbps:
            (tmp_path / "models").mkdir(exist_ok=True)
            (tmp_path / f"models/{name}.st").write_bytes(b"m")
            r.models = [ModelRef(f"models/{name}.st", 1, "0" * 64, "fastsr", 2, 0, 1, "fastsr-x2")]
            r.parts_kbps["model"] = model_kbps
        return r

    rends = [rend("p1", "plain", 100, 30.0), rend("p2", "plain", 400, 34.0), rend("p3", "plain", 1600, 38.0),
             rend("pays", "plain-sr", 210, 33.5, 10, 31.0),  # the model buys 2.5 dB for 5 % more bits: it ships
             rend("drop", "plain-sr", 1500, 36.3, 900, 36.2),  # its model costs more than it buys: generic variant
             rend("gone", "plain-sr", 900, 35.0, 700, 31.0)]  # under the plain front in both variants
    kept = {r.name: r for r in select_titled(rends, 8, 1.3, tmp_path)}
    assert list(kept) == ["p1", "p3", "pays", "drop"]  # p2 is under the SR front, "gone" under plain
    assert kept["pays"].models and (kept["pays"].bitrate_kbps, kept["pays"].psnr_y) == (210, 33.5)
    drop = kept["drop"]
    assert drop.models == [] and (drop.bitrate_kbps, drop.psnr_y, drop.psnr_y_generic) == (600, 36.2, None)
    assert "model" not in drop.parts_kbps
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["pays.st"]
    for r in rends:
        assert (tmp_path / r.playlist).exists() == (r.name in kept)


def test_choose_takes_the_variant_of_a_rung_that_lies_higher_above_the_front():
    from packager.ladder import Point, best_variants, choose

    def pt(rung, name, kbps, psnr, family="plain"):
        return Point(rung, name, family, 10, 10, 30.0, kbps, psnr)

    plain = [pt("p1", "p1", 100, 30.0), pt("p2", "p2", 200, 32.0), pt("p3", "p3", 400, 34.0)]
    generic = pt("sr", "sr", 190, 32.1, "plain-sr")
    titled = pt("sr", "sr+title", 196, 32.6, "plain-sr")  # 3 % dearer, 0.5 dB better: higher above the front
    pts = plain + [generic, titled]
    assert [p.name for p in best_variants(pts, pts)] == ["p1", "p2", "p3", "sr+title"]
    # the generic variant is nearer the rate step after p1, yet the per-title one is the rung
    assert "sr+title" in [p.name for p in choose(pts, ratio=1.5)]
    pts = plain + [generic, pt("sr", "sr+title", 260, 32.6, "plain-sr")]  # its model costs more than it buys
    assert [p.name for p in best_variants(pts, pts)][-1] == "sr"
    pts = plain + [pt("lo", "lo", 80, 29.0, "plain-sr"), pt("lo", "lo+title", 82, 29.4, "plain-sr")]
    assert len(best_variants(pts, pts)) == 5  # under the front's range: both variants stay, as before
    # the variant nearer the front but dominated by another rung is no candidate: the other variant stays one
    plain = [pt("p1", "p1", 100, 30.0), pt("p2", "p2", 200, 33.0), pt("p3", "p3", 400, 34.0)]
    pts = plain + [pt("sr", "sr", 190, 32.75, "plain-sr"), pt("sr", "sr+title", 202, 33.0, "plain-sr")]
    assert "sr" in [p.name for p in choose(pts, ratio=1.3)]


def block_pool(frames: int = 3):
    """A BlockPool of smooth random 192x128 frames (3x2 blocks of 64 px) at mixed scales x2/x4, exact LR tiles."""
    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.downscale import downscale_blocks

    rng = np.random.default_rng(5)
    g = BlockGrid(128, 192, 64)
    blocks, hr = [], []
    for _ in range(frames):
        x = torch.from_numpy(rng.random((1, 3, 32, 48), dtype=np.float32))
        x = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear").mul_(255).round_().div_(255)
        f = rng.choice(np.array([2, 4], np.uint8), size=g.n_blocks)
        blocks.append(downscale_blocks(x, g, f))
        hr.append((x[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    from models.adapt import BlockPool

    return BlockPool(blocks, np.stack(hr))


def tiny_joint():
    from models.jointsr import JointSR, JointSRConfig

    torch.manual_seed(0)
    return JointSR(JointSRConfig(scales=(2, 4), num_feat=16, window_size=4, block=64, band=2, deblock_feat=8)).eval()


def test_block_pool_windows_are_the_frames_blocks():
    p = block_pool()
    tiles, index, hr, win = p.batch(np.random.default_rng(1), 5, 2)
    assert win == 2 and hr.shape == (5, 3, 128, 128)
    assert sorted(torch.cat(list(index.values())).tolist()) == list(range(5 * 4))  # every window block once
    for k, t in tiles.items():
        assert t.shape[1:] == (3, 64 // k, 64 // k)
    # each window is a place in a frame: its HR is the frame's there and its tiles are those blocks' tiles
    got = {int(i): (k, t) for k in tiles for i, t in zip(index[k], tiles[k])}
    for s in range(5):
        crop = (hr[s].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        (f, by, bx), = [(f, by, bx) for f in range(3) for by in range(1) for bx in range(2)
                        if np.array_equal(p.hr[f, by * 64:by * 64 + 128, bx * 64:bx * 64 + 128], crop)]
        for i in range(2):
            for j in range(2):
                k, t = got[s * 4 + i * 2 + j]
                b = (by + i) * 3 + bx + j
                lb = p.blocks[f]
                assert torch.equal(t, lb.tiles[k][list(lb.index[k]).index(b)])
    # a window of the whole frame is the frame: its tiles sit where its LRBlocks put them
    one = block_pool(frames=1)
    one.cols = 2  # windows start at block (0, 0)
    tiles, index, hr, win = one.batch(np.random.default_rng(0), 1, 3)
    assert win == 2  # two block rows: the window is clamped to what the frame has
    assert torch.equal(hr[0], torch.from_numpy(one.hr[0, :, :128]).permute(2, 0, 1).float() / 255)
    lb = one.blocks[0]
    for k in tiles:
        got = {int(i): t for i, t in zip(index[k], tiles[k])}
        for r, b in enumerate(np.asarray(lb.index[k]).tolist()):
            y, x = divmod(b, 3)
            if x < 2:
                assert torch.equal(got[y * 2 + x], lb.tiles[k][r])


def test_jointsr_adaptation_trains_the_chosen_parameters_deterministically():
    from models.adapt import AdaptConfig, adapt

    cfg = AdaptConfig(steps=6, seed=2, lr=3e-3, warmup=2, batch=2)
    head = lambda n: n.startswith(("deblock.", "up."))  # noqa: E731
    runs = []
    for _ in range(2):
        m = tiny_joint()
        res = adapt(m, block_pool(), cfg, "jointsr", 0.0, trainable=head)
        runs.append(m)
        assert res.steps == 6 and res.patch == 2 and res.batch == 2
    a, b = runs
    base = tiny_joint().state_dict()
    sa = a.state_dict()
    assert all(torch.equal(x, y) for x, y in zip(sa.values(), b.state_dict().values()))
    changed = {k for k in sa if not torch.equal(sa[k], base[k])}
    assert changed and all(head(k) for k in changed)
    assert not any(p.requires_grad for p in a.parameters())


def test_title_sr_reports_when_a_model_pays_against_the_generic_weights():
    from bench.title_sr import rung_rows
    from packager.ladder import Point

    front = [Point("a", "a", "plain", 10, 10, 30.0, 100.0, 30.0), Point("b", "b", "plain", 10, 10, 30.0, 200.0, 32.0)]
    titled = Point("sr", "sr", "plain-sr", 5, 5, 30.0, 150.8, 31.5)  # 150 kbps of segments + a 1000-byte model
    generic = Point("sr", "sr", "plain-sr", 5, 5, 30.0, 150.0, 31.0)
    (row,) = rung_rows([titled], {"sr": generic}, front, {"sr": [{"bytes": 1000}]}, 10.0)
    assert row["model_kbps"] == pytest.approx(0.8) and row["gain_db"] == 0.5
    worth = 2 ** 0.75 / 2 ** 0.5 - 1  # the front's rate ratio between 31.5 and 31.0 dB, less 1
    assert row["pays_vs_generic_s"] == pytest.approx(8 / (150.0 * worth), abs=0.05)
    (row,) = rung_rows([titled], {"sr": Point("sr", "sr", "plain-sr", 5, 5, 30.0, 150.0, 31.6)}, front,
                       {"sr": [{"bytes": 1000}]}, 10.0)
    assert row["pays_vs_generic_s"] is None  # the model makes it worse: it never pays
