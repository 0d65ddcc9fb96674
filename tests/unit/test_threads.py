"""player.threads.ahead: same items in order, bounded lead, exceptions handed over, early close stops the worker."""

import threading
import time

import pytest

from player.threads import ahead


def test_same_items_in_order():
    assert list(ahead(iter(range(100)), 3)) == list(range(100))


def test_lead_is_bounded():
    made = []

    def gen():
        for i in range(50):
            made.append(i)
            yield i

    it = ahead(gen(), 4)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(made) <= 1 + 4 + 1  # the one consumed, the queue, the one waiting to be put
    it.close()


def test_exception_reaches_the_consumer():
    def gen():
        yield 1
        raise ZeroDivisionError("boom")

    it = ahead(gen(), 2)
    assert next(it) == 1
    with pytest.raises(ZeroDivisionError, match="boom"):
        next(it)


def test_close_stops_the_worker():
    closed = threading.Event()

    def gen():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = ahead(gen(), 2, "t")
    assert next(it) == 0
    it.close()
    assert closed.wait(5)
    assert not any(t.name == "bbmr-t" and t.is_alive() for t in threading.enumerate())
