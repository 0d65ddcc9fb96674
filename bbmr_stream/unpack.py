"""Demux + unpack: LR stream segments -> (LR picture, scale map) per frame -> LRBlocks for an upscaler.

The scale map of each frame comes from its SEI (frame side data SEI_UNREGISTERED with the project UUID);
the atlas layout is recomputed from the map alone (:func:`bbmr_stream.atlas.layout`), so every frame unpacks
by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from bbmr_stream.atlas import layout, unpack
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.colour import frame_to_rgb
from bbmr_stream.downscale import LRBlocks
from bbmr_stream.scalemap import ScaleMap, ScaleMapError
from bbmr_stream.sei import payload_from_side_data


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
    return frame_to_rgb(fr, matrix, full_range)[0]


def segment_frames(path: str | Path, n_streams: int) -> Iterator[tuple[list, ScaleMap | None]]:
    """(decoded PyAV frame of every coded stream, scale map from the first stream's SEI or None) of each
    frame of one segment file, in presentation order."""
    import av

    streams = []
    for i in range(n_streams):
        with av.open(str(path), format="mpegts") as c:  # no probing: a tiny valid segment fails format probing
            streams.append(list(c.decode(video=i)))
    for frs in zip(*streams):
        yield list(frs), scalemap_of(frs[0])


def segment_pictures(path: str | Path, rend, matrix: str = "bt709", full_range: bool = False,
                     wanted=None) -> Iterator[tuple[list[np.ndarray] | None, ScaleMap | None]]:
    """(RGB pictures of every coded stream, scale map or None) of each frame of one segment file, in order.
    Frames ``i`` with ``wanted(i)`` false are decoded (the codec needs them) but not converted: None."""
    for i, (frs, smap) in enumerate(segment_frames(path, len(rend.pictures))):
        if wanted is not None and not wanted(i):
            yield None, smap
        else:
            yield [_rgb(f, matrix, full_range) for f in frs], smap


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
