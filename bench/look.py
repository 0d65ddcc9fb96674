"""``bbmr-bench look CLIP --rungs ITEM,... --out look.png``: side-by-side crops of one frame as each rung's
client shows it (source | rung 1 | rung 2 ...), captioned with kbps and the frame's PSNR-Y, for judging the look
(block seams, ringing, blur) beside the numbers of ``bbmr-bench rd``.

The rungs are packaged by the real packager from the first ``--frames`` frames (bytes as shipped), frame
``--frame`` is decoded from its segment and rebuilt by each rung's family with its measured upscaler.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bbmr_stream.errors import InputError


def _crop(text: str, w: int, h: int) -> tuple[int, int, int, int]:
    if not text:
        cw, ch = min(w, 384), min(h, 216)
        return (w - cw) // 2, (h - ch) // 2, cw, ch
    try:
        x, y, cw, ch = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--crop is X,Y,W,H, got {text!r}") from None
    if x < 0 or y < 0 or cw < 8 or ch < 8 or x + cw > w or y + ch > h:
        raise InputError(f"--crop {text} is not inside the {w}x{h} frame")
    return x, y, cw, ch


def _panel(tiles: list[tuple[str, np.ndarray]], zoom: int):
    from PIL import Image, ImageDraw

    th, tw = tiles[0][1].shape[:2]
    cap = 28
    out = Image.new("RGB", (len(tiles) * tw * zoom + (len(tiles) - 1) * 4, th * zoom + cap), "white")
    d = ImageDraw.Draw(out)
    for i, (label, img) in enumerate(tiles):
        x0 = i * (tw * zoom + 4)
        out.paste(Image.fromarray(img).resize((tw * zoom, th * zoom), Image.NEAREST), (x0, cap))
        for j, line in enumerate(label.split("\n")[:2]):
            d.text((x0 + 3, 2 + 12 * j), line, fill="black")
    return out


def look_tiles(clip: str, specs, frames_n: int, frame: int, crop: str, scorer: str, device_name: str, console,
               realloc: str = "auto"):
    """Package ``specs`` from the first ``frames_n`` frames of ``clip`` (bytes as shipped), rebuild frame
    ``frame`` as each rung's client shows it (its family, measured upscaler) and return the source tile and
    one ``(rendition, upscaler name, frame PSNR-Y, tile)`` per rung, cropped to ``crop`` (X,Y,W,H)."""
    from bbmr_stream.device import pick_device
    from bbmr_stream.decode import frames, probe
    from bbmr_stream.demux import segment_pictures
    from bbmr_stream.family import family_of
    from bbmr_stream.manifest import load
    from bbmr_stream.metrics import psnr_luma
    from packager.cli import build_parser, pick_upscaler, run

    info = probe(clip)
    if not 0 <= frame < min(frames_n, info.frames or frames_n):
        raise InputError(f"--frame {frame} is outside the first {frames_n} frames")
    x, y, cw, ch = _crop(crop, info.width, info.height)
    device = pick_device(device_name)
    src = next(f for f in frames(info, frame + 1) if f.index == frame)
    out = []
    with tempfile.TemporaryDirectory(prefix="bbmr-look-") as td:
        pargs = build_parser().parse_args([clip, "--out", str(Path(td) / "s"), "--max-frames", str(frames_n),
                                           "--scorer", scorer, "--device", device_name, "--no-measure",
                                           "--realloc", realloc])
        pargs.quiet = True  # the caller tabulates
        run(pargs, console, specs=specs)
        man = load(Path(td) / "s")
        for rend in man.renditions:
            fam = family_of(rend, man)
            name, up = pick_upscaler("auto", fam, device)
            seg = next(s for s in rend.segments if s.first_frame <= frame < s.first_frame + s.frames)
            want = frame - seg.first_frame
            pics, smap = next(p for i, p in enumerate(segment_pictures(Path(td) / "s" / seg.file, rend,
                                                                        info.matrix, info.full_range,
                                                                        lambda i: i == want)) if i == want)
            rec = fam.reconstruct(pics, smap, up)
            q = psnr_luma(src.y, rec, info.matrix, info.full_range)
            out.append((rend, name, q, rec[y:y + ch, x:x + cw]))
    return (f"source frame {frame}\n{info.width}x{info.height}", src.rgb[y:y + ch, x:x + cw]), out


def tile_label(rend, upscaler: str, psnr: float) -> str:
    return f"{rend.name} ({upscaler})\n{rend.bitrate_kbps:.0f} kbps, {psnr:.2f} dB"


def save_panel(tiles: list[tuple[str, np.ndarray]], zoom: int, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    _panel(tiles, zoom).save(tmp)
    tmp.replace(out)
    return out


def main_look(argv: list[str]) -> int:
    from rich.console import Console

    from bbmr_stream.family import parse_ladder

    ap = argparse.ArgumentParser(prog="bbmr-bench look", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--rungs", required=True, help="ladder items, e.g. plain:960x540:33,plain-sr:2:33,bbmr:23")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--frames", type=int, default=60, help="package this many frames (default %(default)s)")
    ap.add_argument("--frame", type=int, default=30, help="the frame shown (index from 0, default %(default)s)")
    ap.add_argument("--crop", default="", help="X,Y,W,H in source pixels (default: a 384x216 centre crop)")
    ap.add_argument("--zoom", type=int, default=2, help="pixel zoom of the panel (default %(default)s)")
    ap.add_argument("--scorer", default="light", help="BBMR scorer (default %(default)s)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default %(default)s)")
    a = ap.parse_args(argv)
    console = Console(stderr=True, emoji=False)
    src, rungs = look_tiles(a.clip, parse_ladder(a.rungs), a.frames, a.frame, a.crop, a.scorer, a.device, console)
    tiles = [src] + [(tile_label(r, n, q), t) for r, n, q, t in rungs]
    out = save_panel(tiles, a.zoom, a.out)
    for label, _ in tiles:
        print(label.replace("\n", ": "))
    print(f"wrote {out}")
    return 0
