"""What the live viewer shows: each frame's bicubic stand-in at once, then its super-resolved picture when the SR
worker gets to it. The screen keeps the newest pictures for the page (bicubic | BBMR of the same frame), hands
each shown picture to an ``on_show`` callback (the window) and records the final ones (``--record``)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from bbmr_stream.scalemap import ScaleMap
from player.live_record import Recorder
from player.live_stats import ViewStats

# on_show(RGB uint8 as shown, the frame's scale map, what it is ("bicubic stand-in" | "BBMR <upscaler>"), frame index)
OnShow = Callable[[np.ndarray, "ScaleMap | None", str, int], None]
KEEP_STANDINS = 64  # stand-ins kept (frames) to pair with the SR result of the same frame


class Screen:
    """The shown pictures of one viewer (called from the stand-in and SR worker threads)."""

    def __init__(self, stats: ViewStats, upscaler_name: str, on_show: OnShow | None = None,
                 recorder: Recorder | None = None) -> None:
        self.stats, self.upscaler_name, self.on_show, self.recorder = stats, upscaler_name, on_show, recorder
        self.lows: dict[int, np.ndarray] = {}  # frame index -> bicubic stand-in (recent), paired with SR results
        self.shown_bicubic: np.ndarray | None = None
        self.pair: tuple[np.ndarray, np.ndarray, int] | None = None  # (bicubic, SR, index) of the newest SR frame

    def standin(self, low: np.ndarray, smap: ScaleMap, index: int) -> None:
        """Show the bicubic stand-in of frame ``index`` (counted as shown)."""
        self.lows[index] = low
        self.lows.pop(index - KEEP_STANDINS, None)
        self._show(low, None, "bicubic stand-in", smap, index)

    def superresolved(self, high: np.ndarray, smap: ScaleMap, index: int) -> None:
        """Show the SR result of frame ``index``, paired with the same frame's stand-in when it is still kept."""
        low = self.lows.get(index)
        self._show(low if low is not None else high, high, f"BBMR {self.upscaler_name}", smap, index)

    def _show(self, low: np.ndarray, high: np.ndarray | None, what: str, smap: ScaleMap, index: int) -> None:
        self.shown_bicubic = low
        if high is None:
            self.stats.shown += 1  # a frame counts once as shown (its stand-in), its SR result as super-resolved
        else:
            self.pair = (low, high, index)
        self.stats.showing = what
        if self.on_show is not None:
            self.on_show(high if high is not None else low, smap, what, index)
        final = high if high is not None else (low if self.upscaler_name == "bicubic" else None)
        if self.recorder is not None and final is not None:  # each frame as finally shown
            self.recorder.write(final)

    def side_by_side(self) -> tuple[np.ndarray, np.ndarray, str] | None:
        """(left, right, label of the right) for the page: bicubic | BBMR of the newest super-resolved frame,
        or the newest stand-in on both sides until SR has produced one; None before any frame."""
        if self.pair is not None:
            low, high, index = self.pair
            return low, high, f"BBMR {self.upscaler_name}, frame {index}"
        if self.shown_bicubic is not None:
            label = "bicubic (no SR upscaler)" if self.upscaler_name == "bicubic" else "waiting for SR"
            return self.shown_bicubic, self.shown_bicubic, label
        return None
