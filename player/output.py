"""What the player writes besides the screen: the HR frames as an MP4 video (:class:`VideoWriter`) and PNGs,
together the output stage (:class:`Outputs`)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bbmr_stream.imageio import write_image


class VideoWriter:
    """HR frames -> MP4 (H.264), written to a temp name and renamed on close. CRF > 0: 4:2:0 by the exact
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
        s.codec_context.options = {"qp": "0"} if crf == 0 else {"crf": str(crf)}
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

    def close(self, ok: bool) -> None:
        if ok:
            for p in self.stream.encode(None):
                self.out.mux(p)
        self.out.close()
        if ok:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def prepare_outputs(report: str | None, out: str | None) -> None:
    """Make the directories of the report and the video before playback: a bad path fails in a second, not
    after the whole play."""
    from bbmr_stream.imageio import prepare_output_file

    for opt, path in (("--report", report), ("--out", out)):
        if path:
            prepare_output_file(opt, path)


class Outputs:
    """The output stage: the video file ``out`` (written to a temp name, renamed when playback ended well) and
    PNGs in ``frames_dir``; seconds spent are added to ``secs["output"]``."""

    def __init__(self, man, secs: dict, out: str | None = None, crf: float = 18.0,
                 frames_dir: str | None = None) -> None:
        self.writer = VideoWriter(out, man.source["width"], man.source["height"], Fraction(*man.source["fps"]),
                                  crf, man.source["matrix"], bool(man.source["full_range"])) if out else None
        self.frames_dir = Path(frames_dir) if frames_dir else None
        if self.frames_dir:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.secs = secs

    def write(self, fr) -> None:
        t = time.time()
        if self.writer:
            self.writer.write(fr.rgb)
        if self.frames_dir:
            write_image(self.frames_dir / f"frame_{fr.index:06d}.png", fr.rgb)
        self.secs["output"] += time.time() - t

    def close(self, ok: bool) -> None:
        if self.writer:
            self.writer.close(ok)
