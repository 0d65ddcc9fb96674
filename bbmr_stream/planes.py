"""Planes layout (``planes``, version 2): one plane per scale k at 1/k of the frame, every block of scale k at
its natural position (motion compensation works across block edges), the rest flat mid-grey (cheap to code);
the planes are stacked into one coded picture. Pack and unpack both live here (:class:`Planes`); the packager
and the player import this module.

Version 2 against version 1 (one video stream per plane, each at the block-padded size), both measured on the
1080p pan at CRF 33 (docs/levers.md):
- each plane is cropped to the frame's own content, ``ceil(size / k)`` rounded up to even (4:2:0): the
  replicated rows of the block padding cost bits for pixels no one sees (18 padded rows of the 480x288 x4
  picture took 42 % more H.264 payload than the 480x270 picture); unpack pads them back by edge replication;
- one picture instead of one stream per scale: every stream pays its own MPEG-TS/PES packets per frame (three
  streams took 95 kbps of overhead where one takes 33). The stack (:func:`stack`): the finest plane on top, the
  others side by side under it, left to right;
- ``pack_planes(margin=m)`` keeps m LR pixels of a tile's real surroundings instead of grey up to its edge
  (measured, off by default: :data:`MARGIN`).
"""

from __future__ import annotations

import numpy as np
import torch

from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import LRBlocks, lr_blocks_from_tiles
from bbmr_stream.resize import downscale, levels8
from bbmr_stream.scalemap import ScaleMap

NAME = "planes"
VERSION = 2


def _coded(n: int, k: int, padded: int) -> int:
    """Coded extent of ``n`` source pixels at 1/k: ceil(n / k), rounded up to even, at most the padded extent."""
    c = -(-n // k)
    return min(c + c % 2, padded // k)


def plane_sizes(grid: BlockGrid, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(width, height) of the coded picture of each scale in the planes layout."""
    return [(_coded(grid.width, k, grid.padded_w), _coded(grid.height, k, grid.padded_h)) for k in scales]


def stack(grid: BlockGrid, scales: tuple[int, ...]) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]]:
    """The coded picture's (width, height) and each plane's (x, y, width, height) in it: the first (finest)
    plane at the top left, the others side by side below it."""
    sizes = plane_sizes(grid, tuple(scales))
    (w0, h0), rest = sizes[0], sizes[1:]
    boxes = [(0, 0, w0, h0)]
    x = 0
    for w, h in rest:
        boxes.append((x, h0, w, h))
        x += w
    return (max(w0, x), h0 + max((h for _, h in rest), default=0)), boxes


# LR pixels of true content kept around every tile of a plane (pack_planes). Not kept (0): on the 1080p pan a
# margin buys about +0.2-0.3 dB at equal rate (32 px: CRF 33 417 -> 457 kbps, 23.38 -> 23.83 dB) and removes the
# grey outlines, but on the small camera clips, where a 32-px margin fills most of each plane, BBMR's BD-rate
# against plain went from +41 % to +84 % (bikes) and +29 % to +98 % (vtest) (docs/levers.md).
MARGIN = 0


def pack_planes(x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...],
                margin: int | None = None) -> list[np.ndarray]:
    """Planes of every scale at 1/k of the frame (:func:`plane_sizes`), every block of scale k at its natural
    position with ``margin`` LR pixels of its real neighbourhood at that scale around it, the rest flat
    mid-grey (cheap to code). Without the margin, the codec's deblocking and prediction blend a tile's edge
    with the grey next to it (grey seams on the 128-px grid at CRF 30+); the tiles themselves are the same
    either way (all come from the one downscale of the frame at scale k)."""
    m = MARGIN if margin is None else margin
    xp = pad_tensor(x, grid.block)
    f = np.asarray(factors).reshape(grid.grid_h, grid.grid_w)
    out = []
    for k, (w, h) in zip(scales, plane_sizes(grid, scales)):
        t = grid.block // k
        keep = torch.from_numpy(np.ascontiguousarray(f == k)).float()[None, None]
        keep = torch.nn.functional.interpolate(keep, scale_factor=t, mode="nearest")
        if not keep.any():  # no block at this scale: a grey plane, no downscale
            out.append(np.full((h, w, 3), 128, np.uint8))
            continue
        if m > 0:
            keep = torch.nn.functional.max_pool2d(keep, 2 * m + 1, stride=1, padding=m)
        full = levels8(downscale(xp, k))[0].permute(1, 2, 0).to(torch.uint8)
        plane = torch.where(keep[0, 0, :, :, None] > 0, full, torch.full_like(full, 128))
        out.append(np.ascontiguousarray(plane[:h, :w].numpy()))
    return out


def _whole_blocks(picture: np.ndarray, grid: BlockGrid, k: int) -> np.ndarray:
    """A decoded plane padded back to whole blocks at 1/k by edge replication."""
    t = grid.block // k
    h, w = picture.shape[:2]
    ph, pw = grid.grid_h * t, grid.grid_w * t
    if (h, w) == (ph, pw):
        return picture
    if h > ph or w > pw:
        raise ValueError(f"a {w}x{h} plane is larger than the {pw}x{ph} of its scale x{k}")
    return np.pad(picture, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def stack_planes(planes: list[np.ndarray], grid: BlockGrid, scales: tuple[int, ...]) -> np.ndarray:
    """The planes in one picture (:func:`stack`), the free area flat mid-grey."""
    (w, h), boxes = stack(grid, scales)
    out = np.full((h, w, 3), 128, np.uint8)
    for p, (x, y, pw, ph) in zip(planes, boxes):
        out[y:y + ph, x:x + pw] = p
    return out


def split_planes(picture: np.ndarray, grid: BlockGrid, scales: tuple[int, ...]) -> list[np.ndarray]:
    """The planes (views) of a stacked picture."""
    (w, h), boxes = stack(grid, scales)
    if picture.shape[:2] != (h, w):
        raise ValueError(f"a {picture.shape[1]}x{picture.shape[0]} picture, the planes of scales {list(scales)} "
                         f"stack to {w}x{h}")
    return [picture[y:y + ph, x:x + pw] for x, y, pw, ph in boxes]


def unpack_planes(planes: list[np.ndarray], scales: tuple[int, ...], smap: ScaleMap, grid: BlockGrid) -> LRBlocks:
    """LR tiles from the planes: block b of scale k is cut at its natural position in plane k."""
    smap.check_grid(grid, scales)
    plane = {k: _whole_blocks(p, grid, k) for k, p in zip(scales, planes)}

    def tile(b: int, k: int) -> np.ndarray:
        t, (i, j) = grid.block // k, divmod(b, grid.grid_w)
        return plane[k][i * t:(i + 1) * t, j * t:(j + 1) * t]

    return lr_blocks_from_tiles(grid, smap.flat, tile)


class Planes:
    """The planes layout as the families use it: the planes of every scale stacked in one picture."""

    name, version = NAME, VERSION

    def sizes(self, grid: BlockGrid, scales, overall: int) -> list[tuple[int, int]]:
        return [stack(grid, tuple(scales))[0]]

    def fit(self, factors: np.ndarray, grid: BlockGrid, scales, overall: int) -> np.ndarray:
        return factors

    def pack(self, x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales, overall: int) -> list[np.ndarray]:
        return [stack_planes(pack_planes(x, grid, factors, tuple(scales)), grid, tuple(scales))]

    def unpack(self, pictures: list[np.ndarray], smap: ScaleMap, grid: BlockGrid, scales, overall: int) -> LRBlocks:
        return unpack_planes(split_planes(pictures[0], grid, tuple(scales)), tuple(scales), smap, grid)


def active_mask(grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...]) -> torch.Tensor:
    """(1, 1, H, W) of the stacked picture: 1 where a pixel belongs to a block coded at its plane's scale (what
    the client cuts out), 0 on the flat grey."""
    (w, h), boxes = stack(grid, scales)
    f = np.asarray(factors).reshape(grid.grid_h, grid.grid_w)
    out = torch.zeros(1, 1, h, w)
    for k, (x, y, pw, ph) in zip(scales, boxes):
        t = grid.block // k
        keep = torch.from_numpy(np.ascontiguousarray(f == k)).float()[None, None]
        keep = torch.nn.functional.interpolate(keep, scale_factor=t, mode="nearest")
        out[..., y:y + ph, x:x + pw] = keep[..., :ph, :pw]
    return out


def pack_float(xp: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...]) -> torch.Tensor:
    """The stacked planes picture of the padded frame ``xp`` (1, 3, H, W) in [0, 1] as floats, differentiable
    in ``xp`` (no 8-bit rounding: :func:`pack_planes` of the same frame is this through :func:`levels8`); no
    margin."""
    (w, h), boxes = stack(grid, scales)
    mask = active_mask(grid, factors, scales).to(xp.device)
    out = torch.full((1, 3, h, w), 128 / 255, dtype=xp.dtype, device=xp.device)
    for k, (x, y, pw, ph) in zip(scales, boxes):
        if not mask[..., y:y + ph, x:x + pw].any():  # no block at this scale: grey, no downscale
            continue
        pad = (x, w - x - pw, y, h - y - ph)
        plane = torch.nn.functional.pad(downscale(xp, k)[..., :ph, :pw], pad)
        region = torch.nn.functional.pad(torch.ones(1, 1, ph, pw, device=xp.device), pad) * mask
        out = out * (1 - region) + plane * region  # out of place: differentiable in xp
    return out


def tiles_of(picture: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...]
             ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """The client's cut of a stacked planes picture (1, 3, H, W) float, differentiable: per scale k, the tiles
    (m_k, 3, block/k, block/k) of its blocks and their raster indices, each plane padded back to whole blocks
    by edge replication (:func:`unpack_planes`, without the 8-bit decode)."""
    _, boxes = stack(grid, scales)
    f = np.asarray(factors).reshape(-1)
    tiles, index = {}, {}
    for k, (x, y, pw, ph) in zip(scales, boxes):
        idx = np.flatnonzero(f == k)
        if idx.size == 0:
            continue
        t = grid.block // k
        p = picture[..., y:y + ph, x:x + pw]
        p = torch.nn.functional.pad(p, (0, grid.grid_w * t - pw, 0, grid.grid_h * t - ph), mode="replicate")
        p = p.reshape(3, grid.grid_h, t, grid.grid_w, t).permute(1, 3, 0, 2, 4).reshape(-1, 3, t, t)
        ix = torch.from_numpy(idx.astype(np.int64))
        tiles[k], index[k] = p[ix], ix
    return tiles, index
