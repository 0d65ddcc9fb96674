"""Recording of the live viewer (``--record``): each frame as finally shown to an MP4 (``player.output``).

The file is written under a temporary name beside ``path`` (same filesystem) and renamed into place by
:meth:`Recorder.close`. A failed write (a full disk: :class:`~bbmr_stream.errors.DiskFullError`, raised once, to
the worker thread that writes) removes it and drops the later frames; a previous file at ``path`` is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bbmr_stream.errors import disk_full


class Recorder:
    """Writes RGB frames to ``path`` (H.264, CRF 18, at ``fps`` frames/s); the file is opened with the first
    frame's size and renamed into place by :meth:`close`."""

    def __init__(self, path: str, fps: float, crf: float = 18.0) -> None:
        self.path, self.fps, self.crf = path, fps, crf
        self.writer = None
        self.failed = False  # a write failed: the recording is removed, later frames are dropped
        kept = f", the previous {path} is unchanged" if Path(path).exists() else ""
        self.outcome = f"the recording was removed{kept}"  # the end of a disk-full message

    def write(self, rgb: np.ndarray) -> None:
        if self.failed:
            return
        try:
            with disk_full(self.path, self.outcome):
                if self.writer is None:
                    from player.output import VideoWriter

                    self.writer = VideoWriter(self.path, rgb.shape[1], rgb.shape[0], int(round(self.fps)), self.crf)
                self.writer.write(rgb)
        except BaseException:
            self.failed = True
            self._drop()
            raise

    def close(self) -> None:
        """Finish the file (nothing written, or a failed recording: no file). A full disk while finishing
        raises DiskFullError, the file removed."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                with disk_full(self.path, self.outcome):
                    writer.close(True)  # removes the file when finishing fails
            except BaseException:
                self.failed = True
                raise

    def _drop(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.discard()
