"""Playback: a stream directory -> HR frames in presentation order at the source size.

For each segment of the chosen rendition: demux/decode (PyAV), scale map from each frame's SEI, and the
rendition's family (bbmr_stream.family) rebuilds the frame at the source size (unpack + JointSR / OmniSR for
block families, OmniSR xK for plain-sr, bicubic for plain). Robustness: a missing or undecodable segment
is concealed by repeating the last frame for the segment's frame count; a frame without a valid scale map
uses the last valid map of the segment, else the uniform map; both are counted.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.family import family_of
from bbmr_stream.manifest import Manifest, Rendition
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.demux import segment_pictures


@dataclass
class PlayStats:
    concealed_frames: int = 0
    missing_segments: list[str] = field(default_factory=list)
    frames_without_map: int = 0
    seconds: dict = field(default_factory=lambda: {"decode_unpack": 0.0, "upscale": 0.0})


@dataclass
class HRFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8 at the source size
    scalemap: ScaleMap | None
    concealed: bool
    segment: int
    rendition: str
    family: str = "bbmr"


def play(stream: Path | Callable[[str], Path], man: Manifest, plan: Rendition | list[Rendition], upscalers,
         stats: PlayStats, max_frames: int | None = None, start_frame: int = 0) -> Iterator[HRFrame]:
    """HR frames of the stream; ``plan`` is one rendition, or one per segment (ABR decisions, any families);
    ``upscalers(rendition)`` gives the upscaler of a rendition. Playback starts at ``start_frame``: earlier
    segments are not read, earlier frames of its segment are decoded only."""
    resolve = stream if callable(stream) else (lambda f: Path(stream) / f)
    if isinstance(plan, Rendition):
        plan = [plan] * len(plan.segments)
    grid = BlockGrid(int(man.source["height"]), int(man.source["width"]), man.block)
    matrix, full = man.source["matrix"], bool(man.source["full_range"])
    last: np.ndarray | None = None
    n = 0
    for si, rend in enumerate(plan):
        seg = rend.segments[si]
        if seg.first_frame + seg.frames <= start_frame:
            n += seg.frames
            continue
        fam = family_of(rend, man)
        uniform = ScaleMap(np.full((grid.grid_h, grid.grid_w), man.overall, np.uint8), tuple(fam.lr_scales()), 0,
                           man.block) if fam.carries_map else None
        produced = 0
        seg_map: ScaleMap | None = None
        t = time.time()
        try:
            path = resolve(seg.file)
            if not path.is_file():
                raise FileNotFoundError(seg.file)
            for pics, smap in segment_pictures(path, rend, matrix, full,
                                               lambda i, s=seg: s.first_frame + i >= start_frame):
                if max_frames is not None and n - start_frame >= max_frames:
                    return
                if n < start_frame:  # seeking: decoded for the GOP, not shown
                    n += 1
                    produced += 1
                    continue
                if fam.carries_map:
                    if smap is None or (smap.grid_h, smap.grid_w) != (grid.grid_h, grid.grid_w):
                        stats.frames_without_map += 1
                        smap = seg_map or uniform
                    seg_map = smap
                stats.seconds["decode_unpack"] += time.time() - t
                t = time.time()
                rgb = fam.reconstruct(pics, smap, upscalers(rend))
                stats.seconds["upscale"] += time.time() - t
                last = rgb
                yield HRFrame(n, rgb, smap if fam.carries_map else None, False, si, rend.name, rend.kind)
                n += 1
                produced += 1
                t = time.time()
        except Exception as e:  # missing/corrupt segment: conceal and go on
            warnings.warn(f"segment {seg.file}: {e.__class__.__name__}: {e}; concealing")
            stats.missing_segments.append(seg.file)
        for _ in range(max(seg.frames - produced, 0)):
            if max_frames is not None and n - start_frame >= max_frames:
                return
            if n < start_frame:
                n += 1
                continue
            rgb = last if last is not None else np.zeros((grid.height, grid.width, 3), np.uint8)
            stats.concealed_frames += 1
            yield HRFrame(n, rgb, None, True, si, rend.name, rend.kind)
            n += 1
