"""bbmr-live (player.live_cli): sender and viewer on loopback (selftest), map carriage, offline agreement,
malformed offers, two senders in one process, the library configs."""

import asyncio
import json
import socket

import pytest

from player.live_cli import main as live

pytestmark = pytest.mark.e2e


def _selftest(tmp_path, *extra):
    out = tmp_path / "st.json"
    assert live(["selftest", "--frames", "24", "--size", "256x192", "--fps", "12", "--device", "cpu",
                 "--json", str(out)] + list(extra)) == 0
    return json.loads(out.read_text())


def test_selftest_h264_maps_in_sei_and_offline_agreement(tmp_path):
    r = _selftest(tmp_path, "--offline")
    assert r["frames_sent"] == 24 and r["frames_received"] >= 18
    assert r["maps_sei"] >= 0.95 * r["frames_received"] and r["maps_invalid"] == 0
    assert r["psnr_frames"] >= 10 and r["psnr_y_bicubic_mean"] > 20
    assert abs(r["offline"]["live_minus_offline_db"]) <= 1.0, r["offline"]
    assert r["latency_ms_median"] is not None and r["latency_ms_median"] < 5000
    assert r["kbps_received"] > 0 and r["kbps_encoded"] > 0  # the byte counters of bbmr_stream.rtc


def test_selftest_vp8_maps_on_the_data_channel(tmp_path):
    r = _selftest(tmp_path, "--codec", "vp8")
    assert r["maps_sei"] == 0 and r["maps_channel"] >= 0.95 * r["frames_received"] > 0
    h = _selftest(tmp_path)  # same frames by H.264: a wrongly keyed map would cost many dB
    assert abs(r["psnr_y_bicubic_mean"] - h["psnr_y_bicubic_mean"]) < 1.5


def test_map_channel_keys_by_first_pts_and_tolerates_one_tick():
    import base64

    from player.live_maps import MapChannel

    ch = MapChannel()
    for pts in (30000, 33000, 36000):
        ch.add(json.dumps({"pts": pts, "map": base64.b64encode(bytes([pts // 1000])).decode(), "t": 1.0}))
    assert ch.lookup(0) is None  # offset unknown until the sender says which frame came first
    ch.add(json.dumps({"first_pts": 30000}))
    assert ch.lookup(3000)[0] == bytes([33]) and ch.lookup(6001)[0] == bytes([36])
    assert ch.lookup(9000) is None
    ch.add("not json")
    ch.add(json.dumps({"pts": "x"}))


@pytest.mark.parametrize("body,ctype", [(b"", "application/json"), (b"not json", "application/json"),
                                        (b'{"type": "offer"}', "application/json"),
                                        (b'{"sdp": "garbage", "type": "offer"}', "application/json"),
                                        (b'[1, 2]', "application/json"),
                                        (b"x" * (1 << 20), "application/json")])
def test_malformed_offers_get_4xx_and_the_server_keeps_serving(body, ctype):
    from aiohttp.test_utils import TestClient, TestServer

    from packager.live_send import LiveStats, Sender

    async def go():
        sender = Sender(track=None, stats=LiveStats())
        async with TestClient(TestServer(sender.app())) as client:
            r = await client.post("/offer", data=body, headers={"Content-Type": ctype})
            assert 400 <= r.status < 500, (r.status, await r.text())
            assert "error" in json.loads(await r.text())
            assert (await client.get("/")).status == 200
        assert not sender.pcs

    asyncio.run(go())


def test_no_port_left_behind():
    """The library's selftest (no CLI) frees the sender's port and leaves no thread behind."""
    from player.live_selftest import SelftestConfig, selftest

    before = {t for t in __import__("threading").enumerate()}
    r = selftest(SelftestConfig(frames=24, size=(256, 192), fps=12.0, device="cpu"))
    assert r["frames_sent"] == 24 and r["maps_sei"] > 0 and "offline" not in r
    port = r["sender_port"]
    with socket.socket() as s:  # the signalling server's port is free again (a live listener would refuse
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the bind even with SO_REUSEADDR)
        s.bind(("127.0.0.1", port))
    after = [t for t in __import__("threading").enumerate() if t not in before and t.is_alive()
             and not t.daemon]
    assert not after, after


def test_viewer_page_in_headless_chromium(tmp_path):
    """The --serve page shows the live picture and the stats: a selftest serves it, Debian's Chromium
    (launched here, headless) loads it, takes a screenshot and dumps the DOM."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    import numpy as np
    from PIL import Image

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (apt-get install chromium; make test does it as root)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "player.live_cli", "selftest", "--frames", "400", "--fps", "12",
                             "--size", "256x192", "--device", "cpu", "--upscaler", "jointsr",
                             "--serve", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        shown = 0
        while time.time() < deadline and not shown:
            time.sleep(0.5)
            try:
                shown = json.loads(urllib.request.urlopen(url + "stats.json", timeout=2).read())[
                    "frames_superresolved"]
            except OSError:
                pass
        assert shown, "the viewer page never showed a super-resolved frame"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,700",
                 "--virtual-time-budget=4000"]
        shot = tmp_path / "page.png"
        subprocess.run([exe, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
        dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, timeout=120, text=True).stdout
    finally:
        proc.terminate()
        proc.wait(60)
    assert "frames_received" in dom and "maps_matched" in dom, dom[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"), np.float64)
    picture = img[60:400, 10:890]  # where the side-by-side image sits
    assert picture.std() > 20, "the live picture area is blank"
    shutil.copy(shot, tmp_path.parent / "bbmr_live_page.png")  # kept for a look


def _viewers(port: int, n: int, codec: str = "h264"):
    from player.live_view import ViewConfig, Viewer

    viewers = [Viewer(ViewConfig(f"http://127.0.0.1:{port}/", codec=codec, upscaler="bicubic", device="cpu",
                                 fps=12.0)) for _ in range(n)]
    for v in viewers:
        v.start()
    return viewers


def test_late_joiner_gets_a_keyframe_and_the_current_map():
    """A second viewer connecting mid-stream decodes from its first frame (its encoder starts with a
    keyframe) and every frame it receives carries its own map."""
    from packager.live_send import SendConfig, start_sender

    async def go():
        sender = await start_sender(SendConfig(size=(256, 192), fps=12.0, realloc_every=5, device="cpu", port=0,
                                               frames=60))
        viewers = _viewers(sender.port, 2)
        try:
            await viewers[0].connect()
            while sender.stats.frames_sent < 20:
                await asyncio.sleep(0.1)
            await viewers[1].connect()  # joins mid-stream
            t = asyncio.get_running_loop().time()
            while viewers[1].stats.shown < 5 and asyncio.get_running_loop().time() - t < 30:
                await asyncio.sleep(0.2)
        finally:
            for v in viewers:
                await v.close()
            await sender.close()
        late = viewers[1].stats
        assert late.shown >= 5 and late.maps_sei == late.received and late.maps_reused == 0
        assert viewers[1].error is None and viewers[0].error is None

    asyncio.run(go())


def test_two_senders_in_one_process_keep_their_own_maps():
    """Each sender's H.264 encoders read that sender's maps only: two senders of different sizes (different
    block grids) in one process, a viewer on each; a map of the other stream would not fit (maps_invalid)."""
    from packager.live_send import SendConfig, start_sender

    async def go():
        senders = [await start_sender(SendConfig(size=size, fps=12.0, device="cpu", port=0, frames=24))
                   for size in ((256, 192), (384, 256))]
        viewers = [_viewers(s.port, 1)[0] for s in senders]
        try:
            for v in viewers:
                await v.connect()
            t = asyncio.get_running_loop().time()
            while min(v.stats.shown for v in viewers) < 8 and asyncio.get_running_loop().time() - t < 40:
                await asyncio.sleep(0.2)
        finally:
            for v in viewers:
                await v.close()
            for s in senders:
                await s.close()
        for v, s in zip(viewers, senders):
            st = v.stats
            assert st.shown >= 8 and st.maps_sei == st.received and st.maps_invalid == 0, st
            assert v.connection.stream["width"] == s.sender.stream["width"]
            assert 0 < v.connection.bytes and 0 < s.stats.encoded_bytes
        assert all(v.error is None for v in viewers)

    asyncio.run(go())


def test_configs_are_frozen_and_picklable():
    import dataclasses
    import pickle

    from packager.live_send import SendConfig
    from player.live_selftest import SelftestConfig
    from player.live_view import ViewConfig

    for cfg in (SendConfig(), ViewConfig("http://127.0.0.1:8080/", serve=("127.0.0.1", 8090)), SelftestConfig()):
        assert pickle.loads(pickle.dumps(cfg)) == cfg
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.fps = 1.0


@pytest.mark.parametrize("argv", [["selftest", "--frames", "0"], ["selftest", "--size", "63x64"],
                                  ["selftest", "--size", "big"], ["send"], ["view", "http://x/", "--serve", "nope"],
                                  ["view", "http://127.0.0.1:9/", "--device", "cpu", "--upscaler", "bicubic"]])
def test_bad_input_exits_2_with_one_line(argv, capsys):
    assert live(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bbmr-live: error: "), err
