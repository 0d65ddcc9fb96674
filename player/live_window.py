"""``bbmr-live view --window``: the live viewer's pictures in bbmr-play's window (``player.display``: m scale
map, f fps, q quit). The receiving loop runs on a background thread, the window (Tk) on the main thread; each
picture as finally shown (the SR result, or the bicubic stand-in while SR is busy) goes to the window."""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable

import numpy as np

from bbmr_stream.errors import InputError
from player.live_view import ViewConfig, view

BLOCK = 128  # block size (pixels) of the window's scale-map overlay
JOIN_S = 60.0  # how long the closed window waits for the viewer to shut down (s)


def view_in_window(cfg: ViewConfig, on_stats: Callable[[dict], None] | None = None,
                   on_page: Callable[[str], None] | None = None) -> dict:
    """:func:`player.live_view.view` with a window; returns the final summary (closing the window stops the
    viewer, which then shuts down within ``JOIN_S``). InputError without a display."""
    from player.display import Shown, Window

    if not os.environ.get("DISPLAY"):
        raise InputError("no display (DISPLAY is not set): use --serve")
    shown: queue.Queue = queue.Queue(maxsize=2)
    done = threading.Event()
    result: dict = {}

    def on_show(rgb: np.ndarray, smap, what: str, index: int) -> None:
        try:
            shown.put_nowait(Shown(rgb, smap, what, None, index))
        except queue.Full:
            pass

    def run_loop() -> None:
        try:
            result["summary"] = view(cfg, on_stats, on_show, done, on_page=on_page)
        except BaseException as e:  # surfaced on the main thread
            result["error"] = e
        finally:
            done.set()

    def frames():
        while not done.is_set() or not shown.empty():
            try:
                yield shown.get(timeout=0.2)
            except queue.Empty:
                continue

    loop = threading.Thread(target=run_loop, daemon=True)
    loop.start()
    Window(f"bbmr-live {cfg.url}", cfg.fps).run(frames(), BLOCK)
    done.set()
    loop.join(timeout=JOIN_S)  # the viewer closes its connection and finishes the recording
    if "error" in result:
        raise result["error"]
    return result.get("summary", {})
