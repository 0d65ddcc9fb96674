"""ScaleMap: the per-frame downscale factor of every block, and its compact binary form.

The scale map is the only thing that travels beside the LR pixels. Binary layout (big-endian), version 1:

=======  ======  ==============================================================
offset   size    field
=======  ======  ==============================================================
0        4       magic ``b"BBSM"``
4        1       version (1)
5        1       flags (0; reserved, must be 0)
6        4       frame index (uint32)
10       2       block size in HR pixels (uint16, >= 1)
12       2       grid height in blocks (uint16, >= 1)
14       2       grid width in blocks (uint16, >= 1)
16       1       n = number of scales in the scale set (1..16)
17       n       the scale set, strictly increasing factors (uint8 each, each divides the block size)
17+n     m       block indices into the scale set, raster order, ``bits = max(1, ceil(log2 n))`` bits
                 each, MSB first, zero-padded to a whole byte (m = ceil(blocks * bits / 8))
17+n+m   4       CRC-32 (zlib) of all preceding bytes
=======  ======  ==============================================================

For {2, 4, 8} that is 2 bits a block: 128 bytes of indices for a 3840x2160 frame (510 blocks), 149 bytes
in all. :func:`ScaleMap.from_bytes` rejects anything malformed with :class:`ScaleMapError` (a ValueError).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from bbmr_stream.errors import ScaleMapError

MAGIC = b"BBSM"
VERSION = 1
_HEADER = struct.Struct(">4sBBIHHHB")  # magic, version, flags, frame, block, gh, gw, n_scales
MAX_SCALES = 16



def bits_per_block(n_scales: int) -> int:
    return max(1, math.ceil(math.log2(n_scales))) if n_scales > 1 else 1


@dataclass(frozen=True, eq=False)
class ScaleMap:
    """Downscale factor per block: ``scales[i, j]`` is the factor of block (i, j) (an element of
    ``scale_set``); ``frame_index`` is the frame's index in its stream."""

    scales: np.ndarray  # (grid_h, grid_w) uint8 factors
    scale_set: tuple[int, ...] = (2, 4, 8)
    frame_index: int = 0
    block: int = 128

    def __post_init__(self) -> None:
        s = np.asarray(self.scales)
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise ScaleMapError(f"scales must be a non-empty 2-D grid, got shape {s.shape}")
        if s.shape[0] > 0xFFFF or s.shape[1] > 0xFFFF:
            raise ScaleMapError("grid too large (max 65535 blocks a side)")
        object.__setattr__(self, "scales", s.astype(np.uint8))
        object.__setattr__(self, "scale_set", tuple(int(k) for k in self.scale_set))
        ss = self.scale_set
        if not 1 <= len(ss) <= MAX_SCALES:
            raise ScaleMapError(f"scale set must have 1..{MAX_SCALES} entries, got {len(ss)}")
        if any(k < 1 or k > 255 for k in ss) or any(a >= b for a, b in zip(ss, ss[1:])):
            raise ScaleMapError(f"scale set must be strictly increasing factors in 1..255, got {ss}")
        if not 1 <= self.block <= 0xFFFF or any(self.block % k for k in ss):
            raise ScaleMapError(f"block size {self.block} must be divisible by every scale in {ss}")
        if not 0 <= self.frame_index <= 0xFFFFFFFF:
            raise ScaleMapError("frame index must fit in 32 bits")
        bad = ~np.isin(s, np.array(ss))
        if bad.any():
            raise ScaleMapError(f"scale {int(s[bad][0])} is not in the scale set {ss}")

    @property
    def grid_h(self) -> int:
        return int(self.scales.shape[0])

    @property
    def grid_w(self) -> int:
        return int(self.scales.shape[1])

    @property
    def flat(self) -> np.ndarray:
        """(n_blocks,) factors in raster order."""
        return self.scales.reshape(-1)

    def lr_pixels(self) -> int:
        """LR pixels (per plane, luma) that the map's blocks take."""
        return int(sum((self.block // int(k)) ** 2 for k in self.flat))

    def share(self) -> dict[int, float]:
        """Fraction of blocks at each scale of the set."""
        n = self.flat.size
        return {k: float(np.count_nonzero(self.flat == k)) / n for k in self.scale_set}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScaleMap):
            return NotImplemented
        return (self.scale_set == other.scale_set and self.frame_index == other.frame_index
                and self.block == other.block and np.array_equal(self.scales, other.scales))

    def check_grid(self, grid, scales=None) -> None:
        """Raise :class:`ScaleMapError` unless this map fits ``grid`` (a BlockGrid) and uses only ``scales``."""
        if (self.grid_h, self.grid_w) != (grid.grid_h, grid.grid_w):
            raise ScaleMapError(f"scale map grid {self.grid_h}x{self.grid_w} does not match the stream's "
                                f"{grid.grid_h}x{grid.grid_w}")
        if scales is not None and not np.isin(self.flat, np.asarray(scales)).all():
            raise ScaleMapError(f"scale map uses scales {sorted(set(self.flat.tolist()))}, "
                                f"the stream has {list(scales)}")

    # --------------------------------------------------------------------------------- binary form
    def to_bytes(self) -> bytes:
        ss = self.scale_set
        lut = np.zeros(256, dtype=np.uint8)
        lut[np.array(ss)] = np.arange(len(ss), dtype=np.uint8)
        idx = lut[self.flat]
        bits = bits_per_block(len(ss))
        # MSB-first bit planes of each index, then pack
        planes = ((idx[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & 1).astype(np.uint8)
        payload = np.packbits(planes.reshape(-1)).tobytes()
        head = _HEADER.pack(MAGIC, VERSION, 0, self.frame_index, self.block, self.grid_h, self.grid_w, len(ss))
        body = head + bytes(ss) + payload
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "ScaleMap":
        """Parse the binary form; raises :class:`ScaleMapError` on anything malformed (never another
        exception type for bad bytes)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ScaleMapError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER.size + 4:
            raise ScaleMapError(f"scale map too short ({len(data)} bytes)")
        magic, version, flags, frame, block, gh, gw, n = _HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise ScaleMapError(f"bad magic {magic!r}")
        if version != VERSION:
            raise ScaleMapError(f"unsupported scale map version {version}")
        if flags != 0:
            raise ScaleMapError(f"reserved flags set ({flags:#x})")
        if not 1 <= n <= MAX_SCALES:
            raise ScaleMapError(f"bad scale count {n}")
        if gh < 1 or gw < 1:
            raise ScaleMapError(f"empty grid {gh}x{gw}")
        bits = bits_per_block(n)
        n_blocks = gh * gw
        m = (n_blocks * bits + 7) // 8
        expect = _HEADER.size + n + m + 4
        if len(data) != expect:
            raise ScaleMapError(f"length {len(data)} does not match the header ({expect} bytes expected)")
        (crc,) = struct.unpack_from(">I", data, expect - 4)
        if zlib.crc32(data[: expect - 4]) != crc:
            raise ScaleMapError("CRC mismatch")
        ss = tuple(data[_HEADER.size:_HEADER.size + n])
        payload = np.frombuffer(data, dtype=np.uint8, count=m, offset=_HEADER.size + n)
        allbits = np.unpackbits(payload)
        if allbits[n_blocks * bits:].any():
            raise ScaleMapError("non-zero padding bits")
        planes = allbits[: n_blocks * bits].reshape(n_blocks, bits).astype(np.uint16)
        idx = (planes << np.arange(bits - 1, -1, -1, dtype=np.uint16)).sum(axis=1)
        if (idx >= n).any():
            raise ScaleMapError(f"block index {int(idx.max())} outside the scale set of {n}")
        factors = np.array(ss, dtype=np.uint8)[idx].reshape(gh, gw)
        return cls(factors, ss, frame, block)  # __post_init__ validates the set and the block size
