"""Recording of the live viewer (``--record``): each frame as finally shown to an MP4 (``player.output``)."""

from __future__ import annotations

import numpy as np


class Recorder:
    """Writes RGB frames to ``path`` (H.264, CRF 18, at ``fps`` frames/s); the file is opened with the first
    frame's size and renamed into place by :meth:`close`."""

    def __init__(self, path: str, fps: float, crf: float = 18.0) -> None:
        self.path, self.fps, self.crf = path, fps, crf
        self.writer = None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            from player.output import VideoWriter

            self.writer = VideoWriter(self.path, rgb.shape[1], rgb.shape[0], int(round(self.fps)), self.crf)
        self.writer.write(rgb)

    def close(self) -> None:
        """Finish the file (nothing was written: no file)."""
        if self.writer is not None:
            self.writer.close(True)
            self.writer = None
