"""Map matching of the live viewer: each received frame's scale map, from the SEI in its H.264 access unit
(``bbmr_stream.demux.scalemap_of``, the player's own reader) or, for VP8, from the ordered data channel keyed
by RTP timestamp (received pts = RTP ts minus the first frame's, so the offset to the sender's pts is learnt
once from the sender's ``{"first_pts"}``; VP8 pts can be off by one tick: +-1 is accepted). A frame without a
map reuses the last one and is counted. All pts are on the 90 kHz RTP clock."""

from __future__ import annotations

import base64
import json

from bbmr_stream.demux import scalemap_of
from bbmr_stream.errors import ScaleMapError
from bbmr_stream.rtc import VIDEO_CLOCK
from bbmr_stream.scalemap import ScaleMap
from player.live_stats import ViewStats

MAX_MESSAGE = 1 << 16  # data-channel messages this long or longer are ignored (bytes)


class MapChannel:
    """Maps from the data channel: sender pts -> (map bytes, sender capture time in s). The sender also sends
    ``{"first_pts": P}``: the pts of the first frame it sent to this viewer, which arrives as pts 0."""

    def __init__(self, limit: int = 600) -> None:
        self.maps: dict[int, tuple[bytes, float]] = {}
        self.order: list[int] = []
        self.limit = limit
        self.offset: int | None = None  # sender pts - received pts

    def on_message(self, message) -> None:
        """The data channel's ``message`` handler: text messages shorter than 64 KiB are added."""
        if isinstance(message, str) and len(message) < MAX_MESSAGE:
            self.add(message)

    def add(self, message: str) -> None:
        """A map ``{"pts", "map", "t"}`` or the offset ``{"first_pts"}``; anything else is ignored."""
        try:
            d = json.loads(message)
            if "first_pts" in d:
                self.offset = int(d["first_pts"])
                return
            pts, payload, t = int(d["pts"]), base64.b64decode(d["map"]), float(d.get("t", 0.0))
        except (ValueError, KeyError, TypeError):
            return
        self.maps[pts] = (payload, t)
        self.order.append(pts)
        if len(self.order) > self.limit:
            self.maps.pop(self.order.pop(0), None)

    def time_of(self, sender_pts: int) -> float | None:
        """The sender's capture time (s) of the frame with ``sender_pts``, if its map came on the channel."""
        hit = self.maps.get(sender_pts)
        return hit[1] if hit else None

    def lookup(self, received_pts: int) -> tuple[bytes, float] | None:
        """The map of a frame by its received pts, +-1 tick (VP8 pts rounding)."""
        if self.offset is None:
            return None
        for d in (0, -1, 1):
            hit = self.maps.get(received_pts + self.offset + d)
            if hit is not None:
                return hit
        return None


class MapMatcher:
    """Each received frame -> (its scale map, or the last one; the sender's capture time or None), counting in
    ``stats`` where the map came from (SEI, channel, reused, invalid)."""

    def __init__(self, stats: ViewStats, channel: MapChannel, fps: float) -> None:
        self.stats, self.channel = stats, channel
        self.step = int(round(VIDEO_CLOCK / fps))  # pts ticks per frame
        self.last: ScaleMap | None = None

    def match(self, frame) -> tuple[ScaleMap | None, float | None]:
        """The map of a decoded ``av.VideoFrame`` and its capture time (s since the epoch, None if unknown)."""
        smap = scalemap_of(frame)
        if isinstance(smap, ScaleMap):
            self.stats.maps_sei += 1
            self.stats.codec = "h264 (map in SEI)"
            t = self.channel.time_of(smap.frame_index * self.step)
        else:
            if smap is not None:
                self.stats.maps_invalid += 1
            smap, t = self._from_channel(int(frame.pts or 0))
        if smap is None:
            self.stats.maps_reused += 1
            return self.last, None
        self.last = smap
        return smap, t

    def _from_channel(self, received_pts: int) -> tuple[ScaleMap | None, float | None]:
        hit = self.channel.lookup(received_pts)
        if hit is None:
            return None, None
        try:
            smap = ScaleMap.from_bytes(hit[0])
        except ScaleMapError:
            self.stats.maps_invalid += 1
            return None, None
        self.stats.maps_channel += 1
        self.stats.codec = self.stats.codec or "map on data channel"
        return smap, hit[1]
