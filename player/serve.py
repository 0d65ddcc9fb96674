"""``bbmr-play STREAM --serve HOST:PORT``: publish a stream directory over HTTP for any HLS player (hls.js,
Safari, VLC, ffplay) on the LAN, read-only, with the project's access rules (``bbmr_stream.webguard``).

On loopback the files are at ``http://HOST:PORT/master.m3u8``; on any other address under the token,
``http://HOST:PORT/TOKEN/master.m3u8`` (relative segment URIs resolve under it, so an unmodified HLS player
works). Only regular files below the stream directory are served (no symlinks, no dot segments). Nothing here
prints: :func:`serve_stream` returns the running server and its URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bbmr_stream.errors import InputError
from bbmr_stream.webguard import is_loopback, listen, run_until_stopped, server_token, static_handler


@dataclass(frozen=True)
class ServeConfig:
    """A stream directory served at ``host:port`` (0: any free port); ``token`` as in ``bbmr_stream.webguard``
    (None: generated on a non-loopback address, none on loopback)."""

    stream: str
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None

    def check(self) -> Path:
        root = Path(self.stream)
        if self.stream.startswith(("http://", "https://")):
            raise InputError("--serve serves a local stream directory, not a URL")
        if not (root / "manifest.json").is_file():
            raise InputError(f"{root}: not a stream directory (no manifest.json)")
        if not 0 <= self.port <= 65535:
            raise InputError(f"--serve port {self.port}: 0..65535")
        return root


@dataclass
class RunningServer:
    """A server listening on ``port``; ``url`` is where the master playlist is (token included)."""

    runner: object  # aiohttp.web.AppRunner
    port: int
    url: str

    async def close(self) -> None:
        await self.runner.cleanup()


def cors_origin(origin: str | None, token: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` a response gets for a page of ``origin`` (a browser player on another
    host or port, ``bbmr-play URL --web``): with a token, any origin (the token in the URL is the secret, and it
    was checked before the file was served); without one (a loopback server), loopback pages only, so that a
    web site the user visits cannot read a stream served on this machine."""
    if not origin:
        return None
    if token is not None:
        return "*"
    from urllib.parse import urlsplit

    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return None
    return origin if host and is_loopback(host) else None


def stream_app(root: Path, token: str | None):
    """The aiohttp application: GET (and HEAD) of the files below ``root``, under ``/TOKEN/`` with a token,
    readable by pages of the origins :func:`cors_origin` allows."""
    from aiohttp import web

    async def cors(request, response) -> None:
        allow = cors_origin(request.headers.get("Origin"), token)
        if allow is not None and response.status < 400:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
            response.headers["Vary"] = "Origin"

    app = web.Application()
    app.on_response_prepare.append(cors)
    app.router.add_get("/{path:.*}", static_handler(root, token))
    return app


async def serve_stream(cfg: ServeConfig) -> RunningServer:
    """Start serving ``cfg.stream``; InputError for a directory without a manifest or a bad token, OSError
    (as InputError) when the address cannot be bound."""

    root = cfg.check()
    token = server_token(cfg.host, cfg.token)
    runner, base = await listen(stream_app(root, token), cfg.host, cfg.port, "--serve")
    return RunningServer(runner, runner.addresses[0][1], f"{base}{token + '/' if token else ''}master.m3u8")


def serve(cfg: ServeConfig, on_started: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set or Ctrl-C; ``on_started(url)`` once listening."""

    run_until_stopped(lambda: serve_stream(cfg), on_started, stop)
