"""What every HTTP server of the project shares: access tokens, per-client rate limits and static files that
never leave their directory (aiohttp).

Conventions:

- A server bound to a loopback address (127.0.0.0/8, ::1, ``localhost``) is open. On any other address it
  requires a token: the one given, else one generated here (:func:`server_token`) that the caller prints with
  the URL. A request carries it as ``Authorization: Bearer TOKEN``, as ``?token=TOKEN`` (a browser opening the
  printed URL) or, for static files, as the first path segment (``/TOKEN/master.m3u8``: relative URIs in HLS
  playlists resolve under it, which a query string would not survive). Without it: 401, and the handler never
  runs (nothing is read or allocated).
- Rate limits are token buckets per client address (``request.remote``), at most :data:`MAX_CLIENTS` clients
  remembered (least recently seen forgotten first): 429 with ``Retry-After`` (seconds).
- Static files (:func:`static_handler`): only regular files below the root, reached without a symlink, with no
  ``.``/``..`` segment, backslash, NUL or leading ``/`` after percent-decoding (aiohttp decodes once; a doubly
  encoded ``%252e%252e`` stays a literal name that does not exist). Refused paths answer 404 like missing ones,
  so a probe learns nothing about the filesystem.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
import secrets
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from bbmr_stream.errors import InputError

TOKEN_HEADER = "Authorization"
TOKEN_QUERY = "token"
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 256
MAX_CLIENTS = 4096  # rate-limit buckets remembered at once (bounded memory under address churn)
STATIC_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment", ".mp4": "video/mp4",
                ".ts": "video/mp2t", ".json": "application/json", ".html": "text/html", ".js": "text/javascript",
                ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".onnx":
                "application/octet-stream", ".jpg": "image/jpeg", ".png": "image/png", ".txt": "text/plain"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; False for any other name or address (``0.0.0.0`` and
    ``::`` bind every interface)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    """A user-given token: :data:`MIN_TOKEN_CHARS`..:data:`MAX_TOKEN_CHARS` URL-safe characters (letters,
    digits, ``-``, ``_``); else InputError."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    if not (MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS) or not set(token) <= ok:
        raise InputError(f"--token: {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} characters from A-Z a-z 0-9 - _")
    return token


def server_token(host: str, token: str | None) -> str | None:
    """The token a server bound to ``host`` requires: ``token`` if given (checked), else a generated one
    (128 bits, URL-safe) on a non-loopback address, else None (open)."""
    if token:
        return check_token(token)
    return None if is_loopback(host) else secrets.token_urlsafe(16)


def url_with_token(url: str, token: str | None) -> str:
    """``url`` with ``?token=`` appended when a token is required (what a server prints)."""
    if not token:
        return url
    return f"{url}{'&' if '?' in url else '?'}{TOKEN_QUERY}={token}"


def request_token(request) -> str | None:
    """The token an aiohttp request carries in its ``Authorization: Bearer`` header or ``?token=`` query."""
    auth = request.headers.get(TOKEN_HEADER, "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer "):].strip()
    return request.query.get(TOKEN_QUERY)


def token_ok(given: str | None, token: str | None) -> bool:
    """Constant-time comparison; every request passes when ``token`` is None."""
    if token is None:
        return True
    if given is None or not given.isascii():  # aiohttp keeps undecodable header bytes as surrogates
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def unauthorized(what: str = "this server"):
    from aiohttp import web

    return web.json_response({"error": f"{what} requires its token (Authorization: Bearer TOKEN or ?token=TOKEN, "
                              "as printed when it started)"}, status=401, headers={"WWW-Authenticate": "Bearer"})


def token_middleware(token: str | None, exempt_prefix: str | None = None):
    """aiohttp middleware: 401 for a request without ``token`` (no-op when ``token`` is None). Paths starting
    with ``exempt_prefix`` are left to their handler (the static files check the token in their path)."""
    from aiohttp import web

    @web.middleware
    async def guard(request, handler):
        if exempt_prefix is None or not request.path.startswith(exempt_prefix):
            if not token_ok(request_token(request), token):
                return unauthorized()
        return await handler(request)

    return guard


@dataclass(frozen=True)
class Rate:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second`` requests per second."""

    per_second: float = 0.5
    burst: int = 5

    def check(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0) or self.burst < 1:
            raise InputError("rate limit: per_second > 0 and burst >= 1")


class RateLimiter:
    """Token buckets per client key (bounded: :data:`MAX_CLIENTS`, least recently seen dropped first).
    ``allow(key)`` -> 0.0 when allowed, else the seconds until the next request would be."""

    def __init__(self, rate: Rate, clock=time.monotonic) -> None:
        rate.check()
        self.rate, self.clock = rate, clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill time)

    def allow(self, key: str) -> float:
        now = self.clock()
        tokens, last = self.buckets.pop(key, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + (now - last) * self.rate.per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate.per_second
        self.buckets[key] = (tokens, now)
        while len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)
        return wait


def rate_middleware(limiter: RateLimiter, paths: tuple[str, ...]):
    """aiohttp middleware: requests to ``paths`` over the client's budget get 429 with ``Retry-After``."""
    from aiohttp import web

    @web.middleware
    async def limit(request, handler):
        if request.path in paths:
            wait = limiter.allow(request.remote or "?")
            if wait > 0:
                return web.json_response({"error": f"too many requests to {request.path}: retry in {wait:.1f} s"},
                                         status=429, headers={"Retry-After": str(math.ceil(wait))})
        return await handler(request)

    return limit


def safe_file(root: Path, rel: str) -> Path | None:
    """The regular file ``root/rel`` if ``rel`` (percent-decoded, ``/``-separated) stays below ``root`` without
    a symlink or a dot segment; None otherwise (refused or missing alike)."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    path = root
    for p in parts:
        path = path / p
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    if not stat.S_ISREG(st.st_mode):
        return None
    real, base = os.path.realpath(path), os.path.realpath(root)
    return path if os.path.commonpath([real, base]) == base else None


def static_handler(root: str | Path, token: str | None = None, name: str = "path"):
    """An aiohttp GET handler serving files below ``root`` (route ``.../{name:.*}``); with a token the route's
    path starts with it (``/{token}/{path}``; 401 without it)."""
    from aiohttp import web

    base = Path(root)

    async def handler(request):
        rel = request.match_info.get(name, "")
        if token is not None:
            head, _, rel = rel.partition("/")
            if not token_ok(head, token):
                return unauthorized()
        path = safe_file(base, rel)
        if path is None:
            raise web.HTTPNotFound(text="not found")
        ctype = STATIC_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-cache",
                                               "X-Content-Type-Options": "nosniff"})

    return handler


async def listen(app, host: str, port: int, option: str):
    """Serve the aiohttp ``app`` on ``host:port`` (0: any free port): (its ``AppRunner``, ``http://HOST:PORT/``).
    An address that cannot be bound is an InputError naming ``option``."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise InputError(f"{option} {host}:{port}: cannot listen ({e.strerror or e})") from None
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{runner.addresses[0][1]}/"


def run_until_stopped(start, on_started=None, stop=None) -> None:
    """Run a server until ``stop`` (a ``threading.Event``) is set or Ctrl-C: ``await start()`` returns an object
    with ``url`` and ``async close()``; ``on_started(url)`` once it listens."""
    import asyncio

    async def main() -> None:
        running = await start()
        if on_started is not None:
            on_started(running.url)
        try:
            while stop is None or not stop.is_set():
                await asyncio.sleep(0.2)
        finally:
            await running.close()

    asyncio.run(main())
