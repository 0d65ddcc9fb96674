"""Display: a real window (Tk) showing the HR frames scaled to fit, with overlays toggled by keys.

Pacing policy: frames are produced (decode + unpack + SR) by a worker thread into a bounded queue
(decode-ahead, ``ahead`` frames); the window shows the next frame every 1/fps seconds when one is ready. When
the device cannot keep up (this CPU at 1080p is far below real time), playback runs in slow motion: each
frame is shown as soon as it is ready, and the status line shows the speed as a fraction of real time.

Keys: ``m`` scale-map tint (x2 red, x4 none, x8 blue), ``f`` fps/speed line, ``r`` rendition, ``p`` PSNR-Y (when
a reference is given), ``q``/Escape quit. Overlays are off at start except the status line (``f``).
The frame is scaled to fit the window with PIL's bicubic filter (:func:`fit_size`, :func:`fit`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

TINT = {2: (255, 60, 60), 8: (60, 120, 255)}


def fit_size(w: int, h: int, max_w: int, max_h: int) -> tuple[int, int]:
    s = min(max_w / w, max_h / h, 1.0)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))


def tint(rgb: np.ndarray, scalemap, block: int, alpha: float = 0.3) -> np.ndarray:
    out = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    for (i, j), k in np.ndenumerate(scalemap.scales):
        c = TINT.get(int(k))
        if c is None:
            continue
        ys, xs = slice(i * block, min((i + 1) * block, h)), slice(j * block, min((j + 1) * block, w))
        out[ys, xs] = out[ys, xs] * (1 - alpha) + np.array(c, np.float32) * alpha
    return out.clip(0, 255).astype(np.uint8)


@dataclass
class Shown:
    rgb: np.ndarray
    scalemap: object | None
    rendition: str
    psnr: float | None
    index: int


class Window:
    def __init__(self, title: str, fps: float, max_size: tuple[int, int] = (1280, 720), ahead: int = 8,
                 linger_s: float = 0.0) -> None:
        self.title, self.fps, self.max_size, self.ahead, self.linger_s = title, fps, max_size, ahead, linger_s
        self.overlays = {"m": False, "f": True, "r": False, "p": False}

    def run(self, frames: Iterator[Shown], block: int, on_frame: Callable[[Shown], None] | None = None) -> int:
        """Show every frame of ``frames`` (produced on a worker thread); returns the number shown."""
        import tkinter as tk

        from PIL import Image, ImageTk

        q: queue.Queue = queue.Queue(maxsize=self.ahead)
        done = object()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for f in frames:
                    q.put(f)
            except BaseException as e:  # surfaced in the main thread
                errors.append(e)
            finally:
                q.put(done)

        root = tk.Tk()
        root.title(self.title)
        root.geometry("+0+0")
        root.configure(background="black")
        label = tk.Label(root, borderwidth=0, highlightthickness=0, background="black")
        label.pack(anchor="nw")
        status = tk.Label(root, text="buffering...", anchor="w", fg="white", bg="black", font=("TkFixedFont", 9))
        status.pack(fill="x")
        state = {"n": 0, "t0": None, "photo": None, "finished": False, "last": None}

        def key(e) -> None:
            k = (e.keysym or "").lower()
            if k in ("q", "escape"):
                root.destroy()
            elif k in self.overlays:
                self.overlays[k] = not self.overlays[k]
                if state["last"] is not None:
                    draw(state["last"])

        def draw(f: Shown) -> None:
            img = f.rgb
            if self.overlays["m"] and f.scalemap is not None:
                img = tint(img, f.scalemap, block)
            size = fit_size(img.shape[1], img.shape[0], *self.max_size)
            state["photo"] = ImageTk.PhotoImage(Image.fromarray(fit(img, size)))
            label.configure(image=state["photo"])
            parts = []
            if self.overlays["f"]:
                el = time.time() - state["t0"]
                speed = (state["n"] / self.fps) / el if el > 0 else 0.0
                parts.append(f"frame {f.index}  {state['n'] / max(el, 1e-6):.2f} fps  x{speed:.2f} real time")
            if self.overlays["r"]:
                parts.append(f.rendition)
            if self.overlays["p"] and f.psnr is not None:
                parts.append(f"PSNR-Y {f.psnr:.2f} dB")
            status.configure(text="   ".join(parts))

        def tick() -> None:
            if state["finished"]:
                return
            try:
                f = q.get_nowait()
            except queue.Empty:
                root.after(5, tick)
                return
            if f is done:
                state["finished"] = True
                if self.linger_s > 0:
                    root.after(int(self.linger_s * 1000), root.destroy)
                else:
                    root.destroy()
                return
            if state["t0"] is None:
                state["t0"] = time.time()
            state["n"] += 1
            state["last"] = f
            draw(f)
            if on_frame is not None:
                on_frame(f)
            due = state["t0"] + state["n"] / self.fps  # real-time pacing, or as soon as possible when late
            root.after(max(1, int((due - time.time()) * 1000)), tick)

        def callback_error(exc, val, tb) -> None:  # Tk swallows callback exceptions: stop and re-raise them
            errors.append(val)
            root.destroy()

        root.report_callback_exception = callback_error

        def heartbeat() -> None:  # Python runs a pending signal handler (SIGTERM, Ctrl-C) only between bytecodes
            root.after(200, heartbeat)

        root.after(200, heartbeat)
        root.bind("<Key>", key)
        threading.Thread(target=worker, daemon=True).start()
        root.after(1, tick)
        root.mainloop()
        if errors:
            raise errors[0]
        return state["n"]
