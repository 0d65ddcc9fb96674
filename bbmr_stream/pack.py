"""Pack: HR frame + per-block factors -> one LR atlas picture of fixed size for the whole stream.

The encoder needs one picture size per stream, so the atlas height is fixed up front
(:func:`atlas_rows`: the rows the layout needs for the most x2-heavy maps the budget allows). A map that
would need more rows (only possible on small odd grids) is made to fit by moving its last x2 blocks to x4
(:func:`fit_to_rows`), which only lowers the LR pixel count.
"""

from __future__ import annotations

import numpy as np
import torch

from bbmr_stream.atlas import layout, pack
from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import downscale_blocks
from bbmr_stream.resize import levels8


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


def to_uint8_tiles(lr) -> list[np.ndarray]:
    """Per-block (s, s, 3) uint8 tiles in raster order from LRBlocks."""
    tiles: list[np.ndarray | None] = [None] * lr.grid.n_blocks
    for k, t in lr.tiles.items():
        arr = levels8(t).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for j, b in enumerate(lr.index[k].tolist()):
            tiles[b] = arr[j]
    return tiles  # type: ignore[return-value]


def pack_frame(x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, rows: int, cols: int, overall: int = 4
               ) -> np.ndarray:
    """(1, 3, H, W) float frame -> (rows * slot, cols * slot, 3) uint8 atlas (free area mid-grey)."""
    lr = downscale_blocks(pad_tensor(x, grid.block), grid, factors)
    lay = layout(factors, grid.grid_h, grid.grid_w, grid.block, overall)
    atlas = pack(to_uint8_tiles(lr), lay)
    full = np.full((rows * lay.slot, cols * lay.slot, 3), 128, np.uint8)
    full[: atlas.shape[0], : atlas.shape[1]] = atlas
    return full


def plane_sizes(grid: BlockGrid, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(width, height) of the picture of each scale in the planes layout."""
    return [(grid.padded_w // k, grid.padded_h // k) for k in scales]


def pack_planes(x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...]) -> list[np.ndarray]:
    """Planes layout: one picture per scale at 1/k of the padded frame, every block of scale k at its natural
    position, the rest flat mid-grey (cheap to code)."""
    lr = downscale_blocks(pad_tensor(x, grid.block), grid, factors)
    tiles = to_uint8_tiles(lr)
    f = np.asarray(factors).reshape(-1)
    out = []
    for k in scales:
        t = grid.block // k
        plane = np.full((grid.grid_h * t, grid.grid_w * t, 3), 128, np.uint8)
        for b in np.flatnonzero(f == k).tolist():
            i, j = divmod(b, grid.grid_w)
            plane[i * t:(i + 1) * t, j * t:(j + 1) * t] = tiles[b]
        out.append(plane)
    return out
