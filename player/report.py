"""Per-frame quality report in libvmaf's JSON layout, plus CSV and a PNG plot.

``{"version", "fps", "frames": [{"frameNum", "metrics": {"psnr_y", "niqe", "scale_x2_share", ...}}],
"pooled_metrics": {metric: {"min", "max", "mean", "harmonic_mean"}}, "stream": {...}, "conventions": {...}}``
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from bbmr_stream.imageio import Staged

CONVENTIONS = {
    "psnr_y": "the reference's decoded Y plane vs the luma of the played RGB frame in the source's matrix and "
              "range (exact, unrounded; bbmr_stream.metrics.psnr_luma, as FFmpeg's psnr filter), peak 255, crop 0",
    "niqe": "MATLAB niqe.m semantics (BasicSR 1.4.2), Y rounded, crop 0",
    "scale_share": "fraction of the frame's blocks at each scale (from its SEI scale map)",
    "rendition / family": "the rung each frame was played from and its family (bbmr_stream.family)",
}


def pooled(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {}
    hm = float(v.size / np.sum(1.0 / v)) if (v > 0).all() else float("nan")
    return {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "harmonic_mean": hm}


class Report:
    """What a playback run measured (:func:`player.play` returns it): ``stream`` (what was played), ``frames``
    (per-frame metrics) and ``extra`` (concealment, comparisons, timing, ABR decisions: top-level keys of
    :meth:`to_dict`)."""

    def __init__(self, fps: float, stream: dict) -> None:
        self.fps, self.stream = fps, stream
        self.frames: list[dict] = []
        self.extra: dict = {}

    def add(self, frame_num: int, metrics: dict) -> None:
        self.frames.append({"frameNum": frame_num, "metrics": metrics})

    def concealed_total(self) -> int:
        """Frames not shown as coded, of the played rendition and of the comparisons."""
        return self.extra.get("concealed_frames", 0) + sum(
            c["concealed_frames"] for c in self.extra.get("compare_concealed", {}).values())

    def to_dict(self) -> dict:
        keys = sorted({k for f in self.frames for k, v in f["metrics"].items() if not isinstance(v, str)})
        return {"version": "bbmr-stream-1", "fps": self.fps, "frames": self.frames,
                "pooled_metrics": {k: pooled([f["metrics"].get(k) for f in self.frames]) for k in keys},
                "stream": self.stream, "conventions": CONVENTIONS} | self.extra

    def write(self, path: str | Path, staged: Staged | None = None) -> None:
        """The JSON at ``path``, the CSV and the PNG plot beside it, each written in full under a temporary name
        before any is renamed into place: a failure (a full disk) leaves the previous three as they were. With
        ``staged``, the renames are left to its :meth:`~bbmr_stream.imageio.Staged.commit` (with other outputs)."""
        with Staged() as own:
            st = staged or own
            p = Path(path)
            st.path(p).write_text(json.dumps(self.to_dict(), indent=2))
            st.path(p.with_suffix(".csv")).write_text(self.csv_text())
            self.plot(st.path(p.with_suffix(".png")))
            own.commit()

    def csv_text(self) -> str:
        """The per-frame metrics as CSV: ``frameNum`` and every metric, a row per frame."""
        keys = sorted({k for f in self.frames for k in f["metrics"]})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["frameNum"] + keys)
        for f in self.frames:
            w.writerow([f["frameNum"]] + [f["metrics"].get(k, "") for k in keys])
        return buf.getvalue()

    def plot(self, path: Path) -> None:
        """The PSNR-Y (and NIQE) curve with concealed frames and rendition switches marked, as PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3.5))
        x = [f["frameNum"] for f in self.frames]
        for k, color in (("psnr_y", "tab:blue"), ("bicubic_psnr_y", "tab:gray")):
            ys = [f["metrics"].get(k) for f in self.frames]
            if any(y is not None for y in ys):
                ax.plot(x, [np.nan if y is None else y for y in ys], color=color, label=k)
        ax.set_xlabel("frame")
        ax.set_ylabel("PSNR-Y (dB)")
        ny = [f["metrics"].get("niqe") for f in self.frames]
        if any(v is not None for v in ny):
            ax2 = ax.twinx()
            pts = [(i, v) for i, v in zip(x, ny) if v is not None]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:orange", ms=3, label="niqe")
            ax2.set_ylabel("NIQE (lower is better)")
        for f in self.frames:
            if f["metrics"].get("concealed"):
                ax.axvline(f["frameNum"], color="red", alpha=0.2)
        for a, b in zip(self.frames, self.frames[1:]):  # rendition switches
            if a["metrics"].get("rendition") != b["metrics"].get("rendition"):
                ax.axvline(b["frameNum"], color="green", ls="--", alpha=0.6)
                ax.text(b["frameNum"], ax.get_ylim()[1], str(b["metrics"].get("rendition")), fontsize=7,
                        rotation=90, va="top", color="green")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left")
        ax.set_title(f"{self.stream.get('rendition', '')}  {self.stream.get('bitrate_kbps', 0):.0f} kbps")
        fig.tight_layout()
        try:
            fig.savefig(path, dpi=100, format="png")
        finally:
            plt.close(fig)
