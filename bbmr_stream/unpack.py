"""Demux + unpack: LR stream segments -> (LR picture, scale map) per frame -> LRBlocks for an upscaler.

The scale map of each frame comes from its SEI (frame side data SEI_UNREGISTERED with the project UUID);
the atlas layout is recomputed from the map alone (:func:`bbmr_stream.atlas.layout`), so every frame unpacks
by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from bbmr_stream.atlas import layout, unpack
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.downscale import LRBlocks
from bbmr_stream.scalemap import ScaleMap, ScaleMapError
from bbmr_stream.sei import payload_from_side_data

_SWS = {"bt709": "ITU709", "bt601": "ITU601", "bt2020": "BT2020"}


@dataclass
class LRFrame:
    rgb: np.ndarray  # (h, w, 3) uint8 LR picture
    scalemap: ScaleMap | None
    pts: int | None


def scalemap_of(frame) -> ScaleMap | None:
    for sd in frame.side_data:
        if sd.type.name == "SEI_UNREGISTERED":
            p = payload_from_side_data(bytes(sd))
            if p is not None:
                try:
                    return ScaleMap.from_bytes(p)
                except ScaleMapError:
                    return None
    return None


def _rgb(fr, matrix: str, full_range: bool) -> np.ndarray:
    import av

    return fr.reformat(format="rgb24", src_colorspace=_SWS[matrix], src_color_range="JPEG" if full_range else "MPEG",
                       interpolation=av.video.reformatter.Interpolation.BICUBIC).to_ndarray()


def decode_lr(path: str | Path, matrix: str = "bt709", full_range: bool = False) -> Iterator[LRFrame]:
    """Frames of one LR segment/stream file (first video stream), in presentation order."""
    import av

    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            yield LRFrame(_rgb(fr, matrix, full_range), scalemap_of(fr), fr.pts)


def decode_lr_planes(path: str | Path, n_streams: int, matrix: str = "bt709", full_range: bool = False
                     ) -> Iterator[tuple[list[np.ndarray], ScaleMap | None, int | None]]:
    """Frames of a planes-layout file: the pictures of all ``n_streams`` video streams (aligned by order),
    the scale map from the first stream's SEI, the pts."""
    import av

    streams = []
    for i in range(n_streams):
        with av.open(str(path)) as c:
            streams.append(list(c.decode(video=i)))
    for frs in zip(*streams):
        yield [_rgb(f, matrix, full_range) for f in frs], scalemap_of(frs[0]), frs[0].pts


def unpack_atlas(picture: np.ndarray, smap: ScaleMap, grid: BlockGrid, overall: int) -> LRBlocks:
    """LR tiles of every block from an atlas picture, grouped by scale (float [0, 1])."""
    if (smap.grid_h, smap.grid_w) != (grid.grid_h, grid.grid_w):
        raise ScaleMapError(f"scale map grid {smap.grid_h}x{smap.grid_w} does not match the stream's "
                            f"{grid.grid_h}x{grid.grid_w}")
    f = smap.flat
    lay = layout(f, grid.grid_h, grid.grid_w, grid.block, overall)
    tiles = unpack(picture, lay)
    by_k, index = {}, {}
    for k in sorted(set(f.tolist())):
        idx = np.flatnonzero(f == k)
        arr = np.stack([tiles[b] for b in idx])
        by_k[k] = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        index[k] = idx
    return LRBlocks(grid, f.astype(np.uint8), by_k, index)


def unpack_planes(pictures: list[np.ndarray], scales: tuple[int, ...], smap: ScaleMap, grid: BlockGrid) -> LRBlocks:
    """LR tiles from the planes layout: block b of scale k is cut at its natural position in plane k."""
    f = smap.flat
    by_k, index = {}, {}
    for k, pic in zip(scales, pictures):
        idx = np.flatnonzero(f == k)
        if idx.size == 0:
            continue
        t = grid.block // k
        arr = np.stack([pic[(b // grid.grid_w) * t:(b // grid.grid_w + 1) * t, (b % grid.grid_w) * t:(b % grid.grid_w + 1) * t]
                        for b in idx.tolist()])
        by_k[k] = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        index[k] = idx
    return LRBlocks(grid, f.astype(np.uint8), by_k, index)


def lr_frames(path: str | Path, rend, matrix: str = "bt709", full_range: bool = False
              ) -> Iterator[tuple[list[np.ndarray], ScaleMap | None]]:
    """(LR pictures, scale map or None) of every frame of one segment file of a rendition."""
    if rend.layout == "planes":
        for pics, smap, _ in decode_lr_planes(path, len(rend.pictures), matrix, full_range):
            yield pics, smap
    else:
        for lrf in decode_lr(path, matrix, full_range):
            yield [lrf.rgb], lrf.scalemap


def unpack_frame(pictures: list[np.ndarray], smap: ScaleMap, rend, grid: BlockGrid) -> LRBlocks:
    if rend.layout == "planes":
        return unpack_planes(pictures, tuple(rend.scales), smap, grid)
    return unpack_atlas(pictures[0], smap, grid, rend.overall)


def unpack_segment(path: str | Path, rend, grid: BlockGrid, matrix: str = "bt709", full_range: bool = False
                   ) -> Iterator[LRBlocks]:
    """LRBlocks of every frame of one segment file (atlas or planes layout); raises ScaleMapError for a frame
    without a scale map (the player conceals instead, see player.playback)."""
    for pics, smap in lr_frames(path, rend, matrix, full_range):
        if smap is None:
            raise ScaleMapError("frame without a scale map")
        yield unpack_frame(pics, smap, rend, grid)
