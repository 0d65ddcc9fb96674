"""Pipeline stages on their own threads: ``ahead(items, n)`` runs an iterator in a worker thread, at most ``n``
items ahead of its consumer (a bounded queue), and hands over its exceptions.

The player chains them: decode/demux -> SR -> measure/output/display, so the single-threaded parts (demux,
colour conversion, PSNR, the video writer) overlap with SR, whose runtimes release the GIL. Memory stays
bounded: one stage holds at most ``n`` frames. An exception in a stage is re-raised in the consumer (a bug
surfaces; media errors are concealed inside the stages). Closing the consumer (an early stop, Ctrl-C) stops
the worker at its next item.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ahead(items: Iterable[T], n: int = 4, name: str = "stage") -> Iterator[T]:
    """``items`` produced by a worker thread, up to ``n`` ahead; same items, same order."""
    q: queue.Queue = queue.Queue(maxsize=max(1, n))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put(x):
                    break
            else:
                put(_END)
                return
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_Failed(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None and stop.is_set():
                close()

    t = threading.Thread(target=work, name=f"bbmr-{name}", daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failed):
                raise x.exc
            yield x
    finally:
        stop.set()
        t.join(timeout=30)
