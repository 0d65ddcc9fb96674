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

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from bbmr_stream.colour import frame_to_rgb
from bbmr_stream.errors import ScaleMapError
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


MAX_FMP4_BYTES = 1 << 30  # an fMP4 init + media segment read into memory (manifest.MAX_SEGMENT_BYTES)


def _fmp4_bytes(path: Path, init: Path) -> bytes:
    """The init segment followed by the media segment (OSError when larger than :data:`MAX_FMP4_BYTES`)."""
    size = init.stat().st_size + path.stat().st_size
    if size > MAX_FMP4_BYTES:
        raise OSError(f"{path.name}: {size} bytes with its init segment, more than {MAX_FMP4_BYTES}")
    return init.read_bytes() + path.read_bytes()


def segment_frames(path: str | Path, n_streams: int,
                   init: str | Path | None = None) -> Iterator[tuple[list, ScaleMap | None]]:
    """(decoded PyAV frame of every coded stream, the frame's scale map by the map rule, or None) of each
    frame of one segment file, in presentation order. ``init``: the fMP4 init segment of the segment's
    rendition (None: an MPEG-TS segment)."""
    import io

    import av

    data = None if init is None else _fmp4_bytes(Path(path), Path(init))
    streams = []
    for i in range(n_streams):
        if data is None:  # no probing: a tiny valid segment fails format probing
            c = av.open(str(path), format="mpegts")
        else:
            c = av.open(io.BytesIO(data), format="mp4")
        with c:
            streams.append(list(c.decode(video=i)))
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
