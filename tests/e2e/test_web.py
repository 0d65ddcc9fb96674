"""The browser player (``bbmr-play --web``): the page in headless Chromium (Debian's package) plays a packaged
stream with hls.js, super-resolves its plain-sr rendition with onnxruntime-web (WebAssembly here: no GPU) and
matches the Python player; a missing segment and a corrupt model are survived; the server keeps its rules."""

import asyncio
import hashlib
import json
import shutil
import urllib.error
import urllib.request

import pytest

from bbmr_stream.errors import InputError
from player.web import WebConfig, serve_web
from player.web_selftest import web_selftest

SR = "plainsr_x2_crf28"


@pytest.fixture(scope="module")
def web_stream(tmp_path_factory):
    """A 4 s 320x180 pan: two plain rungs and a plain-sr x2 rung measured with FastSR (its ONNX model in web/)."""
    from bbmr_stream.family import parse_ladder
    from bbmr_stream.sample import write_sample
    from packager import PackageConfig, package

    d = tmp_path_factory.mktemp("web")
    write_sample(d / "in.mp4", 320, 180, 4.0, 24)
    package(PackageConfig(str(d / "in.mp4"), str(d / "stream"), segment=0.5, upscaler="fast", device="cpu",
                          measure_frames=4, niqe_frames=0),
            tuple(parse_ladder("plain:160x90:30,plain:28,plain-sr:2:28")))
    return d / "stream"


@pytest.fixture(scope="module")
def blocks_stream(tmp_path_factory):
    """A 2 s 384x256 pan (3x2 blocks): a uniform and a BBMR rung in the planes layout (bicubic scorer)."""
    from bbmr_stream.family import parse_ladder
    from bbmr_stream.sample import write_sample
    from packager import PackageConfig, package

    d = tmp_path_factory.mktemp("webblocks")
    write_sample(d / "in.mp4", 384, 256, 2.0, 24)
    package(PackageConfig(str(d / "in.mp4"), str(d / "stream"), segment=0.5, scorer="bicubic", upscaler="bicubic",
                          device="cpu", measure_frames=2, niqe_frames=0, realloc="every"),
            tuple(parse_ladder("uniform:28,bbmr:28")))
    return d / "stream"


def copy(stream, tmp_path):
    out = tmp_path / "stream"
    shutil.copytree(stream, out)
    return out


def test_export_names_the_model_in_the_manifest(web_stream):
    man = json.loads((web_stream / "manifest.json").read_text())
    by = {r["name"]: r for r in man["renditions"]}
    ref = by[SR]["web_model"]
    data = (web_stream / ref["file"]).read_bytes()
    assert ref["arch"] == "fastsr" and ref["scale"] == 2 and ref["input"] is None
    assert len(data) == ref["bytes"] and hashlib.sha256(data).hexdigest() == ref["sha256"]
    assert by["plain_crf28"]["web_model"] is None


def test_page_super_resolves_like_the_python_player(web_stream):
    r = web_selftest(WebConfig(str(web_stream), port=0, rendition=SR), 24)
    assert r["why"] == "frames" and r["frames_shown"] >= 24, r
    assert r["frames_superresolved"] >= 3 and r["backend"] == "wasm", r
    assert r["renditions_played"] == [SR]
    assert r["parity"]["psnr_y"] >= 40.0, r["parity"]
    assert r["errors"] == [] and r["console_errors"] == [], r
    assert not [e for e in r["hls_errors"] if "fatal" in e], r  # hls.js's own recoveries (a slow append) allowed
    assert r["cross_origin_isolated"] is True  # WebAssembly threads


def test_abr_plays_without_a_pin_and_falls_back_when_sr_is_slow(web_stream):
    """Capped to the plain-sr rung's rate, the ABR takes it (the best PSNR-Y that fits); SR that cannot keep up
    with 1000 fps (any SR here) sends the page to the plain rung that fits, counted."""
    man = json.loads((web_stream / "manifest.json").read_text())
    rate = {r["name"]: r["bitrate_kbps"] for r in man["renditions"]}
    cap = rate[SR] * 1.2
    assert rate["plain_160x90_crf30"] < cap * 0.9 < rate["plain_crf28"]  # the small plain rung fits, the big does not
    r = web_selftest(WebConfig(str(web_stream), port=0), 100000, extra={"max_kbps": cap, "fps_target": 1000})
    assert r["why"] == "ended" and r["frames_shown"] >= 30 and r["errors"] == [], r
    assert SR in r["renditions_played"] and r["sr_fallbacks"] >= 1, r  # in play order: the lowest first, then SR
    assert r["renditions_played"][-1] == "plain_160x90_crf30" and "plain_crf28" not in r["renditions_played"], r
    assert r["renditions_played"][0] == "plain_160x90_crf30"  # no estimate before the first segment: the lowest
    assert any("below the 1000 fps" in n for n in r["notes"]), r["notes"]


def test_missing_segment_is_survived(web_stream, tmp_path):
    s = copy(web_stream, tmp_path)
    (s / f"{SR}_00001.m4s").unlink()
    r = web_selftest(WebConfig(str(s), port=0, rendition=SR), 1000)  # the whole clip
    assert r["why"] == "ended", r
    assert any("fragLoadError" in e for e in r["hls_errors"]), r
    assert r["frames_shown"] >= 30 and r["errors"] == [], r


def test_corrupt_model_falls_back_to_bicubic(web_stream, tmp_path):
    s = copy(web_stream, tmp_path)
    model = s / "web" / "fastsr-x2.onnx"
    b = bytearray(model.read_bytes())
    b[len(b) // 2] ^= 0xFF
    model.write_bytes(bytes(b))
    r = web_selftest(WebConfig(str(s), port=0, rendition=SR), 20)
    assert r["frames_shown"] >= 20 and r["frames_superresolved"] == 0 and r["parity"] is None, r
    assert any("sha256" in n and "bicubic" in n for n in r["notes"]), r["notes"]
    # the manifest vouches for the bytes, but they are not a model: onnxruntime refuses, the page carries on
    man = json.loads((s / "manifest.json").read_text())
    junk = b"not an onnx graph" * 100
    model.write_bytes(junk)
    for rend in man["renditions"]:
        if rend["web_model"]:
            rend["web_model"].update(bytes=len(junk), sha256=hashlib.sha256(junk).hexdigest())
    (s / "manifest.json").write_text(json.dumps(man))
    r = web_selftest(WebConfig(str(s), port=0, rendition=SR), 20)
    assert r["frames_shown"] >= 20 and r["frames_superresolved"] == 0, r
    assert any("not usable" in n for n in r["notes"]), r["notes"]


@pytest.mark.parametrize("rendition", ["bbmr_crf28", "uniform_crf28"])
def test_block_renditions_unpack_with_their_maps(blocks_stream, rendition):
    """BBMR and uniform pictures cut with each frame's scale map from the SEI (hls.js's userdata) and upscaled
    per block by the canvas: the Python player's bicubic reconstruction within the canvas's resampling error."""
    r = web_selftest(WebConfig(str(blocks_stream), port=0, rendition=rendition), 30)
    assert r["why"] == "frames" and r["frames_unpacked"] >= 30 and r["renditions_played"] == [rendition], r
    assert r["maps_received"] >= 4 and r["maps_invalid"] == 0 and r["frames_without_map"] == 0, r
    assert r["errors"] == [] and r["console_errors"] == [], r
    assert r["parity"]["python_upscaler"] == "bicubic" and r["parity"]["psnr_y"] >= 35.0, r["parity"]


def _get(url, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


def test_server_rules(web_stream):
    async def go(cfg, paths):
        running = await serve_web(cfg)
        try:
            base = running.url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
            root = f"http://127.0.0.1:{running.port}"
            loop = asyncio.get_running_loop()  # "/..." paths: from the server's root, without the token
            return running.url, [await loop.run_in_executor(None, _get, (root if p.startswith("/") else base) + p, d)
                                 for p, d in paths]
        finally:
            await running.close()

    paths = [("", None), ("app/app.js", None), ("lib/hls/hls.min.js", None), ("lib/ort/ort.min.js", None),
             ("stream/manifest.json", None), ("stream/../stream/manifest.json", None),
             ("lib/ort/../package.json", None), ("app/%2e%2e/index.html", None), ("nothing/here", None),
             ("selftest/result", b"{}")]
    url, res = asyncio.run(go(WebConfig(str(web_stream), port=0), paths))
    codes = [c for c, _, _ in res]
    assert codes[:5] == [200] * 5, codes
    assert codes[5:] == [404] * 5, codes  # no dot segments, nothing outside the roots, no selftest POST
    assert res[0][1]["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert res[0][1]["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "src=stream/" in url
    # off loopback: a token, in the path
    url, res = asyncio.run(go(WebConfig(str(web_stream), host="0.0.0.0", port=0, token="t" * 20),
                              [("", None), ("stream/manifest.json", None), ("/", None), ("/stream/manifest.json", None),
                               ("/" + "u" * 20 + "/", None)]))
    assert "/" + "t" * 20 + "/" in url
    assert [c for c, _, _ in res] == [200, 200, 401, 401, 401]
    # /TOKEN without its slash: redirected (the page's relative URLs need it)
    url, res = asyncio.run(go(WebConfig(str(web_stream), host="0.0.0.0", port=0, token="t" * 20),
                              [("/" + "t" * 20, None)]))
    assert res[0][0] == 200 and b"<canvas" in res[0][2]  # urllib followed the redirect to the page


def test_bad_options_are_one_line_errors(web_stream, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no manifest.json"):
        WebConfig(str(tmp_path)).check()
    with pytest.raises(InputError, match="--rendition nope"):
        WebConfig(str(web_stream), rendition="nope").check()
    with pytest.raises(InputError, match="--web-backend"):
        WebConfig(str(web_stream), backend="webgl").check()
    with pytest.raises(InputError, match="local stream directory"):
        web_selftest(WebConfig("http://127.0.0.1:9/stream/"), 5)
    monkeypatch.setenv("BBMR_WEB_MODULES", str(tmp_path))
    with pytest.raises(InputError, match="make web"):
        asyncio.run(serve_web(WebConfig(str(web_stream), port=0)))


def test_page_plays_a_stream_served_elsewhere(web_stream):
    """``bbmr-play URL --web``: the page on one server, the stream on another (``--serve``, CORS): it plays."""
    from player.serve import ServeConfig, serve_stream
    from player.web_selftest import run_page

    async def go():
        served = await serve_stream(ServeConfig(str(web_stream), port=0))
        try:
            return await run_page(WebConfig(served.url, port=0, rendition=SR), 20, 120)
        finally:
            await served.close()

    result, sink, errors = asyncio.run(go())
    assert result["frames_shown"] >= 20 and result["frames_superresolved"] >= 3, result
    assert result["errors"] == [] and errors == [] and sink.frame is not None


def test_serve_allows_other_origins_only_under_a_token():
    """--serve's CORS: with a token, any page that has the URL may read; without one (loopback), loopback pages
    only: a web site the user visits cannot read a stream served on this machine."""
    from player.serve import cors_origin

    assert cors_origin("https://evil.example", None) is None
    assert cors_origin("http://127.0.0.1:8088", None) == "http://127.0.0.1:8088"
    assert cors_origin("http://localhost:9000", None) == "http://localhost:9000"
    assert cors_origin("http://[::1]:9000", None) == "http://[::1]:9000"
    assert cors_origin("https://evil.example", "t" * 20) == "*"
    assert cors_origin(None, None) is None and cors_origin("null", None) is None


def test_cli_errors_are_one_line(tmp_path, capsys):
    from player.cli import main

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"version": 1, "source": {}}')
    for args in (["--web", "--selftest", "2"], ["--web", "127.0.0.1:0", "--rendition", "x"],
                 ["--selftest", "2", "--serve", "127.0.0.1:0"]):
        assert main([str(bad), *args]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, err
