"""Demux: a segment file -> per frame, the decoded picture of every coded stream and the scale map from the
first stream's SEI (frame side data SEI_UNREGISTERED with the project UUID; None for plain renditions or an
unreadable map). Unpacking the pictures is the layout's job (:mod:`bbmr_stream.atlas`, :mod:`bbmr_stream.planes`).

Map rule of segment files (docs/formats.md): a segment's first frame carries a map SEI, and so does every frame
whose map differs from the previous frame's; a frame without one has the previous frame's map (as read: an
unreadable map carries on as unreadable). :func:`segment_frames` applies it, so a None it yields means no map
is known (a first frame without SEI, and the frames after it until the next SEI).

Segment formats: an MPEG-TS segment decodes alone; an fMP4 media segment (moof + mdat) is decoded with its
rendition's init segment (ftyp + moov) in front of it, as a browser's MSE SourceBuffer does.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from bbmr_stream.colour import frame_to_rgb
from bbmr_stream.errors import ScaleMapError, SegmentError
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.sei import payload_from_side_data


@dataclass(frozen=True)
class InvalidMap:
    """A frame whose SEI carries our UUID but no valid scale map (the reason says why)."""

    reason: str


def scalemap_of(frame) -> ScaleMap | InvalidMap | None:
    """The frame's scale map, :class:`InvalidMap` if our SEI is there but unreadable, None if absent."""
    for sd in frame.side_data:
        if sd.type.name == "SEI_UNREGISTERED":
            p = payload_from_side_data(bytes(sd))
            if p is not None:
                try:
                    return ScaleMap.from_bytes(p)
                except ScaleMapError as e:
                    return InvalidMap(str(e))
    return None


def _rgb(fr, matrix: str, full_range: bool) -> np.ndarray:
    return frame_to_rgb(fr, matrix, full_range)[0]


def init_path(root: str | Path, rend) -> Path | None:
    """The local path of a rendition's fMP4 init segment in stream directory ``root`` (None: MPEG-TS)."""
    return Path(root) / rend.init.file if rend.init is not None else None


class Chained(io.RawIOBase):
    """Two files read as one (an fMP4 init segment, then a media segment), seekable, streamed from disk: the
    demuxer sees one fragmented MP4 file and nothing is copied into memory."""

    def __init__(self, first: Path, second: Path) -> None:
        self.files = [open(first, "rb"), open(second, "rb")]  # noqa: SIM115 (closed in close())
        self.split = os.fstat(self.files[0].fileno()).st_size
        self.size = self.split + os.fstat(self.files[1].fileno()).st_size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        if self.pos >= self.size:
            return 0
        k = 0 if self.pos < self.split else 1
        f = self.files[k]
        f.seek(self.pos - (0 if k == 0 else self.split))
        limit = (self.split if k == 0 else self.size) - self.pos
        view = memoryview(buf)[:min(len(buf), limit)]
        n = f.readinto(view) or 0
        self.pos += n
        return n

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def segment_frames(path: str | Path, n_streams: int,
                   init: str | Path | None = None) -> Iterator[tuple[list, ScaleMap | None]]:
    """(decoded PyAV frame of every coded stream, the frame's scale map by the map rule, or None) of each
    frame of one segment file, in presentation order. ``init``: the fMP4 init segment of the segment's
    rendition (None: an MPEG-TS segment)."""
    import av

    streams = []
    for i in range(n_streams):
        raw = None if init is None else Chained(Path(init), Path(path))
        try:  # no probing: a tiny valid segment fails format probing
            with av.open(str(path), format="mpegts") if raw is None else av.open(raw, format="mp4") as c:
                if len(c.streams.video) <= i:
                    raise SegmentError("corrupt", f"{Path(path).name}: {len(c.streams.video)} video streams, "
                                                  f"the rendition has {n_streams}")
                streams.append(list(c.decode(video=i)))
        finally:
            if raw is not None:
                raw.close()
    carried = None
    for frs in zip(*streams):
        own = scalemap_of(frs[0])
        carried = own if own is not None else carried
        yield list(frs), carried


def segment_pictures(path: str | Path, rend, matrix: str = "bt709", full_range: bool = False,
                     wanted=None, init: str | Path | None = None
                     ) -> Iterator[tuple[list[np.ndarray] | None, ScaleMap | None]]:
    """(RGB pictures of every coded stream, scale map or None) of each frame of one segment file, in order.
    Frames ``i`` with ``wanted(i)`` false are decoded (the codec needs them) but not converted: None.
    ``init``: as :func:`segment_frames`."""
    for i, (frs, smap) in enumerate(segment_frames(path, len(rend.pictures), init)):
        if wanted is not None and not wanted(i):
            yield None, smap
        else:
            yield [_rgb(f, matrix, full_range) for f in frs], smap
