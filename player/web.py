"""``bbmr-play STREAM --web``: the browser player. One aiohttp server publishes the page (player/web: hls.js
plays the ladder, onnxruntime-web super-resolves plain-sr renditions with the ONNX models the packager exported),
its two libraries from their installed npm packages (``make web``: player/web/package-lock.json) and, for a
local stream, the stream directory, all under the access rules of :mod:`bbmr_stream.webguard` (a token off
loopback; only regular files below each root).

Paths (under ``/TOKEN/`` with a token): ``/`` the page, ``/app/`` its scripts, ``/lib/hls/`` hls.js's
``dist``, ``/lib/ort/`` onnxruntime-web's ``dist``, ``/stream/`` the stream (a URL stream is fetched by the page
from its server, which must allow CORS), ``POST /selftest/{frame,result}`` during ``--selftest`` only. Every
response is cross-origin isolated (COOP same-origin, COEP require-corp): WebAssembly threads need it.

Nothing here prints: :func:`serve_web` returns the running server and the page's URL.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from bbmr_stream.errors import InputError
from bbmr_stream.webguard import (
    STATIC_TYPES,
    listen,
    run_until_stopped,
    safe_file,
    server_token,
    token_ok,
    unauthorized,
)

WEB_ROOT = Path(__file__).parent / "web"
LIBS = {"hls": ("hls.js", "dist", "hls.min.js"), "ort": ("onnxruntime-web", "dist", "ort.min.js")}
BACKENDS = ("auto", "wasm", "webgpu")
MAX_FRAME_UPLOAD = 96 << 20  # a self-test canvas frame as PNG (4K RGBA, incompressible: ~33 MB)
MAX_RESULT_UPLOAD = 1 << 20
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
             "Cache-Control": "no-cache"}


def modules_dir() -> Path:
    """Where the page's npm packages are: ``$BBMR_WEB_MODULES`` or player/web/node_modules."""
    return Path(os.environ.get("BBMR_WEB_MODULES") or WEB_ROOT / "node_modules")


def lib_roots() -> dict[str, Path]:
    """``{"hls": .../hls.js/dist, "ort": .../onnxruntime-web/dist}``, each checked; InputError naming the fix."""
    out = {}
    for key, (pkg, sub, probe) in LIBS.items():
        root = modules_dir() / pkg / sub
        if not (root / probe).is_file():
            raise InputError(f"--web: {pkg} is not installed in {modules_dir()} (run `make web`: npm ci in player/web)")
        out[key] = root
    return out


def load_manifest(root: Path):
    """The stream's manifest, a bad one an InputError (one line, as the Python player says it)."""
    from bbmr_stream.errors import ManifestError
    from bbmr_stream.manifest import load

    try:
        return load(root)
    except ManifestError as e:
        raise InputError(str(e)) from None


@dataclass(frozen=True)
class WebConfig:
    """The browser player: ``stream`` a local stream directory or an http(s) URL of one (its directory or
    master.m3u8); served at ``host:port`` (0: a free port), ``token`` as in ``bbmr_stream.webguard``;
    ``rendition`` pins one (None: the page's ABR); ``backend`` is onnxruntime-web's (auto: WebGPU when the
    browser has an adapter, else WebAssembly)."""

    stream: str
    host: str = "127.0.0.1"
    port: int = 8088
    token: str | None = None
    rendition: str | None = None
    backend: str = "auto"

    @property
    def remote(self) -> bool:
        return self.stream.startswith(("http://", "https://"))

    def check(self) -> Path | None:
        """The local stream directory (None for a URL), options checked; InputError otherwise."""
        if not 0 <= self.port <= 65535:
            raise InputError(f"--web port {self.port}: 0..65535")
        if self.backend not in BACKENDS:
            raise InputError(f"--web-backend {self.backend!r}: one of {', '.join(BACKENDS)}")
        if self.remote:
            return None
        root = Path(self.stream)
        if not (root / "manifest.json").is_file():
            raise InputError(f"{root}: not a stream directory (no manifest.json)")
        if self.rendition is not None:
            names = [r.name for r in load_manifest(root).renditions]
            if self.rendition not in names:
                raise InputError(f"--rendition {self.rendition}: not in the stream ({', '.join(names)})")
        return root

    def page_query(self, selftest: int = 0, extra: dict | None = None) -> str:
        """The page's query string (``?src=...&rendition=...``; ``extra``: more of the page's parameters, e.g.
        ``max_kbps``, ``fps_target``: player/web/app/app.js)."""
        q = {"src": self.stream if self.remote else "stream/", "rendition": self.rendition,
             "backend": None if self.backend == "auto" else self.backend, "selftest": selftest or None,
             **(extra or {})}
        return "?" + "&".join(f"{k}={quote(str(v), safe='/:')}" for k, v in q.items() if v is not None)


@dataclass
class SelftestSink:
    """What the page POSTs during a self-test: its parity frame (PNG bytes and where it was in the video) and
    its result (JSON); ``done`` is set with the result."""

    frame: bytes | None = None
    frame_meta: dict = field(default_factory=dict)
    result: dict | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class RunningWeb:
    runner: object  # aiohttp.web.AppRunner
    port: int
    url: str  # the page, token and query included

    async def close(self) -> None:
        await self.runner.cleanup()


def _file_response(path: Path):
    from aiohttp import web

    ctype = STATIC_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(path, headers={**ISOLATION, "Content-Type": ctype})


def web_app(roots: dict[str, Path], token: str | None, sink: SelftestSink | None):
    """The aiohttp application: the page, its scripts and libraries, the stream, the self-test uploads."""
    import json

    from aiohttp import web

    page = WEB_ROOT / "index.html"

    def strip(request) -> str | None:
        rel = request.match_info.get("path", "")
        if token is None:
            return rel
        head, _, rest = rel.partition("/")
        return rest if token_ok(head, token) else None

    async def get(request):
        if token is not None and request.match_info.get("path", "") == token:  # the page's relative URLs need the /
            raise web.HTTPFound(f"/{token}/{'?' + request.query_string if request.query_string else ''}")
        rel = strip(request)
        if rel is None:
            return unauthorized()
        if rel in ("", "index.html"):
            return _file_response(page)
        top, _, sub = rel.partition("/")
        root = roots.get(top) if top != "lib" else roots.get("lib/" + sub.partition("/")[0])
        if top == "lib":
            sub = sub.partition("/")[2]
        path = safe_file(root, sub) if root is not None else None
        if path is None:
            raise web.HTTPNotFound(text="not found", headers=ISOLATION)
        return _file_response(path)

    async def post(request):
        rel = strip(request)
        if rel is None:
            return unauthorized()
        if sink is None or rel not in ("selftest/frame", "selftest/result"):
            raise web.HTTPNotFound(text="not found", headers=ISOLATION)
        limit = MAX_FRAME_UPLOAD if rel.endswith("frame") else MAX_RESULT_UPLOAD
        if (request.content_length or 0) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        body = await request.read()  # whole body, at most client_max_size (else 413)
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        if rel.endswith("frame"):
            sink.frame, sink.frame_meta = body, dict(request.query)
        else:
            try:
                sink.result = json.loads(body)
            except ValueError:
                raise web.HTTPBadRequest(text="not JSON") from None
            sink.done.set()
        return web.Response(text="ok", headers=ISOLATION)

    app = web.Application(client_max_size=MAX_FRAME_UPLOAD + 1)
    app.router.add_get("/{path:.*}", get)
    app.router.add_post("/{path:.*}", post)
    return app


async def serve_web(cfg: WebConfig, sink: SelftestSink | None = None, selftest: int = 0,
                    extra: dict | None = None) -> RunningWeb:
    """Start the page's server; InputError for bad options, missing libraries or an address that cannot be bound."""
    local = cfg.check()
    libs = lib_roots()
    roots = {"app": WEB_ROOT / "app", "lib/hls": libs["hls"], "lib/ort": libs["ort"]}
    if local is not None:
        roots["stream"] = local
    token = server_token(cfg.host, cfg.token)
    runner, base = await listen(web_app(roots, token, sink), cfg.host, cfg.port, "--web")
    page = f"{base}{token + '/' if token else ''}{cfg.page_query(selftest, extra)}"
    return RunningWeb(runner, runner.addresses[0][1], page)


def serve(cfg: WebConfig, on_started: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve the page until ``stop`` is set or Ctrl-C; ``on_started(url)`` once listening."""

    run_until_stopped(lambda: serve_web(cfg), on_started, stop)
