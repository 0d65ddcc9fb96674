"""Playback: a stream directory -> HR frames in presentation order at the source size.

For each segment of the chosen rendition: demux/decode (PyAV), scale map from each frame's SEI, and the
rendition's family (bbmr_stream.family) rebuilds the frame at the source size (unpack + JointSR / OmniSR for
block families, OmniSR xK for plain-sr, bicubic for plain). Robustness: a missing or undecodable segment
is concealed by repeating the last frame for the segment's frame count; a frame without a valid scale map
uses the last valid map of the segment, else the uniform map; both are counted.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.demux import InvalidMap, segment_pictures
from bbmr_stream.errors import ScaleMapError, SegmentError, is_disk_full
from bbmr_stream.family import family_of
from bbmr_stream.manifest import Manifest, Rendition
from bbmr_stream.scalemap import ScaleMap

CAUSES = ("missing", "truncated", "corrupt", "map_missing", "map_invalid")


@dataclass
class PlayStats:
    """What playback concealed, per cause (:data:`CAUSES`): frames, and the segments that lost frames."""

    concealed_frames: int = 0  # frames not shown as coded: repeated (segment causes) or with a guessed map
    missing_segments: list[str] = field(default_factory=list)  # segments that lost frames, any cause
    frames_without_map: int = 0  # map_missing + map_invalid
    by_cause: dict = field(default_factory=lambda: {c: 0 for c in CAUSES})  # concealed frames per cause
    segment_errors: list[dict] = field(default_factory=list)  # {"file", "cause", "detail"}
    seconds: dict = field(default_factory=lambda: {"decode_unpack": 0.0, "upscale": 0.0})

    def conceal(self, cause: str, frames: int = 1) -> None:
        self.by_cause[cause] += frames
        self.concealed_frames += frames
        if cause.startswith("map_"):
            self.frames_without_map += frames

    def segment_error(self, file: str, cause: str, detail: str) -> None:
        warnings.warn(f"segment {file}: {cause} ({detail}); concealing")
        if file not in self.missing_segments:
            self.missing_segments.append(file)
        self.segment_errors.append({"file": file, "cause": cause, "detail": detail[:300]})



def media_error(e: BaseException) -> SegmentError | None:
    """The concealable form of an exception raised while fetching or decoding a segment, None for a bug or a
    full local disk (a download that does not fit is not a damaged segment)."""
    import av

    if is_disk_full(e):
        return None
    if isinstance(e, SegmentError):
        return e
    if isinstance(e, FileNotFoundError) or getattr(e, "code", None) == 404:
        return SegmentError("missing", f"{e.__class__.__name__}: {e}")
    if isinstance(e, (av.error.FFmpegError, OSError, EOFError)):
        return SegmentError("corrupt", f"{e.__class__.__name__}: {e}")
    return None


@dataclass
class HRFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8 at the source size
    scalemap: ScaleMap | None  # the frame's own map (None: plain family, or concealed)
    concealed: bool  # True: not the coded frame as sent (repeated, or rebuilt with a guessed map)
    segment: int
    rendition: str
    family: str = "bbmr"
    cause: str | None = None  # why it was concealed (CAUSES)


def valid_map(smap, grid: BlockGrid, scales) -> tuple[ScaleMap | None, str | None]:
    """(map, None) for a usable map of this stream, else (None, cause)."""
    if smap is None:
        return None, "map_missing"
    if isinstance(smap, InvalidMap):
        return None, "map_invalid"
    try:
        smap.check_grid(grid, scales)
    except ScaleMapError:
        return None, "map_invalid"
    if tuple(smap.scale_set) != tuple(scales):  # the stream declares its scale set; a map may not change it
        return None, "map_invalid"
    return smap, None


def check_pictures(pics, rend: Rendition) -> None:
    got = [[p.shape[1], p.shape[0]] for p in pics]
    if got != [list(p) for p in rend.pictures]:
        raise SegmentError("corrupt", f"decoded pictures {got}, the manifest declares {rend.pictures}")


@dataclass
class Decoded:
    """A frame out of the decode stage: its pictures and map (``pics`` None: repeat the last frame shown)."""

    index: int
    pics: list | None
    smap: ScaleMap | None
    shown_map: ScaleMap | None  # the map reported with the frame (None: plain family, or guessed)
    segment: int
    rend: Rendition
    cause: str | None


def decoded(stream: Path | Callable[[str], Path], man: Manifest, plan: Rendition | list[Rendition],
            stats: PlayStats, max_frames: int | None = None, start_frame: int = 0) -> Iterator[Decoded]:
    """The demux/decode stage of :func:`hr_frames`: pictures and scale maps in presentation order, media errors
    concealed and counted in ``stats`` (repeats come out as ``pics=None``)."""
    resolve = stream if callable(stream) else (lambda f: Path(stream) / f)
    if isinstance(plan, Rendition):
        plan = [plan] * len(plan.segments)
    grid = BlockGrid(int(man.source["height"]), int(man.source["width"]), man.block)
    matrix, full = man.source["matrix"], bool(man.source["full_range"])
    n = 0
    for si, rend in enumerate(plan):
        seg = rend.segments[si]
        if seg.first_frame + seg.frames <= start_frame:
            n += seg.frames
            continue
        fam = family_of(rend, man)
        scales = tuple(fam.lr_scales())
        uniform = ScaleMap(np.full((grid.grid_h, grid.grid_w), man.overall, np.uint8), scales, 0,
                           man.block) if fam.carries_map else None
        produced = 0
        seg_map: ScaleMap | None = None
        t = time.time()
        try:
            path = resolve(seg.file)
            init = resolve(rend.init.file) if rend.init is not None else None
            for p, f in ((path, seg.file), (init, rend.init.file if rend.init else None)):
                if p is not None and not p.is_file():
                    raise FileNotFoundError(f)
            for pics, smap in segment_pictures(path, rend, matrix, full,
                                               lambda i, s=seg: s.first_frame + i >= start_frame, init):
                if produced >= seg.frames:
                    raise SegmentError("corrupt", f"more than the {seg.frames} frames declared")
                if max_frames is not None and n - start_frame >= max_frames:
                    return
                if n < start_frame:  # seeking: decoded for the GOP, not shown
                    n += 1
                    produced += 1
                    continue
                check_pictures(pics, rend)
                cause = None
                if fam.carries_map:
                    own, cause = valid_map(smap, grid, scales)
                    if cause:
                        stats.conceal(cause)
                        smap = seg_map or uniform  # the segment's last valid map, else uniform
                    else:
                        seg_map = smap = own
                stats.seconds["decode_unpack"] += time.time() - t
                yield Decoded(n, pics, smap, smap if fam.carries_map and cause is None else None, si, rend, cause)
                n += 1
                produced += 1
                t = time.time()
            if produced < seg.frames:
                raise SegmentError("truncated", f"{produced} of {seg.frames} frames decoded")
        except Exception as e:
            err = media_error(e)
            if err is None:
                raise  # not a media error: a bug surfaces
            stats.segment_error(seg.file, err.cause, str(err))
        for _ in range(max(seg.frames - produced, 0)):
            if max_frames is not None and n - start_frame >= max_frames:
                return
            if n < start_frame:
                n += 1
                continue
            stats.conceal(err.cause)
            yield Decoded(n, None, None, None, si, rend, err.cause)
            n += 1


def hr_frames(stream: Path | Callable[[str], Path], man: Manifest, plan: Rendition | list[Rendition], upscalers,
              stats: PlayStats, max_frames: int | None = None, start_frame: int = 0, decode_ahead: int = 8
              ) -> Iterator[HRFrame]:
    """HR frames of the stream; ``plan`` is one rendition, or one per segment (ABR decisions, any families);
    ``upscalers(rendition, segment)`` gives the upscaler of a rendition's segment (its title model). Playback
    starts at ``start_frame``: earlier segments are not read, earlier frames of its segment are decoded only.
    Media errors (a missing, truncated or undecodable segment, a missing or invalid scale map) are concealed and
    counted in ``stats``; any other exception is a bug and propagates.

    Decoding runs on its own thread up to ``decode_ahead`` frames ahead of the reconstruction (player.threads;
    0: in the caller's thread), so demux and colour conversion overlap with SR."""
    from player.threads import ahead

    items = decoded(stream, man, plan, stats, max_frames, start_frame)
    if decode_ahead:
        items = ahead(items, decode_ahead, "decode")
    grid = BlockGrid(int(man.source["height"]), int(man.source["width"]), man.block)
    last: np.ndarray | None = None
    for d in items:
        if d.pics is None:
            rgb = last if last is not None else np.zeros((grid.height, grid.width, 3), np.uint8)
            yield HRFrame(d.index, rgb, None, True, d.segment, d.rend.name, d.rend.kind, d.cause)
            continue
        t = time.time()
        rgb = family_of(d.rend, man).reconstruct(d.pics, d.smap, upscalers(d.rend, d.segment))
        stats.seconds["upscale"] += time.time() - t
        last = rgb
        yield HRFrame(d.index, rgb, d.shown_map, d.cause is not None, d.segment, d.rend.name, d.rend.kind, d.cause)
