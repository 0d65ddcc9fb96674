"""A screenshot of the browser player (docs/img/web_page.jpg): a generated 1920x1080 pan packaged as a plain rung
and a plain-sr x4 rung (FastSR), the page (``bbmr-play --web``) pinned on the plain-sr rung in headless
Chromium, captured through the DevTools protocol once it has super-resolved ``--after`` frames.

usage: python -m bench.web_shot [--out docs/img/web_page.jpg] [--stream DIR] [--rendition NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path


async def capture(url: str, out: Path, after: int, timeout: float = 300.0) -> dict:
    """Open ``url`` in headless Chromium, wait for ``after`` super-resolved frames, save the page (PNG, or JPEG
    for a .jpg name)."""
    from player.cdp import Chromium

    async with Chromium(url) as browser:
        stats: dict = {}
        deadline = time.time() + timeout
        while time.time() < deadline and stats.get("frames_superresolved", 0) < after:
            await asyncio.sleep(0.5)
            stats = json.loads(await browser.evaluate("JSON.stringify(window.bbmrPage ? window.bbmrPage.summary() "
                                                      ": {})") or "{}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(await browser.screenshot("jpeg" if out.suffix.lower() in (".jpg", ".jpeg") else "png"))
        return stats


async def shoot(stream: str, rendition: str, out: Path, after: int) -> dict:
    from player.web import WebConfig, serve_web

    running = await serve_web(WebConfig(stream, port=0, rendition=rendition))
    try:
        return await capture(running.url, out, after)
    finally:
        await running.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/img/web_page.jpg")
    ap.add_argument("--stream", help="a stream directory (default: a generated 1080p pan, plain + plain-sr x4)")
    ap.add_argument("--rendition", default="plainsr_x4_crf28")
    ap.add_argument("--after", type=int, default=5, help="super-resolved frames before the capture")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bbmr-web-shot-") as td:
        stream = args.stream
        if stream is None:
            from bbmr_stream.family import parse_ladder
            from bbmr_stream.sample import write_sample
            from packager import PackageConfig, package

            write_sample(Path(td) / "pan.mp4", 1920, 1080, 6.0, 30)
            stream = str(Path(td) / "stream")
            package(PackageConfig(str(Path(td) / "pan.mp4"), stream, upscaler="fast", device="cpu",
                                  measure_frames=2, niqe_frames=0),
                    tuple(parse_ladder("plain:960x540:28,plain-sr:4:28")))
        stats = asyncio.run(shoot(stream, args.rendition, Path(args.out), args.after))
    print(json.dumps({k: stats.get(k) for k in ("frames_shown", "frames_superresolved", "fps_superresolved",
                                                 "backend", "renditions_played")}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
