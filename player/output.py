"""What the player writes besides the screen: the HR frames as an MP4 video (:class:`VideoWriter`) and PNGs,
together the output stage (:class:`Outputs`)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bbmr_stream.errors import disk_full
from bbmr_stream.imageio import Staged, write_image
from bbmr_stream.x264 import with_asm


class VideoWriter:
    """HR frames -> MP4 (H.264), written to a temporary name beside ``path`` (:attr:`tmp`, same filesystem)
    and renamed on close; a failure (a full disk) removes it. CRF > 0: 4:2:0 by the exact
    conversion of :mod:`bbmr_stream.colour` in the source's matrix and range, which the VUI declares (primaries
    and transfer BT.709 for bt709/bt601 sources, BT.2020 for bt2020); CRF 0: qp 0 4:4:4 (lossless analysis)."""

    def __init__(self, path: str, width: int, height: int, fps, crf: float, matrix: str = "bt709",
                 full_range: bool = False) -> None:
        import av

        from bbmr_stream.colour import AV_COLORSPACE

        self.path = Path(path)
        self.matrix, self.full_range = matrix, full_range
        self.tmp = self.path.with_name(f".{self.path.name}.part{self.path.suffix or '.mp4'}")
        self.out = av.open(str(self.tmp), "w", format="mp4")
        s = self.out.add_stream("libx264", rate=fps)
        s.width, s.height = width, height
        s.pix_fmt = "yuv444p" if crf == 0 else "yuv420p"
        s.codec_context.options = with_asm({"qp": "0"} if crf == 0 else {"crf": str(crf)})
        if crf != 0:
            cc = s.codec_context
            cc.colorspace = AV_COLORSPACE[matrix]
            cc.color_primaries = cc.color_trc = 9 if matrix == "bt2020" else 1
            cc.color_range = 2 if full_range else 1
        self.stream, self.n, self.crf = s, 0, crf

    def write(self, rgb: np.ndarray) -> None:
        import av

        from bbmr_stream.colour import video_frame

        if self.crf == 0 or rgb.shape[0] % 2 or rgb.shape[1] % 2:
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        else:
            f = video_frame(rgb, self.matrix, self.full_range)
        f.pts = self.n
        self.n += 1
        for p in self.stream.encode(f):
            self.out.mux(p)

    def finish(self) -> None:
        """Flush the encoder and write the trailer: the file is complete under its temporary name (:attr:`tmp`)."""
        for p in self.stream.encode(None):
            self.out.mux(p)
        out, self.out = self.out, None
        out.close()

    def discard(self) -> None:
        """Remove the file (its container closed first, errors ignored: the disk may be full)."""
        import av

        if self.out is not None:
            out, self.out = self.out, None
            try:
                out.close()
            except (OSError, av.error.FFmpegError):
                pass
        self.tmp.unlink(missing_ok=True)

    def close(self, ok: bool) -> None:
        """``ok``: finish and rename into place; else (or when finishing fails: a full disk) remove the file."""
        try:
            if ok:
                self.finish()
                self.tmp.replace(self.path)
        finally:
            self.discard()


def prepare_outputs(report: str | None, out: str | None) -> None:
    """Make the directories of the report and the video before playback: a bad path fails in a second, not
    after the whole play."""
    from bbmr_stream.imageio import prepare_output_file

    for opt, path in (("--report", report), ("--out", out)):
        if path:
            prepare_output_file(opt, path)


def untouched(*paths: str | None) -> str:
    """What a failed playback run leaves (a full disk: the end of the message of
    :class:`~bbmr_stream.errors.DiskFullError`): ``nothing was written[, the previous A[ and B] is/are
    unchanged]`` for the outputs ``paths`` that exist already."""
    old = [str(p) for p in paths if p and Path(p).exists()]
    if not old:
        return "nothing was written"
    return f"nothing was written, the previous {' and '.join(old)} {'is' if len(old) == 1 else 'are'} unchanged"


class Outputs:
    """The output stage: the video file ``out`` (written to a temporary name beside it; :meth:`finish` hands it
    over to be renamed with the report) and PNGs in ``frames_dir``; seconds spent are added to
    ``secs["output"]``. A full disk raises :class:`~bbmr_stream.errors.DiskFullError` naming the file, ending
    with ``outcome`` (:func:`untouched`)."""

    def __init__(self, man, secs: dict, out: str | None = None, crf: float = 18.0,
                 frames_dir: str | None = None, outcome: str = "nothing was written") -> None:
        self.out, self.outcome = out, outcome
        self.writer = VideoWriter(out, man.source["width"], man.source["height"], Fraction(*man.source["fps"]),
                                  crf, man.source["matrix"], bool(man.source["full_range"])) if out else None
        self.frames_dir = Path(frames_dir) if frames_dir else None
        if self.frames_dir:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.secs = secs

    def write(self, fr) -> None:
        t = time.time()
        if self.writer:
            with disk_full(self.out, self.outcome):
                self.writer.write(fr.rgb)
        if self.frames_dir:
            with disk_full(f"{self.frames_dir}/", "the frames written before are kept, nothing else was written"):
                write_image(self.frames_dir / f"frame_{fr.index:06d}.png", fr.rgb)
        self.secs["output"] += time.time() - t

    def finish(self, staged: Staged) -> None:
        """The video completed under its temporary name and handed to ``staged`` (renamed by its commit)."""
        if self.writer:
            with disk_full(self.out, self.outcome):
                self.writer.finish()
            staged.add(self.writer.tmp, self.writer.path)
            self.writer = None

    def close(self) -> None:
        """Remove the video unless :meth:`finish` handed it over (playback failed or was interrupted)."""
        if self.writer:
            self.writer.discard()
            self.writer = None
