"""What a playback run is asked to do: :class:`PlayConfig`, a frozen, picklable config (``bbmr-play`` builds it
from its flags; the demo, the benches and tests build it in code) for :func:`player.play`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bbmr_stream.errors import InputError

COMPARISONS = ("bicubic", "uniform")  # what ``compare`` may name
MIN_WINDOW = 16  # the smallest window picture side, pixels


@dataclass(frozen=True)
class PlayConfig:
    """One playback run. Units: ``start`` and ``linger`` in seconds, ``window_size`` in screen pixels
    (width, height), ``max_frames`` and ``niqe_every`` in frames, ``out_crf`` an x264 CRF; paths are strings.

    The whole stream plays from ``start`` (at most ``max_frames`` frames): shown in a window (``headless``
    False; needs ``$DISPLAY``) or counted on the progress object; written to ``out`` (MP4) and ``frames_dir``
    (PNGs); measured against ``reference`` (PSNR-Y) and by NIQE; the report written to ``report`` (JSON, CSV and
    PNG beside it) and returned by :func:`player.play`.
    """

    stream: str  # stream directory (with manifest.json) or its http(s) URL
    rendition: str | None = None  # rendition name; None: the highest-bitrate one (with ``trace``: pins the ABR)
    upscaler: str = "auto"  # auto (each rendition's measured upscaler) | jointsr | omnisr | fast | bicubic
    device: str = "auto"  # auto | cpu | cuda (bbmr_stream.device.pick_device)
    backend: str | None = None  # SR inference runtime on a CPU (models.backend); None: $BBMR_BACKEND or auto
    headless: bool = False  # no window
    start: float = 0.0  # start at this time, seconds
    window_size: tuple[int, int] = (1280, 720)  # largest window picture (w, h), pixels; frames fit inside
    linger: float = 0.0  # keep the window open this many seconds after the end
    out: str | None = None  # write the HR frames to this MP4 (H.264 4:2:0 at ``out_crf``)
    out_crf: float = 18.0  # x264 CRF of ``out``; 0 = lossless (qp 0, 4:4:4)
    frames_dir: str | None = None  # write every HR frame as PNG here
    reference: str | None = None  # source video: per-frame PSNR-Y against it
    niqe_every: int = 1  # NIQE on every Nth frame (0: off)
    compare: tuple[str, ...] = ()  # reconstructed beside the main one: "bicubic", "uniform" (COMPARISONS)
    report: str | None = None  # per-frame report JSON (CSV and PNG plot beside it; its directory is made)
    trace: str | None = None  # Pensieve network trace (time_s throughput_Mbps): switch renditions by the ABR rule
    max_frames: int | None = None  # play at most this many frames (None: all)
    strict: bool = False  # bbmr-play exits 3 when a frame was concealed (play() itself only reports them)

    def check(self) -> None:
        """Options in range (one-line InputErrors, before any work); what needs the manifest (the rendition,
        ``start`` past the end, the reference's size) is checked when the stream is open."""
        if not self.headless and min(self.window_size) < MIN_WINDOW:
            w, h = self.window_size
            raise InputError(f"--window-size {w}x{h}: at least {MIN_WINDOW}x{MIN_WINDOW}")
        for c in self.compare:
            if c not in COMPARISONS:
                raise InputError(f"--compare takes bicubic and/or uniform, not {c!r}")
