"""Device-agnostic SR inference helpers: tiled whole-frame SR with overlap, fp16/bf16 autocast, batching.

Large LR planes (a 4K frame at 1/2 is 1920x1080) are cut into ``tile`` x ``tile`` LR tiles with ``overlap``
pixels of context on each side, super-resolved in batches, and the centres pasted back, so memory stays
bounded and the result equals whole-frame inference away from tile seams up to the network's receptive
field beyond ``overlap``.
"""

from __future__ import annotations

import torch
from torch import nn


def autocast_for(device: torch.device, half: bool | None = None):
    """fp16 autocast on CUDA (default on), none on CPU unless ``half`` (then bf16)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16, enabled=True if half is None else half)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(half))


TILE = {"cuda": 192, "cpu": 1024}  # LR tile side by device: GPU memory vs. CPU RAM (24 GiB here)
BATCH = {"cuda": 4, "cpu": 1}  # tiles per forward call: a 1024-px tile of a 1-OSAG OmniSR peaks at ~4 GB on CPU


def tile_spans(n: int, tile: int) -> list[tuple[int, int]]:
    """Split ``n`` pixels into the fewest spans of at most ``tile``, of equal size (+-1): no sliver tiles."""
    parts = -(-n // tile)
    size = -(-n // parts)
    return [(i * size, min((i + 1) * size, n)) for i in range(parts) if i * size < n]


@torch.no_grad()
def tiled_sr(model: nn.Module, x: torch.Tensor, scale: int, tile: int | None = None, overlap: int = 16,
             batch: int | None = None, half: bool | None = None) -> torch.Tensor:
    """(1, 3, h, w) LR in [0, 1] -> (1, 3, s*h, s*w) SR; tiles of at most ``tile`` px with ``overlap`` px margins.

    Default tile: 192 px on CUDA (batched), 1024 px on CPU, where a 1080p frame's x2 plane goes through in one
    piece: OmniSR's ESA sees beyond a 16-px overlap, so tiling changes the result (and costs ~1.4x at 192 px).
    Larger planes (a 4K frame's x2 plane, 1920x1088) are cut into equal tiles, ``batch`` tiles of one shape per
    forward call (default 4 on CUDA, 1 on CPU): peak memory is that of one call, whatever the frame size.
    A model whose receptive radius is within ``overlap`` gives exactly its whole-plane result (tested)."""
    dev = x.device
    tile = tile or TILE.get(dev.type, 1024)
    batch = batch or BATCH.get(dev.type, 1)
    _, c, h, w = x.shape
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        with autocast_for(dev, half):
            return model(x).float()
    out = torch.empty(1, c, h * scale, w * scale, device=dev)
    groups: dict[tuple[int, int], list] = {}  # crop shape -> boxes: only same-shaped crops share a call
    for y, ye in tile_spans(h, tile):
        for xx, xe in tile_spans(w, tile):
            y0, x0 = max(y - overlap, 0), max(xx - overlap, 0)
            y1, x1 = min(ye + overlap, h), min(xe + overlap, w)
            groups.setdefault((y1 - y0, x1 - x0), []).append((y, ye, xx, xe, y0, y1, x0, x1))
    for boxes in groups.values():
        for i in range(0, len(boxes), batch):
            part = boxes[i:i + batch]
            stack = torch.cat([x[..., y0:y1, x0:x1] for _, _, _, _, y0, y1, x0, x1 in part])
            with autocast_for(dev, half):
                sr = model(stack).float()
            for j, (y, ye, xx, xe, y0, _, x0, _) in enumerate(part):
                oy, ox = (y - y0) * scale, (xx - x0) * scale
                out[..., y * scale:ye * scale, xx * scale:xe * scale] = \
                    sr[j, :, oy:oy + (ye - y) * scale, ox:ox + (xe - xx) * scale]
    return out
