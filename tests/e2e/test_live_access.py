"""Served surfaces under hostile peers (docs/live.md, "Access and limits"): tokens on non-loopback binds (the
live sender, the viewer's page, bbmr-play --serve), the peer limit, the /offer rate limit, and a vanished peer
dropped without stalling the others."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

TOKEN = "test-token-0123456789"
ANY = "0.0.0.0"  # every interface: not loopback, so a token is required; the tests connect through 127.0.0.1


def _cfg(**kw):
    from packager.live_send import SendConfig

    base = dict(size=(128, 96), fps=10.0, device="cpu", port=0, host=ANY, token=TOKEN)
    base.update(kw)
    return SendConfig(**base)


def _viewer(port: int, token: str | None = TOKEN, via_url: bool = False):
    from player.live_view import ViewConfig, Viewer

    url = f"http://127.0.0.1:{port}/" + (f"?token={token}" if via_url and token else "")
    v = Viewer(ViewConfig(url, upscaler="bicubic", device="cpu", fps=10.0, token=None if via_url else token))
    v.start()
    return v


async def _until(cond, timeout: float) -> bool:
    t = time.monotonic()
    while not cond() and time.monotonic() - t < timeout:
        await asyncio.sleep(0.1)
    return cond()


def test_sender_on_any_interface_requires_the_token():
    """401 without (or with a wrong) token, nothing allocated; a viewer with the token in the URL connects and
    receives frames; a generated token is printed in the URL."""
    import aiohttp

    from packager.live_send import start_sender

    async def go():
        sender = await start_sender(_cfg(frames=200))
        base = f"http://127.0.0.1:{sender.port}/"
        assert sender.url.endswith(f"?token={TOKEN}")
        v = None
        try:
            async with aiohttp.ClientSession() as s:
                for headers, query in (({}, ""), ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
                                       ({}, "?token=" + TOKEN[:-1]), ({"Authorization": TOKEN}, "")):
                    async with s.post(base + "offer" + query, data=b'{"sdp": "v=0", "type": "offer"}',
                                      headers=headers) as r:
                        assert r.status == 401, (headers, query)
                        assert "token" in (await r.json())["error"]
                    async with s.get(base + query, headers=headers) as r:
                        assert r.status == 401
                assert not sender.sender.pcs  # nothing allocated
                async with s.get(base + "?token=" + TOKEN) as r:
                    assert r.status == 200
            v = _viewer(sender.port, via_url=True)
            await v.connect()
            assert await _until(lambda: v.stats.received >= 5, 30), v.stats
        finally:
            if v is not None:
                await v.close()
            await sender.close()
        generated = await start_sender(_cfg(token=None, frames=1))
        try:
            assert "?token=" in generated.url and generated.sender.token and len(generated.sender.token) >= 16
        finally:
            await generated.close()
        local = await start_sender(_cfg(host="127.0.0.1", token=None, frames=1))
        try:
            assert local.sender.token is None and "token" not in local.url  # loopback stays open
        finally:
            await local.close()

    asyncio.run(go())


def test_non_ascii_token_and_two_video_sections_are_refused_cleanly():
    """A header with undecodable bytes is a 401, not a server error; an offer with two video sections (each would
    get its own subscription) is a 400."""
    from packager.live_send import start_sender

    async def go():
        sender = await start_sender(_cfg(frames=1))
        try:
            r, w = await asyncio.open_connection("127.0.0.1", sender.port)
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
            await w.drain()
            head = (await r.read()).split(b"\r\n", 1)[0]
            w.close()
            assert head.split()[1] == b"401", head
            import aiohttp

            sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{sender.port}/offer", json={"sdp": sdp, "type": "offer"},
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    assert resp.status == 400 and "more than one video" in (await resp.json())["error"]
            assert not sender.sender.pcs
        finally:
            await sender.close()

    asyncio.run(go())


def test_peer_limit_503_and_offer_rate_limit_429():
    import aiohttp

    from bbmr_stream.webguard import Rate
    from packager.live_send import start_sender

    async def go():
        sender = await start_sender(_cfg(max_peers=1, offer_rate=Rate(per_second=0.01, burst=2), frames=300))
        first = second = None
        try:
            first = _viewer(sender.port)
            await first.connect()
            second = _viewer(sender.port)
            with pytest.raises(ConnectionError, match="503.*sender full"):
                await second.connect()
            assert sender.stats.refused_full == 1 and len(sender.sender.pcs) == 1
            async with aiohttp.ClientSession() as s:  # third offer from this address: over the budget
                async with s.post(f"http://127.0.0.1:{sender.port}/offer", data=b"{}",
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
                    assert "too many requests" in (await r.json())["error"]
            assert await _until(lambda: first.stats.received >= 5, 30)  # the admitted peer is unaffected
        finally:
            for v in (first, second):
                if v is not None:
                    await v.close()
            await sender.close()

    asyncio.run(go())


def test_peer_that_never_connects_is_dropped_after_the_timeout():
    """An offer whose peer never answers ICE (its connection is never completed): dropped after
    ``peer_timeout``, its slot free again."""
    from aiortc import RTCPeerConnection

    from packager.live_send import start_sender

    async def go():
        sender = await start_sender(_cfg(peer_timeout=1.5, max_peers=1, frames=300))
        ghost = RTCPeerConnection()
        try:
            ghost.addTransceiver("video", direction="recvonly")
            await ghost.setLocalDescription(await ghost.createOffer())
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{sender.port}/offer",
                                  json={"sdp": ghost.localDescription.sdp, "type": "offer"},
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    assert r.status == 200
            await ghost.close()  # the answer is never applied: the sender's ICE checks go unanswered
            assert len(sender.sender.pcs) == 1
            assert await _until(lambda: not sender.sender.pcs, 10)
            assert sender.stats.dropped_timeout == 1
        finally:
            await sender.close()

    asyncio.run(go())


def test_vanished_peer_is_dropped_and_the_others_keep_receiving(tmp_path):
    """A viewer process killed with SIGKILL (no goodbye on the wire) stops sending RTCP reports: the sender
    drops it after ``peer_timeout`` while an in-process viewer keeps receiving."""
    from packager.live_send import start_sender

    async def go():
        sender = await start_sender(_cfg(peer_timeout=3.0, frames=100000))
        stay = _viewer(sender.port)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
        proc = subprocess.Popen([sys.executable, "-m", "player.live_cli", "view",
                                 f"http://127.0.0.1:{sender.port}/?token={TOKEN}", "--upscaler", "bicubic",
                                 "--device", "cpu", "--fps", "10", "--seconds", "120"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            await stay.connect()
            peers = sender.sender.peers
            assert await _until(lambda: sum(p["connected"] is not None for p in peers.values()) == 2, 60), \
                "the viewer process never connected"
            await asyncio.sleep(2.0)  # both receiving, RTCP flowing
            assert len(sender.sender.pcs) == 2 and sender.stats.dropped_timeout == 0
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            assert await _until(lambda: len(sender.sender.pcs) == 1, 15)
            gone_after = time.monotonic() - killed
            # silence counts from the peer's last RTCP report, up to one report interval (~1 s, more on a loaded
            # machine) before the kill, and the watchdog looks once a second: 3 s of silence shows 1-8 s after it
            assert sender.stats.dropped_timeout == 1 and 1.0 <= gone_after <= 8.0, gone_after
            before = stay.stats.received
            assert await _until(lambda: stay.stats.received >= before + 10, 20)  # not stalled
            assert stay.error is None
        finally:
            if proc.poll() is None:
                proc.kill()
            await stay.close()
            await sender.close()

    asyncio.run(go())


def test_viewer_page_on_any_interface_requires_its_token():
    import aiohttp

    from player.live_page import serve_page

    async def go():
        runner, url = await serve_page(lambda: None, lambda: {"received": 0}, ANY, 0, None)
        try:
            token = url.split("?token=")[1]
            port = runner.addresses[0][1]
            base = f"http://127.0.0.1:{port}/"
            async with aiohttp.ClientSession() as s:
                for path in ("", "stats.json", "frame.jpg"):
                    async with s.get(base + path) as r:
                        assert r.status == 401, path
                    async with s.get(base + path + "?token=" + token) as r:
                        assert r.status in (200, 503), path  # 503: no frame yet
                async with s.get(base + "stats.json?token=" + token) as r:
                    assert (await r.json()) == {"received": 0}
        finally:
            await runner.cleanup()
        runner, url = await serve_page(lambda: None, dict, "127.0.0.1", 0, None)
        await runner.cleanup()
        assert "token" not in url

    asyncio.run(go())


def test_bbmr_play_serve_publishes_a_stream_behind_a_token(tmp_path):
    """``bbmr-play STREAM --serve 0.0.0.0:0``: the printed URL (token in its path) serves the playlist and its
    relative URIs; without the token 401; SIGTERM stops it."""
    import urllib.error
    import urllib.request

    stream = tmp_path / "stream"
    (stream / "r0").mkdir(parents=True)
    (stream / "manifest.json").write_text(json.dumps({"not": "checked by the server"}))
    (stream / "master.m3u8").write_text("#EXTM3U\nr0/index.m3u8\n")
    (stream / "r0" / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "player.cli", str(stream), "--serve", f"{ANY}:0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        url = line.split(" at ")[1].split()[0].replace(ANY, "127.0.0.1")
        assert url.endswith("/master.m3u8")
        token = url.rsplit("/", 2)[1]
        assert len(token) >= 16
        assert urllib.request.urlopen(url).read().startswith(b"#EXTM3U")
        assert b"ENDLIST" in urllib.request.urlopen(url.replace("master.m3u8", "r0/index.m3u8")).read()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace(token + "/", ""))
        assert e.value.code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("argv", [["send", "--sample", "--token", "short"],
                                  ["send", "--sample", "--max-peers", "0"], ["send", "--sample", "--offer-rate", "0"],
                                  ["send", "--sample", "--peer-timeout", "-1"]])
def test_bad_guard_options_exit_2_with_one_line(argv, capsys):
    from player.live_cli import main as live

    assert live(argv + ["--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bbmr-live: error: "), err


def test_bbmr_play_serve_bad_input(tmp_path, capsys):
    from player.cli import main as play

    assert play([str(tmp_path), "--serve", "127.0.0.1:0"]) == 2
    assert "not a stream directory" in capsys.readouterr().err
