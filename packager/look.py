"""Side-by-side crops of one frame as each rung's client shows it (source | rung 1 | rung 2 ...), captioned with
kbps and the frame's PSNR-Y, for judging the look (block seams, ringing, blur) beside the numbers of the study
(``bbmr-bench look CLIP --rungs ITEM,... --out look.png``; the command is :mod:`packager.study_cli`).

The rungs are packaged by the real packager from the first ``frames`` frames (bytes as shipped), frame
``frame`` is decoded from its segment and rebuilt by each rung's family with its measured upscaler.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbmr_stream.errors import InputError
from bbmr_stream.family import RungSpec
from bbmr_stream.progress import Progress

Crop = tuple[int, int, int, int]  # X, Y, W, H in source pixels


def parse_crop(text: str) -> Crop | None:
    """``X,Y,W,H`` -> a crop ("" -> None: the default centre crop); else InputError."""
    if not text:
        return None
    try:
        x, y, cw, ch = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--crop is X,Y,W,H, got {text!r}") from None
    return x, y, cw, ch


def _crop(crop: Crop | str | None, w: int, h: int) -> Crop:
    """The crop inside a ``w`` x ``h`` frame (None: a 384x216 centre crop); else InputError."""
    if isinstance(crop, str):
        crop = parse_crop(crop)
    if crop is None:
        cw, ch = min(w, 384), min(h, 216)
        return (w - cw) // 2, (h - ch) // 2, cw, ch
    x, y, cw, ch = crop
    if x < 0 or y < 0 or cw < 8 or ch < 8 or x + cw > w or y + ch > h:
        raise InputError(f"--crop {','.join(map(str, crop))} is not inside the {w}x{h} frame")
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


def look_tiles(clip: str, specs, frames_n: int, frame: int, crop: Crop | str | None, scorer: str,
               device_name: str, progress: Progress | None = None, realloc: str = "auto",
               backend: str | None = None):
    """Package ``specs`` from the first ``frames_n`` frames of ``clip`` (bytes as shipped), rebuild frame
    ``frame`` as each rung's client shows it (its family, measured upscaler) and return the source tile and
    one ``(rendition, upscaler name, frame PSNR-Y, tile)`` per rung, cropped to ``crop`` (X,Y,W,H; None or "":
    a centre crop)."""
    from bbmr_stream.decode import frames, probe
    from bbmr_stream.demux import init_path, segment_pictures
    from bbmr_stream.device import pick_device
    from bbmr_stream.family import family_of
    from bbmr_stream.metrics import psnr_luma
    from packager import package
    from packager.config import PackageConfig
    from packager.tasks import pick_upscaler

    info = probe(clip)
    if not 0 <= frame < min(frames_n, info.frames or frames_n):
        raise InputError(f"--frame {frame} is outside the first {frames_n} frames")
    x, y, cw, ch = _crop(crop, info.width, info.height)
    device = pick_device(device_name)
    src = next(f for f in frames(info, frame + 1) if f.index == frame)
    out = []
    with tempfile.TemporaryDirectory(prefix="bbmr-look-") as td:
        stream = Path(td) / "s"
        config = PackageConfig(input=clip, out=str(stream), max_frames=frames_n, scorer=scorer, device=device_name,
                               backend=backend, measure=False, realloc=realloc)
        man = package(config, tuple(specs), progress)
        for rend in man.renditions:
            fam = family_of(rend, man)
            name, up = pick_upscaler("auto", fam, device)
            seg = next(s for s in rend.segments if s.first_frame <= frame < s.first_frame + s.frames)
            want = frame - seg.first_frame
            pics, smap = next(p for i, p in enumerate(segment_pictures(stream / seg.file, rend,
                                                                        info.matrix, info.full_range,
                                                                        lambda i: i == want,
                                                                        init_path(stream, rend))) if i == want)
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


@dataclass(frozen=True)
class LookConfig:
    """One panel (``bbmr-bench look``)."""

    clip: str
    rungs: tuple[RungSpec, ...]
    out: str  # the PNG to write
    frames: int = 60  # package this many frames
    frame: int = 30  # the frame shown (index from 0)
    crop: Crop | None = None  # in source pixels; None: a 384x216 centre crop
    zoom: int = 2  # pixel zoom of the panel
    scorer: str = "light"  # BBMR scorer
    device: str = "auto"
    backend: str | None = None


@dataclass
class LookResult:
    path: Path  # the PNG written
    labels: list[str]  # one caption per tile (source first), one line each


def look(config: LookConfig, progress: Progress | None = None) -> LookResult:
    """Package the rungs, rebuild the frame as each rung's client shows it and write the panel."""
    src, rungs = look_tiles(config.clip, config.rungs, config.frames, config.frame, config.crop, config.scorer,
                            config.device, progress, backend=config.backend)
    tiles = [src] + [(tile_label(r, n, q), t) for r, n, q, t in rungs]
    path = save_panel(tiles, config.zoom, config.out)
    return LookResult(path, [label.replace("\n", ": ") for label, _ in tiles])
