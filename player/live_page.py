"""The live viewer's page (``--serve HOST:PORT``): ``/`` (HTML), ``/frame.jpg`` (bicubic | BBMR of the same
frame, side by side) and ``/stats.json`` (the viewer's summary), polled by the page's script."""

from __future__ import annotations

import asyncio
import io
from typing import Callable

import numpy as np

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bbmr-live viewer</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:12px}img{max-width:100%;border:1px solid #444}
#stats{font-family:monospace;white-space:pre;font-size:13px}</style></head><body>
<h2>bbmr-live: bicubic (left) | BBMR super-resolved (right)</h2>
<img id="live" alt="live picture">
<div id="stats">connecting...</div>
<script>
const img = document.getElementById('live'), st = document.getElementById('stats');
const q = location.search;  // ?token=... when the page needs one: every request carries it
function tick(){ img.src = 'frame.jpg' + (q ? q + '&' : '?') + 't=' + Date.now(); }
img.onload = () => setTimeout(tick, 150); img.onerror = () => setTimeout(tick, 500); tick();
async function stats(){ try { const r = await fetch('stats.json' + q); const d = await r.json();
  st.textContent = Object.entries(d).map(([k,v]) => k.padEnd(22) + JSON.stringify(v)).join('\\n'); } catch(e) {}
  setTimeout(stats, 500); }
stats();
</script></body></html>"""

Picture = Callable[[], "tuple[np.ndarray, np.ndarray, str] | None"]  # (left, right, right's label) or None


def side_by_side_jpeg(view: tuple[np.ndarray, np.ndarray, str] | None, max_width: int = 1600) -> bytes | None:
    """``left | right`` (an 8-pixel white gap, labelled, at most ``max_width`` pixels wide) as JPEG bytes;
    None without a picture."""
    from PIL import Image, ImageDraw

    if view is None:
        return None
    low, high, right = view
    pair = np.concatenate([low, np.full((low.shape[0], 8, 3), 255, np.uint8), high], axis=1)
    img = Image.fromarray(pair)
    if img.width > max_width:
        img = img.resize((max_width, int(img.height * max_width / img.width)))
    d = ImageDraw.Draw(img)
    d.text((6, 6), "bicubic", fill="yellow")
    d.text((img.width // 2 + 6, 6), right, fill="yellow")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def page_app(picture: Picture, summary: Callable[[], dict], token: str | None = None):
    """The aiohttp application of the page: ``picture()`` is the side-by-side view (JPEG-encoded on a worker
    thread), ``summary()`` the stats JSON; with ``token`` every route requires it (``bbmr_stream.webguard``)."""
    from aiohttp import web

    from bbmr_stream.webguard import token_middleware

    async def index(request):
        return web.Response(text=PAGE, content_type="text/html")

    async def frame(request):
        data = await asyncio.get_running_loop().run_in_executor(None, lambda: side_by_side_jpeg(picture()))
        if data is None:
            return web.Response(status=503, text="no frame yet")
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def stats(request):
        return web.json_response(summary())

    app = web.Application(middlewares=[token_middleware(token)])
    app.router.add_get("/", index)
    app.router.add_get("/frame.jpg", frame)
    app.router.add_get("/stats.json", stats)
    return app


async def serve_page(picture: Picture, summary: Callable[[], dict], host: str, port: int,
                     token: str | None = None):
    """Serve :func:`page_app` at ``host:port`` (a token is required on a non-loopback address: ``token`` or a
    generated one); returns (the ``aiohttp.web.AppRunner`` (``await .cleanup()``), the page's URL with its
    token)."""
    from bbmr_stream.webguard import listen, server_token, url_with_token

    token = server_token(host, token)
    runner, base = await listen(page_app(picture, summary, token), host, port, "--serve")
    return runner, url_with_token(base, token)
