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

from bbmr_stream.imageio import InputError


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


def main_look(argv: list[str]) -> int:
    from rich.console import Console

    from bbmr_stream.decode import frames, probe
    from bbmr_stream.family import family_of
    from bbmr_stream.manifest import load
    from bbmr_stream.metrics import psnr_luma
    from bbmr_stream.demux import segment_pictures
    from packager.cli import build_parser, pick_upscaler, run
    from bbmr_stream.cli import pick_device
    from bbmr_stream.family import parse_ladder

    ap = argparse.ArgumentParser(prog="bbmr-bench look", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--rungs", required=True, help="ladder items, e.g. plain:960x540:33,plain-sr:2:33,bbmr:23")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--frame", type=int, default=30, help="the frame shown (index from 0)")
    ap.add_argument("--crop", default="", help="X,Y,W,H in source pixels (default: a 384x216 centre crop)")
    ap.add_argument("--zoom", type=int, default=2)
    ap.add_argument("--scorer", default="light")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    specs = parse_ladder(a.rungs)
    info = probe(a.clip)
    if not 0 <= a.frame < min(a.frames, info.frames or a.frames):
        raise InputError(f"--frame {a.frame} is outside the first {a.frames} frames")
    x, y, cw, ch = _crop(a.crop, info.width, info.height)
    console = Console(stderr=True, emoji=False)
    device = pick_device(a.device)
    src = next(f for f in frames(info, a.frame + 1) if f.index == a.frame)
    tiles = [(f"source frame {a.frame}\n{info.width}x{info.height}", src.rgb[y:y + ch, x:x + cw])]
    with tempfile.TemporaryDirectory(prefix="bbmr-look-") as td:
        pargs = build_parser().parse_args([a.clip, "--out", str(Path(td) / "s"), "--max-frames", str(a.frames),
                                           "--scorer", a.scorer, "--device", a.device, "--no-measure"])
        run(pargs, console, specs=specs)
        man = load(Path(td) / "s")
        for rend in man.renditions:
            fam = family_of(rend, man)
            name, up = pick_upscaler("auto", fam, man.scales, device)
            seg = next(s for s in rend.segments if s.first_frame <= a.frame < s.first_frame + s.frames)
            want = a.frame - seg.first_frame
            pics, smap = next(p for i, p in enumerate(segment_pictures(Path(td) / "s" / seg.file, rend,
                                                                        info.matrix, info.full_range,
                                                                        lambda i: i == want)) if i == want)
            rec = fam.reconstruct(pics, smap, up)
            q = psnr_luma(src.y, rec, info.matrix, info.full_range)
            tiles.append((f"{rend.name} ({name})\n{rend.bitrate_kbps:.0f} kbps, {q:.2f} dB", rec[y:y + ch, x:x + cw]))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    _panel(tiles, a.zoom).save(tmp)
    tmp.replace(out)
    for label, _ in tiles:
        print(label.replace("\n", ": "))
    print(f"wrote {out}")
    return 0
