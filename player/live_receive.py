"""The live viewer's receive loop (asyncio) and its one-slot mailboxes: each decoded frame is matched with its
scale map and put in both mailboxes (stand-in, SR); the newest frame wins, a frame replaced before the
stand-in worker took it is counted as dropped, so a slow worker never stalls the receive loop."""

from __future__ import annotations

import threading

from player.live_maps import MapMatcher
from player.live_stats import ViewStats

SLOTS = ("standin", "sr")


class Mailbox:
    """Two one-slot mailboxes fed with the same newest item ``(frame, scale map, capture time)``; worker
    threads :meth:`take` from their slot; :meth:`stop` wakes and ends them."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.slots: dict[str, tuple | None] = dict.fromkeys(SLOTS)
        self.stopped = threading.Event()

    def put(self, item: tuple) -> bool:
        """Put ``item`` in both slots; True when it replaced a stand-in the worker had not taken (a drop)."""
        with self.cv:
            dropped = self.slots["standin"] is not None
            for slot in SLOTS:
                self.slots[slot] = item
            self.cv.notify_all()
        return dropped

    def take(self, slot: str) -> tuple | None:
        """The newest item of ``slot`` (waits for one), None when stopping."""
        with self.cv:
            while self.slots[slot] is None and not self.stopped.is_set():
                self.cv.wait(0.2)
            if self.stopped.is_set():
                return None
            item, self.slots[slot] = self.slots[slot], None
            return item

    def pending(self) -> bool:
        """A frame is waiting for the stand-in worker."""
        with self.cv:
            return self.slots["standin"] is not None

    def stop(self) -> None:
        self.stopped.set()
        with self.cv:
            self.cv.notify_all()


async def receive(track, matcher: MapMatcher, mailbox: Mailbox, stats: ViewStats) -> None:
    """Until the track ends or the mailbox stops: each frame of ``track`` with its map into ``mailbox``."""
    from aiortc.mediastreams import MediaStreamError

    while not mailbox.stopped.is_set():
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        stats.received += 1
        smap, t_capture = matcher.match(frame)
        if mailbox.put((frame, smap, t_capture)):
            stats.dropped += 1
