"""Atlas layout (``atlas``, version 1): all LR tiles of a frame packed into one picture of about the uniform-x4
size. Pack and unpack both live here (:class:`Atlas`); the packager and the player import this module.

The atlas is a grid of ``slot`` x ``slot`` pixel slots (slot = block / overall, 32 px for 128-px blocks at
x4), ``grid_w`` slots wide and at least ``grid_h`` slots high. A tile of scale k covers
``(slot * overall / k)`` pixels a side: at x2 a 2x2 square of slots, at x4 one slot, at x8 a quarter slot
(four x8 tiles share one slot, in quadrant raster order). Generally a tile of scale k < overall takes an
(overall/k)^2 square of slots and a tile of scale k > overall a 1/(k/overall)^2 share of one slot.

:func:`layout` is the one pure function that pack and unpack both use: it depends on nothing but the scale
map, so every frame can be unpacked from its own SEI. Placement rule: tiles of the finest scale first,
in aligned squares scanned row band by row band, then each coarser scale in raster order of the free slots
(shared slots filled quadrant by quadrant); blocks of one scale keep their raster order. When the squares
do not fit in ``grid_h`` rows (e.g. a one-row grid, or an odd width), the atlas grows by the fewest rows
needed (:class:`Layout` reports ``extra_rows``); a one-column grid also widens to one square. A map that is
constant over a GOP gives one layout for the whole GOP, so inter prediction sees tiles at fixed places.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import LRBlocks, downscale_blocks, lr_blocks_from_tiles, to_uint8_tiles
from bbmr_stream.scalemap import ScaleMap

NAME = "atlas"
VERSION = 1


@dataclass(frozen=True)
class Layout:
    rows: int  # atlas height in slots
    cols: int  # atlas width in slots
    slot: int  # slot size in LR pixels
    extra_rows: int  # rows added beyond the block grid height
    # per block (raster order): (y, x) pixel offset of its tile in the atlas and the tile size
    y: np.ndarray
    x: np.ndarray
    size: np.ndarray

    @property
    def height(self) -> int:
        return self.rows * self.slot

    @property
    def width(self) -> int:
        return self.cols * self.slot


def layout(factors: np.ndarray, grid_h: int, grid_w: int, block: int = 128, overall: int = 4) -> Layout:
    """Tile positions for a scale map (``factors``: (grid_h * grid_w,) or (grid_h, grid_w))."""
    f = np.asarray(factors, dtype=np.int64).reshape(-1)
    if f.size != grid_h * grid_w:
        raise ValueError(f"{f.size} factors for a {grid_h}x{grid_w} grid")
    key = (f.tobytes(), grid_h, grid_w, block, overall)
    return _layout_cached(*key)


@lru_cache(maxsize=256)
def _layout_cached(fbytes: bytes, grid_h: int, grid_w: int, block: int, overall: int) -> Layout:
    f = np.frombuffer(fbytes, dtype=np.int64)
    if block % overall:
        raise ValueError("block must be divisible by the overall scale")
    slot = block // overall
    for k in set(f.tolist()):
        if block % k:
            raise ValueError(f"scale {k} does not divide the block {block}")
        if k < overall and overall % k or k > overall and k % overall:
            raise ValueError(f"scale {k} and overall {overall} are not powers of each other's ratio")
        if k > overall and slot % (k // overall):
            raise ValueError(f"scale {k} tiles do not divide a {slot}-px slot")
    rows = grid_h
    # a grid narrower than one square of the finest scale (a one-column frame) widens to that square
    cols = max(grid_w, overall // int(f.min())) if f.min() < overall else grid_w
    while True:
        placed = _try_place(f, rows, cols, slot, block, overall)
        if placed is not None:
            y, x, size = placed
            return Layout(rows, cols, slot, rows - grid_h, y, x, size)
        rows += 1
        if rows > grid_h + 4 * len(f) + 64:  # cannot happen for any map under budget; guards a bad map
            raise ValueError("scale map does not fit an atlas (over the LR budget?)")


def _try_place(f: np.ndarray, rows: int, cols: int, slot: int, block: int, overall: int):
    free = np.ones((rows, cols), dtype=bool)
    y = np.zeros(f.size, dtype=np.int64)
    x = np.zeros(f.size, dtype=np.int64)
    size = (block // f).astype(np.int64)
    for k in sorted(set(f.tolist())):
        idx = np.flatnonzero(f == k)
        if k <= overall:
            s = overall // k  # square of s x s slots
            positions = [(r, c) for r in range(0, rows - s + 1, s) for c in range(0, cols - s + 1, s)]
            it = iter(p for p in positions if free[p[0]:p[0] + s, p[1]:p[1] + s].all())
            for b in idx:
                p = next(it, None)
                if p is None:
                    return None
                free[p[0]:p[0] + s, p[1]:p[1] + s] = False
                y[b], x[b] = p[0] * slot, p[1] * slot
        else:
            q = k // overall  # q x q tiles share one slot
            per = q * q
            slots = [(r, c) for r in range(rows) for c in range(cols) if free[r, c]]
            need = -(-len(idx) // per)
            if need > len(slots):
                return None
            t = slot // q
            for n, b in enumerate(idx):
                r, c = slots[n // per]
                qy, qx = divmod(n % per, q)
                y[b], x[b] = r * slot + qy * t, c * slot + qx * t
            for r, c in slots[:need]:
                free[r, c] = False
    return y, x, size


def pack(tiles_by_block: list[np.ndarray], lay: Layout, fill: int = 128) -> np.ndarray:
    """(H, W, C) uint8 atlas from per-block tiles (raster order, each (s, s, C)); free area ``fill``."""
    c = tiles_by_block[0].shape[2]
    atlas = np.full((lay.height, lay.width, c), fill, dtype=np.uint8)
    for b, t in enumerate(tiles_by_block):
        s = int(lay.size[b])
        if t.shape[:2] != (s, s):
            raise ValueError(f"block {b}: tile {t.shape[:2]} does not match the layout size {s}")
        atlas[lay.y[b]:lay.y[b] + s, lay.x[b]:lay.x[b] + s] = t
    return atlas


def unpack(atlas: np.ndarray, lay: Layout) -> list[np.ndarray]:
    """Per-block tiles (views into ``atlas``) in raster order."""
    if atlas.shape[0] < lay.height or atlas.shape[1] < lay.width:
        raise ValueError(f"atlas {atlas.shape[1]}x{atlas.shape[0]} smaller than its layout {lay.width}x{lay.height}")
    return [atlas[lay.y[b]:lay.y[b] + s, lay.x[b]:lay.x[b] + s] for b, s in enumerate(lay.size.tolist())]


# ---------------------------------------------------------------- frames: fixed picture size, pack, unpack

def atlas_rows(grid: BlockGrid, scales: tuple[int, ...], overall: int = 4) -> int:
    """Fixed atlas height (slots) that fits the extreme maps under the budget."""
    n = grid.n_blocks
    k1, k3 = min(scales), max(scales)
    rows = grid.grid_h
    if k1 >= overall:
        return rows
    # x2-heavy extremes: m blocks at k1, the rest at k3 (most x2 blocks the budget allows) or at overall
    c = lambda k: (grid.block // k) ** 2  # noqa: E731
    budget = n * c(overall)
    m_max = max(m for m in range(n + 1) if m * c(k1) + (n - m) * c(k3) <= budget)
    for m in sorted({m_max, max(m_max - 1, 0), m_max // 2}):
        for rest in (k3, overall):
            f = np.array([k1] * m + [rest] * (n - m))
            if (f.astype(np.int64) ** -2.0 * grid.block**2).sum() > budget + 1e-6:
                continue
            rows = max(rows, layout(f, grid.grid_h, grid.grid_w, grid.block, overall).rows)
    return rows


def atlas_cols(grid: BlockGrid, scales: tuple[int, ...], overall: int = 4) -> int:
    k1 = min(scales)
    return max(grid.grid_w, overall // k1) if k1 < overall else grid.grid_w


def fit_to_rows(factors: np.ndarray, grid: BlockGrid, rows: int, overall: int = 4) -> np.ndarray:
    f = np.asarray(factors, dtype=np.uint8).copy()
    k1 = int(f.min())
    while layout(f, grid.grid_h, grid.grid_w, grid.block, overall).rows > rows:
        fine = np.flatnonzero(f == k1)
        if k1 >= overall or fine.size == 0:
            raise ValueError("scale map does not fit the atlas")
        f[fine[-1]] = overall
    return f


def pack_frame(x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, rows: int, cols: int, overall: int = 4
               ) -> np.ndarray:
    """(1, 3, H, W) float frame -> (rows * slot, cols * slot, 3) uint8 atlas (free area mid-grey)."""
    lr = downscale_blocks(pad_tensor(x, grid.block), grid, factors)
    lay = layout(factors, grid.grid_h, grid.grid_w, grid.block, overall)
    atlas = pack(to_uint8_tiles(lr), lay)
    full = np.full((rows * lay.slot, cols * lay.slot, 3), 128, np.uint8)
    full[: atlas.shape[0], : atlas.shape[1]] = atlas
    return full


def unpack_atlas(picture: np.ndarray, smap: ScaleMap, grid: BlockGrid, overall: int) -> LRBlocks:
    """LR tiles of every block from an atlas picture, grouped by scale (float [0, 1])."""
    smap.check_grid(grid)
    f = smap.flat
    tiles = unpack(picture, layout(f, grid.grid_h, grid.grid_w, grid.block, overall))
    return lr_blocks_from_tiles(grid, f, lambda b, k: tiles[b])


class Atlas:
    """The atlas layout as the families use it: one picture per frame."""

    name, version = NAME, VERSION

    def sizes(self, grid: BlockGrid, scales, overall: int) -> list[tuple[int, int]]:
        slot = grid.block // overall
        return [(atlas_cols(grid, tuple(scales), overall) * slot, atlas_rows(grid, tuple(scales), overall) * slot)]

    def fit(self, factors: np.ndarray, grid: BlockGrid, scales, overall: int) -> np.ndarray:
        return fit_to_rows(factors, grid, atlas_rows(grid, tuple(scales), overall), overall)

    def pack(self, x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales, overall: int) -> list[np.ndarray]:
        return [pack_frame(x, grid, factors, atlas_rows(grid, tuple(scales), overall),
                           atlas_cols(grid, tuple(scales), overall), overall)]

    def unpack(self, pictures: list[np.ndarray], smap: ScaleMap, grid: BlockGrid, scales, overall: int) -> LRBlocks:
        return unpack_atlas(pictures[0], smap, grid, overall)
