"""Per-title models end to end: packaged (--adapt), listed and counted in the stream, fetched, verified and used
by the player, and every unusable model a flagged fallback to the generic weights."""

import functools
import hashlib
import http.server
import json
import re
import shutil
import threading

import pytest

from bbmr_stream.family import parse_ladder
from bbmr_stream.manifest import load
from models.adapt import AdaptConfig
from packager import PackageConfig, package
from player import PlayConfig, play
from player.cli import main as play_cli
from tests.media import FPS, N, _clip

ADAPT = AdaptConfig(steps=25, patch=32, batch=4, warmup=5, seed=1)
SR = "plainsr_x2_crf30"


def _package(src, out, adapt=ADAPT):
    return package(PackageConfig(str(src), str(out), segment=0.4, upscaler="fast", device="cpu", measure_frames=0,
                                 adapt=adapt), tuple(parse_ladder("plain-sr:2:30,plain:30")))


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt")
    src = d / "in.mp4"
    _clip(src)
    out = d / "stream"
    _package(src, out)
    return src, out


def test_model_is_listed_and_counted(adapted, tmp_path):
    src, out = adapted
    man = load(out)
    sr, plain = man.renditions
    assert plain.models == [] and "model" not in plain.parts_kbps and plain.psnr_y_generic is None
    assert sr.psnr_y_generic is not None and sr.psnr_y != sr.psnr_y_generic  # both measured, on the same frames
    (m,) = sr.models
    data = (out / m.file).read_bytes()
    assert (m.bytes, m.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (m.arch, m.scale, m.first_segment, m.segments, m.base) == ("fastsr", 2, 0, len(sr.segments), "fastsr-x2")
    dur = N / FPS
    seg_bytes = sum(s.bytes for s in sr.segments) + sr.init.bytes  # fMP4: the init segment counts too
    assert sr.parts_kbps["model"] == pytest.approx(m.bytes * 8 / dur / 1000, abs=1e-3)
    assert sr.bitrate_kbps == pytest.approx((seg_bytes + m.bytes) * 8 / dur / 1000, abs=0.01)
    assert sum(sr.parts_kbps.values()) == pytest.approx(sr.bitrate_kbps, abs=0.01)
    # master.m3u8: AVERAGE-BANDWIDTH and BANDWIDTH include the model, spread over the segments it serves
    master = (out / "master.m3u8").read_text()
    bw = {u: (int(a), int(b)) for a, b, u in re.findall(r"BANDWIDTH=(\d+),AVERAGE-BANDWIDTH=(\d+).*\n(\S+)", master)}
    peak, avg = bw[sr.playlist]
    assert avg == pytest.approx(sr.bitrate_kbps * 1000, abs=10)
    share = [(m.bytes + sr.init.bytes) * s.duration_s / sum(x.duration_s for x in sr.segments) for s in sr.segments]
    assert peak == pytest.approx(max((s.bytes + e) * 8 / s.duration_s for s, e in zip(sr.segments, share)), abs=2)
    assert man.conventions["adapt"]["renditions"][SR]["steps"] == ADAPT.steps
    # the same seed and steps give the same model, bit for bit
    again = _package(src, tmp_path / "again")
    assert again.renditions[0].models[0].sha256 == m.sha256


def _play(where, src, **kw):
    return play(PlayConfig(str(where), rendition=SR, headless=True, reference=str(src), niqe_every=0, device="cpu",
                           **kw))


def test_player_uses_the_model(adapted):
    src, out = adapted
    r = _play(out, src)
    sr = load(out).renditions[0]
    assert r.stream["models"] == [sr.models[0].file] and r.extra["model_fallbacks"] == []
    assert r.to_dict()["pooled_metrics"]["psnr_y"]["mean"] == pytest.approx(sr.psnr_y, abs=0.02)


def test_player_fetches_the_model_over_http(adapted):
    src, out = adapted
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = _play(f"http://127.0.0.1:{srv.server_address[1]}/", src)
    finally:
        srv.shutdown()
    assert r.stream["models"] == [load(out).renditions[0].models[0].file] and r.extra["model_fallbacks"] == []


def _wrong_arch(path):
    """Overwrite ``path`` with an OmniSR x2 title model (another architecture than the manifest's)."""
    from models import title
    from models.omnisr import OmniSR, OmniSRConfig
    from models.registry import SRModel

    cfg = OmniSRConfig(scale=2, num_feat=8, res_num=1, window_size=4)
    title.save(SRModel(OmniSR(cfg), 2), path, "omnisr", cfg.to_dict(),
               title.Base("omnisr-light-x2", cfg.to_dict(), "0" * 64), {}, "fp16")


@pytest.mark.parametrize("case,cause", [("missing", "missing"), ("corrupt", "sha256"), ("oversized", "oversized"),
                                        ("wrong_arch", "arch"), ("truncated", "size")])
def test_unusable_model_falls_back_flagged(adapted, tmp_path, case, cause):
    src, out = adapted
    bad = tmp_path / "s"
    shutil.copytree(out, bad)
    man = json.loads((bad / "manifest.json").read_text())
    ref = man["renditions"][0]["models"][0]
    f = bad / ref["file"]
    if case == "missing":
        f.unlink()
    elif case == "corrupt":
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    elif case == "oversized":
        f.write_bytes(f.read_bytes() + b"\0" * 4096)
    elif case == "truncated":
        f.write_bytes(f.read_bytes()[:100])
    elif case == "wrong_arch":  # a valid file of the right size and sha256, but not the architecture declared
        _wrong_arch(f)
        data = f.read_bytes()
        ref["bytes"], ref["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.warns(UserWarning, match="playing the generic"):
        r = _play(bad, src)
    (fb,) = r.extra["model_fallbacks"]
    assert fb["cause"] == cause and fb["file"] == ref["file"] and r.stream["models"] == []
    assert len(r.frames) == N and r.extra["concealed_frames"] == 0  # played, with the generic weights
    assert play_cli([str(bad), "--headless", "--rendition", SR, "--strict", "--device", "cpu"]) == 3


def test_a_forced_other_upscaler_does_not_fetch_the_model(adapted, tmp_path):
    """--upscaler omnisr over a FastSR title model: generic OmniSR plays, the model is neither fetched nor counted
    in the ABR's downloads, and that is no fallback."""
    src, out = adapted
    trace = tmp_path / "trace.txt"
    trace.write_text("0 0.5\n1 0.5\n")
    r = _play(out, src, upscaler="omnisr", trace=str(trace))
    assert r.stream["models"] == [] and r.extra["model_fallbacks"] == []
    sr = load(out).renditions[0]
    seg0 = r.extra["abr"]["segments"][0]
    assert seg0["rendition"] == SR  # the lowest rate first
    first = sr.segments[0].bytes + sr.init.bytes  # the fMP4 init segment comes with the first segment
    assert seg0["download_s"] == pytest.approx(first * 8 / 0.5e6, rel=1e-6)
    r = _play(out, src, trace=str(trace))  # the model's upscaler: its bytes come with the first segment
    assert r.extra["abr"]["segments"][0]["download_s"] == pytest.approx(
        (first + sr.models[0].bytes) * 8 / 0.5e6, rel=1e-6)


def test_models_only_where_a_rendition_can_use_them(adapted):
    from bbmr_stream.errors import ManifestError
    from bbmr_stream.manifest import from_dict

    _, out = adapted
    good = json.loads((out / "manifest.json").read_text())
    for edit in ({"scale": 4}, {"sha256": "X" * 64}, {"file": "../m.safetensors"}, {"bytes": 1 << 30},
                 {"first_segment": 2}):
        d = json.loads(json.dumps(good))
        d["renditions"][0]["models"][0].update(edit)
        with pytest.raises(ManifestError):
            from_dict(d)
    d = json.loads(json.dumps(good))
    d["renditions"][1]["models"] = d["renditions"][0]["models"]  # a plain rendition
    with pytest.raises(ManifestError, match="no per-title models"):
        from_dict(d)


def test_adapt_options_are_checked(tmp_path, capsys):
    from packager.cli import main as package_cli

    src = tmp_path / "in.mp4"
    _clip(src)
    assert package_cli([str(src), "--out", str(tmp_path / "o"), "--adapt-steps", "5"]) == 2
    assert "need --adapt" in capsys.readouterr().err
    assert package_cli([str(src), "--out", str(tmp_path / "o"), "--adapt", "--adapt-minutes", "-1"]) == 2
    assert not (tmp_path / "o").exists()


def test_auto_ladder_chooses_with_the_models_bytes(tmp_path):
    """--ladder auto --adapt: plain-sr rungs beside the ladder's lower half are adapted, the rungs chosen again on
    the whole title (model bytes in the rate, generic variants beside), and nothing not chosen stays behind."""
    from packager import AutoLadder
    from tests.e2e.test_package_api import Recorder

    src = tmp_path / "in.mp4"
    _clip(src)
    rec = Recorder()
    out = tmp_path / "s"
    man = package(PackageConfig(str(src), str(out), segment=0.4, upscaler="fast", device="cpu", measure_frames=4,
                                adapt=ADAPT), AutoLadder(fast=True, max_rungs=4, sample_segments=0, measure_frames=4),
                  rec)
    note = next(n for n in rec.notes if n.startswith("--adapt:"))
    adapted = [t for t in rec.tasks if t["description"].startswith("adapting ")]
    assert adapted, note
    listed = {s.file for r in man.renditions for s in r.segments} | {m.file for r in man.renditions for m in r.models}
    listed |= {r.playlist for r in man.renditions} | {r.init.file for r in man.renditions}
    listed |= {"master.m3u8", "manifest.json"} | {r.web_model.file for r in man.renditions if r.web_model}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == listed  # the renditions not chosen and the models dropped left no file
    for r in man.renditions:
        if r.models:
            assert r.parts_kbps["model"] > 0 and r.psnr_y_generic is not None
        else:
            assert "model" not in r.parts_kbps and r.psnr_y_generic is None
    # a 1.2 s clip: a model costs more than a whole rung, so the choice takes the generic variant or plain
    assert not any(r.models for r in man.renditions)
