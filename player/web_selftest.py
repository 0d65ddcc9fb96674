"""``bbmr-play STREAM --web --selftest N``: the browser player in headless Chromium (Debian's package) for N
shown frames, and its numerical parity with the Python player.

The page reports what it did (frames shown and super-resolved, fps, onnxruntime-web's backend, renditions
played, errors caught in the page) and uploads one canvas frame: its third super-resolved (BBMR/uniform:
unpacked) frame, as PNG. The same rendition is then played by ``player.play`` with the same model (the
rendition's measured upscaler, the generic weights the page's ONNX graph was exported from; BBMR/uniform: bicubic,
as the page), and the canvas is compared with the Python player's frame: PSNR-Y (BT.601 Y of RGB, peak 255,
crop 0) against the frames within :data:`SEARCH` of the page's frame index (its media time from the first frame
it presented), the best match reported with its index.

Chromium's console is read through the DevTools protocol (player/cdp.py) for errors too: resource loads that
failed (a 404) appear there and not in the page.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path

import numpy as np

from bbmr_stream.errors import InputError
from player.web import SelftestSink, WebConfig, serve_web

BLOCK_KINDS = ("bbmr", "uniform")  # unpacked with the scale map and upscaled by the canvas in the page
SEARCH = 3  # frames either side of the page's frame index that the parity frame is matched against
REPORTED = ("frames_shown", "frames_superresolved", "fps_shown", "fps_superresolved", "backend", "renditions_played",
            "frames_in_video", "frames_dropped", "frames_dropped_video", "frames_dropped_sr_busy", "sr_fallbacks",
            "sr_ms_median", "decisions", "frames_unpacked", "maps_received", "maps_invalid",
            "frames_without_map", "recovered", "hls_errors", "notes", "errors", "why", "wasm_threads",
            "cross_origin_isolated", "elapsed_s")  # the page's figures in the JSON, in this order


async def run_page(cfg: WebConfig, frames: int, timeout: float, extra: dict | None = None
                   ) -> tuple[dict, SelftestSink, list[str]]:
    """Serve, open the page (``extra``: more query parameters) in headless Chromium, wait for its result
    (``timeout`` s); (result, sink, console errors). Chromium and the server are stopped whatever happens."""
    from player.cdp import Chromium

    sink = SelftestSink()
    running = await serve_web(cfg, sink, selftest=frames, extra=extra)
    try:
        async with Chromium(running.url) as browser:
            try:
                await asyncio.wait_for(sink.done.wait(), timeout)
            except asyncio.TimeoutError:
                raise InputError(f"--selftest: the page reported nothing within {timeout:.0f} s") from None
            result = sink.result if isinstance(sink.result, dict) else {}
            return result, sink, list(browser.errors)
    finally:
        await running.close()


class ParityError(Exception):
    pass


def parity(cfg: WebConfig, sink: SelftestSink, fps: float) -> dict:
    """The page's parity frame against the Python player's frames around its index (module docstring); what
    went wrong as ``{"psnr_y": None, "error": ...}`` (the page's upload is not trusted: it may be anything)."""
    try:
        return _parity(cfg, sink, fps)
    except (ParityError, InputError, OSError, KeyError, ValueError) as e:
        return {"psnr_y": None, "error": f"{e.__class__.__name__}: {e}"[:300]}


def _parity(cfg: WebConfig, sink: SelftestSink, fps: float) -> dict:
    from PIL import Image

    from bbmr_stream.imageio import read_image
    from bbmr_stream.metrics import psnr_y
    from player import PlayConfig, play
    from player.web import load_manifest

    meta = sink.frame_meta
    page = np.asarray(Image.open(io.BytesIO(sink.frame)).convert("RGB"))
    rend = next((r for r in load_manifest(cfg.stream).renditions if r.name == meta["rendition"]), None)
    if rend is None:
        raise ParityError(f"the page's frame names rendition {meta['rendition']!r}, not in the stream")
    upscaler = "bicubic" if rend.kind in BLOCK_KINDS else "auto"
    t = float(meta["media_time"]) - float(meta.get("first_media_time") or 0.0)
    guess = max(0, int(round(t * fps)))
    with tempfile.TemporaryDirectory(prefix="bbmr-web-parity-") as td:
        play(PlayConfig(cfg.stream, rendition=meta["rendition"], headless=True, niqe_every=0, frames_dir=td,
                        max_frames=guess + SEARCH + 1, device="cpu", upscaler=upscaler))
        best = None
        for i in range(max(0, guess - SEARCH), guess + SEARCH + 1):
            p = Path(td) / f"frame_{i:06d}.png"
            if not p.exists():
                continue
            ref = read_image(p)
            if ref.shape != page.shape:
                raise ParityError(f"the page's frame is {page.shape[1]}x{page.shape[0]}, the Python player's "
                                   f"{ref.shape[1]}x{ref.shape[0]}")
            v = psnr_y(ref, page)
            if best is None or v > best[0]:
                best = (v, i)
    if best is None:
        raise ParityError(f"the Python player wrote no frame near {guess}")
    return {"psnr_y": round(float(best[0]), 3), "frame": best[1], "frame_from_media_time": guess,
            "rendition": meta["rendition"], "python_upscaler": upscaler,
            "python_title_models": bool(rend.models),  # the page runs the generic weights (docs/web.md)
            "convention": "PSNR-Y: BT.601 Y of RGB, peak 255, crop 0: the page's canvas vs the Python player's frame "
            "of the same rendition and model (BBMR/uniform: the Python player's bicubic beside the page's per-block "
            f"canvas bicubic), the best of the frames within {SEARCH} of the page's media-time index"}


def web_selftest(cfg: WebConfig, frames: int, timeout: float = 300.0, extra: dict | None = None) -> dict:
    """Play ``frames`` frames of ``cfg`` in headless Chromium (``extra``: more page parameters); the page's
    figures plus ``parity`` (None when no frame was super-resolved) and ``console_errors``."""
    import dataclasses
    import secrets

    from player.web import load_manifest

    if frames < 1:
        raise InputError("--selftest N: N >= 1 frames")
    if cfg.remote:
        raise InputError("--selftest plays a local stream directory (the parity check reads it)")
    man = load_manifest(cfg.stream)
    # a token even on loopback: no other local process can post a frame or a result to this test
    cfg = dataclasses.replace(cfg, token=cfg.token or secrets.token_urlsafe(16))
    result, sink, errors = asyncio.run(run_page(cfg, frames, timeout, extra))
    fps = man.source["fps"][0] / man.source["fps"][1]
    out = {k: result.get(k) for k in REPORTED}
    out["console_errors"] = errors
    out["parity"] = parity(cfg, sink, fps) if sink.frame else None
    return out
