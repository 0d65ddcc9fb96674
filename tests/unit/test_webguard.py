"""bbmr_stream.webguard: loopback detection, tokens, rate limits, and static files that never leave their
directory (raw HTTP requests, so no client normalises the path first)."""

from __future__ import annotations

import asyncio
import os

import pytest

from bbmr_stream.errors import InputError
from bbmr_stream.webguard import (
    Rate,
    RateLimiter,
    check_token,
    is_loopback,
    safe_file,
    server_token,
    token_ok,
    url_with_token,
)

SECRET = b"secret outside the stream directory"


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
                                       ("localhost", True), ("0.0.0.0", False), ("::", False),
                                       ("192.168.1.10", False), ("example.org", False), ("", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_server_token():
    assert server_token("127.0.0.1", None) is None
    t = server_token("0.0.0.0", None)
    assert t and len(t) >= 16 and server_token("0.0.0.0", None) != t  # generated, fresh each time
    assert server_token("127.0.0.1", "a" * 16) == "a" * 16  # a given token is required on loopback too
    for bad in ("short", "x" * 300, "has space in it!!", "semi;colon-xxxxxxxxx"):
        with pytest.raises(InputError):
            server_token("0.0.0.0", bad)
    assert check_token("A-z_09" * 3) == "A-z_09" * 3
    assert url_with_token("http://h:1/", "T" * 16) == "http://h:1/?token=" + "T" * 16
    assert url_with_token("http://h:1/", None) == "http://h:1/"
    assert token_ok(None, None) and token_ok("x", None)
    assert not token_ok(None, "t" * 16) and not token_ok("t" * 15, "t" * 16) and token_ok("t" * 16, "t" * 16)
    assert not token_ok("t" * 15 + "\udcff", "t" * 16)  # undecodable header bytes: refused, no exception


def test_rate_limiter_token_bucket():
    now = [0.0]
    lim = RateLimiter(Rate(per_second=0.5, burst=2), clock=lambda: now[0])
    assert lim.allow("a") == 0 and lim.allow("a") == 0
    assert lim.allow("a") == pytest.approx(2.0)  # empty: one token per 2 s
    assert lim.allow("b") == 0  # per client
    now[0] = 2.0
    assert lim.allow("a") == 0
    assert lim.allow("a") > 0
    with pytest.raises(InputError):
        RateLimiter(Rate(per_second=0, burst=1))


def test_rate_limiter_memory_is_bounded(monkeypatch):
    import bbmr_stream.webguard as wg

    monkeypatch.setattr(wg, "MAX_CLIENTS", 10)
    lim = RateLimiter(Rate())
    for i in range(100):
        lim.allow(f"10.0.0.{i}")
    assert len(lim.buckets) == 10


@pytest.fixture
def tree(tmp_path):
    """root/ with files, a subdirectory, symlinks out of it and within it; a secret beside root."""
    root = tmp_path / "stream"
    (root / "sub").mkdir(parents=True)
    (root / "master.m3u8").write_text("#EXTM3U\n")
    (root / "manifest.json").write_text("{}")
    (root / "sub" / "seg.m4s").write_bytes(b"segment")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(tmp_path, root / "out")
    os.symlink(root / "master.m3u8", root / "inner.m3u8")
    return root


def test_safe_file(tree):
    assert safe_file(tree, "master.m3u8") == tree / "master.m3u8"
    assert safe_file(tree, "sub/seg.m4s") == tree / "sub" / "seg.m4s"
    for rel in ("", "../secret.txt", "sub/../../secret.txt", "./master.m3u8", "sub//seg.m4s", "/etc/passwd",
                "link.txt", "out/secret.txt", "inner.m3u8", "sub", "..\\secret.txt", "master.m3u8\x00",
                "missing.m4s", "master.m3u8/"):
        assert safe_file(tree, rel) is None, rel


async def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Status and body of ``GET target`` sent byte for byte (no client-side path normalisation)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await w.drain()
    data = await r.read()
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


TRAVERSALS = ["/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/..%2fsecret.txt",
              "/sub/%2e%2e/%2e%2e/secret.txt", "/%252e%252e/secret.txt", "/..%5csecret.txt",
              "/sub/..%5c..%5csecret.txt",
              "//secret.txt", "/%2fetc%2fpasswd", "/link.txt", "/out/secret.txt", "/out%2fsecret.txt",
              "/./master.m3u8/../../secret.txt", "/%c0%ae%c0%ae/secret.txt", "/master.m3u8%00.txt"]


def _serve(root, token):
    from aiohttp import web

    from player.serve import stream_app

    async def start():
        runner = web.AppRunner(stream_app(root, token))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, runner.addresses[0][1]

    return start


@pytest.mark.parametrize("token", [None, "T0k3n-for-the-tests"])
def test_static_files_never_leave_their_directory(tree, token):
    async def main():
        runner, port = await _serve(tree, token)()
        pre = f"/{token}" if token else ""
        try:
            status, body = await _raw_get(port, pre + "/master.m3u8")
            assert status == 200 and body == b"#EXTM3U\n"
            status, body = await _raw_get(port, pre + "/sub/seg.m4s")
            assert status == 200 and body == b"segment"
            for target in TRAVERSALS:
                status, body = await _raw_get(port, pre + target)
                assert status in (400, 404), (target, status)
                assert SECRET not in body, target
            if token:
                for target in ("/master.m3u8", "/wrong-token-xxxxxxx/master.m3u8", f"/{token[:-1]}/master.m3u8",
                               "/../" + token + "/master.m3u8"):
                    status, body = await _raw_get(port, target)
                    assert status in (401, 404), (target, status)
                    assert b"#EXTM3U" not in body
        finally:
            await runner.cleanup()

    asyncio.run(main())
