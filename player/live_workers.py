"""The live viewer's two worker threads: the stand-in loop rebuilds the newest frame with bicubic at once and
shows it; the SR loop, whenever it is free, takes the newest frame through the SR upscaler (JointSR by
default: seconds per 1080p frame on a CPU) and shows that. A slow SR never stalls the stand-ins or the receive
loop. An exception in either loop (a bug) stops both and is kept in :attr:`Workers.error` for the caller."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.errors import ScaleMapError
from bbmr_stream.family import BBMR
from bbmr_stream.scalemap import ScaleMap
from player.live_receive import Mailbox
from player.live_screen import Screen
from player.live_stats import Quality, ViewStats

SCALES = (2, 4, 8)  # the scales the upscalers are built for


class Unpacker:
    """A received frame -> (BBMR family, LR atlas picture RGB, scale map), by the sender's stream description
    (``stream``: source size in pixels, block, scales, overall; set once connected)."""

    def __init__(self, stats: ViewStats) -> None:
        self.stats = stats
        self.stream: dict = {}
        self.geometry = None  # (key of the map's grid, family)

    def family(self, smap: ScaleMap):
        """The BBMR family (atlas layout) of the stream, rebuilt when the map's grid changes."""
        key = (smap.grid_h, smap.grid_w, smap.block, smap.scale_set)
        if self.geometry is None or self.geometry[0] != key:
            st = self.stream
            w, h = int(st.get("width", smap.grid_w * smap.block)), int(st.get("height", smap.grid_h * smap.block))
            fam = BBMR.atlas(BlockGrid(h, w, smap.block), smap.scale_set, int(st.get("overall", 4)))
            self.geometry = (key, fam)
        return self.geometry[1]

    def prepare(self, item: tuple) -> tuple | None:
        """(family, LR picture, map) of a mailbox item, or None when it has no map or its map does not fit the
        stream (counted as invalid)."""
        from bbmr_stream.colour import frame_to_rgb

        frame, smap, _ = item
        if smap is None:
            return None
        pic = frame_to_rgb(frame, "bt709", False)[0]
        try:
            fam = self.family(smap)
            if [list(p) for p in fam.sizes()] != [[pic.shape[1], pic.shape[0]]]:
                raise ValueError(f"picture {pic.shape[1]}x{pic.shape[0]} is not this stream's atlas")
            smap.check_grid(fam.geo.grid, fam.lr_scales())
        except (ScaleMapError, ValueError):
            self.stats.maps_invalid += 1
            return None
        return fam, pic, smap


class Workers:
    """The stand-in loop and (unless the upscaler is bicubic) the SR loop over ``mailbox``."""

    def __init__(self, upscaler_name: str, device, mailbox: Mailbox, unpacker: Unpacker, screen: Screen,
                 quality: Quality, stats: ViewStats, backend: str | None = None) -> None:
        self.upscaler_name, self.device, self.backend = upscaler_name, device, backend
        self.mailbox, self.unpacker, self.screen, self.quality, self.stats = mailbox, unpacker, screen, quality, stats
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run the stand-in loop here and the SR loop on a second thread (both until the mailbox stops)."""
        sr = None
        if self.upscaler_name != "bicubic":
            sr = threading.Thread(target=self._guard, args=(self._sr_loop,), daemon=True)
            sr.start()
        self._guard(self._standin_loop)
        if sr is not None:
            sr.join(timeout=600)

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as e:  # a bug: kept for the caller, which re-raises it
            self.error = e
            self.mailbox.stop()

    def _upscaler(self, name: str):
        from models.factory import make_upscaler

        return make_upscaler(name, SCALES, self.device, backend=self.backend)

    def _frames(self, slot: str):
        """(item, family, LR picture, map) of each usable frame the mailbox slot hands out."""
        while (item := self.mailbox.take(slot)) is not None:
            prep = self.unpacker.prepare(item)
            if prep is not None:
                yield (item, *prep)

    def _standin_loop(self) -> None:
        """Every frame it can: the bicubic reconstruction at once (fast), shown until SR has a newer result."""
        bicubic = self._upscaler("bicubic")
        for item, fam, pic, smap in self._frames("standin"):
            low = fam.reconstruct([pic], smap, bicubic)
            self.screen.standin(low, smap, smap.frame_index)
            self.quality.standin(smap.frame_index, low)
            self.stats.shares = {f"x{k}": float(v) for k, v in smap.share().items()}
            _latency(self.stats.latencies_ms, item[2])

    def _sr_loop(self) -> None:
        """Whenever it is free, the newest frame through the SR upscaler."""
        sr = self._upscaler(self.upscaler_name)
        for item, fam, pic, smap in self._frames("sr"):
            high: np.ndarray = fam.reconstruct([pic], smap, sr)
            self.stats.superresolved += 1
            _latency(self.stats.sr_latencies_ms, item[2])
            self.screen.superresolved(high, smap, smap.frame_index)
            self.quality.superresolved(smap.frame_index, high)


def _latency(into: list, t_capture: float | None) -> None:
    """Glass-to-glass latency (ms) of a frame captured at ``t_capture`` (s since the epoch; None: unknown)."""
    if t_capture:
        into.append((time.time() - t_capture) * 1000)
