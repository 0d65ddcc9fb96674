"""The live viewer's counters (:class:`ViewStats`) and, in the selftest, its picture quality against the frames
the sender sent (:class:`Quality`: PSNR-Y, BT.601 Y of RGB, peak 255, crop 0)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass
class ViewStats:
    """Counters of one viewer; times in ms, rates per second of wall time since ``started``."""

    received: int = 0
    shown: int = 0
    superresolved: int = 0
    dropped: int = 0  # frames replaced in the mailbox before the worker took them
    maps_sei: int = 0
    maps_channel: int = 0
    maps_reused: int = 0
    maps_invalid: int = 0
    bytes: int = 0  # encoded video bytes handed to the decoder
    latencies_ms: list = field(default_factory=list)  # capture -> shown (stand-in)
    sr_latencies_ms: list = field(default_factory=list)  # capture -> super-resolved
    shares: dict = field(default_factory=dict)  # "x2"/"x4"/"x8" -> share of the blocks of the newest frame
    started: float = field(default_factory=time.time)  # s since the epoch
    codec: str = ""
    showing: str = "nothing yet"

    def summary(self) -> dict:
        """The JSON the CLI prints and the page shows (latency medians over the newest 300 frames)."""
        dt = max(time.time() - self.started, 1e-6)
        lat = self.latencies_ms[-300:]
        srl = self.sr_latencies_ms[-300:]
        return {"frames_received": self.received, "frames_shown": self.shown,
                "frames_superresolved": self.superresolved, "frames_dropped": self.dropped,
                "fps_received": round(self.received / dt, 2), "fps_shown": round(self.shown / dt, 2),
                "fps_superresolved": round(self.superresolved / dt, 2),
                "kbps_received": round(self.bytes * 8 / dt / 1000, 1), "codec": self.codec,
                "maps_matched": self.maps_sei + self.maps_channel, "maps_sei": self.maps_sei,
                "maps_channel": self.maps_channel, "maps_reused": self.maps_reused,
                "maps_invalid": self.maps_invalid,
                "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
                "sr_latency_ms_median": round(statistics.median(srl), 1) if srl else None,
                "shares": self.shares, "showing": self.showing}


class Quality:
    """PSNR-Y (dB) of what is shown against ``reference`` (frame index -> the source RGB the sender sent;
    the selftest fills it while the viewer runs); frames without a reference are not measured."""

    def __init__(self, reference: Mapping[int, np.ndarray] | None, sr_is_bicubic: bool) -> None:
        self.reference = reference
        self.sr_is_bicubic = sr_is_bicubic  # no SR upscaler: the stand-ins are the final pictures
        self.psnr: list[float] = []  # final pictures (SR results, or the stand-ins without SR)
        self.psnr_bicubic: list[float] = []  # every stand-in
        self.psnr_by_frame: dict[int, float] = {}  # frame index -> stand-in PSNR-Y
        self.psnr_sr_by_frame: dict[int, float] = {}  # frame index -> SR PSNR-Y

    def _psnr(self, index: int, img: np.ndarray) -> float | None:
        """PSNR-Y of ``img`` against the reference of frame ``index`` (None: no reference for it)."""
        from bbmr_stream.metrics import psnr_y

        ref = self.reference.get(index) if self.reference is not None else None
        return None if ref is None else psnr_y(ref, img)

    def standin(self, index: int, low: np.ndarray) -> None:
        """Measure the bicubic stand-in of frame ``index``."""
        q = self._psnr(index, low)
        if q is None:
            return
        self.psnr_bicubic.append(q)
        self.psnr_by_frame[index] = q
        if self.sr_is_bicubic:
            self.psnr.append(q)

    def superresolved(self, index: int, high: np.ndarray) -> None:
        """Measure the SR result of frame ``index``."""
        q = self._psnr(index, high)
        if q is None:
            return
        self.psnr.append(q)
        self.psnr_sr_by_frame[index] = q
