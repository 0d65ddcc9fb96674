"""What a packaging run is asked to do: frozen, picklable configs (the CLI builds them from flags; the auto
ladder, the study, the demo and the distributed packager build them in code).

- :class:`PackageConfig`: one run of the encoder-node pipeline (source, output, encoder, BBMR, measurement).
- :class:`AutoLadder`: ``--ladder auto``: how the per-title ladder is searched.
- A ladder is an :class:`AutoLadder` or a tuple of :class:`bbmr_stream.family.RungSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from bbmr_stream.allocate import DEFAULT_SCALES
from bbmr_stream.errors import InputError
from bbmr_stream.family import RungSpec
from bbmr_stream.manifest import CONTAINERS
from models.adapt import AdaptConfig
from models.hcd import HCDConfig

ALLOCATORS = ("optimal", "paper", "uniform")
LAYOUTS = ("atlas", "planes")
CODECS = ("h264", "hevc")
REALLOC = ("auto", "gop", "every")
SEARCHES = ("hull", "grid")
RANGES = ("auto", "sdr-only", "hdr-only")  # an HDR source's ladders: both, the tone-mapped SDR one, the HDR one
TEN_BIT = ("hevc", "h264", "off")  # a 10-bit SDR source's 10-bit plain rungs: HEVC Main10, H.264 High10, none


@dataclass(frozen=True)
class PackageConfig:
    """One packaging run. Units: ``segment`` in seconds (also the closed-GOP length); frame counts in frames;
    ``block`` in source pixels; ``rate_lambda`` in units of the H.264 lambda at the middle BBMR rung's CRF."""

    input: str  # a video file (any container/codec FFmpeg reads)
    out: str  # the stream directory to create (written beside it, renamed in at the end)
    force: bool = False  # replace an existing ``out``
    # BBMR
    scorer: str = "light"  # bicubic | light | full (models.scorers)
    allocator: str = "optimal"
    scales: tuple[int, ...] = DEFAULT_SCALES
    overall: int = 4  # LR pixel budget = uniform x overall
    block: int = 128
    layout: str = "planes"
    realloc: str = "auto"  # re-score and re-allocate at segment starts (gop), every frame, or auto
    realloc_threshold: float = 0.25
    rate_lambda: float = 0.0
    # encoder and segments
    codec: str = "h264"
    preset: str = "medium"
    lossless: bool = False
    segment: float = 2.0
    container: str = "fmp4"  # HLS segments: "fmp4" (fragmented MP4 + an init segment) or "mpegts"
    max_frames: int | None = None  # package only the first N frames
    ranges: str = "auto"  # RANGES (packager/deep.py): an HDR source's SDR and/or HDR ladder
    ten_bit: str = "hevc"  # TEN_BIT (packager/deep.py): a 10-bit SDR source's 10-bit plain rungs
    sample: tuple[int, ...] | None = None  # only these segments, re-timed back to back (the auto ladder's sample)
    # measurement
    measure: bool = True  # decode the stream back and measure PSNR-Y (manifest)
    web_models: bool = True  # export measured plain-sr renditions' client models to ONNX (web/, the browser page)
    measure_frames: int = 10  # evenly spaced frames per rendition; 0 = all
    niqe_frames: int = 0
    upscaler: str = "auto"  # the upscaler SR renditions are measured with (auto: the family's preferred)
    # per-title models: None = generic weights only; else each plain-sr rendition's model fine-tuned on the title
    adapt: AdaptConfig | None = None
    # the LR refinement of the rungs whose spec says ``refine`` (``--refine hcd``, models/hcd.py)
    refine: HCDConfig = HCDConfig()
    # runtime
    device: str = "auto"
    backend: str | None = None  # SR inference runtime on a CPU (models.backend); None: $BBMR_BACKEND or auto

    def check(self) -> None:
        """Numeric options in range (one-line InputErrors, before any work)."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise InputError(msg)

        need(math.isfinite(self.segment) and 0.04 <= self.segment <= 60, f"--segment {self.segment}: 0.04..60 seconds")
        need(self.max_frames is None or self.max_frames >= 1, "--max-frames must be >= 1")
        need(self.measure_frames >= 0 and self.niqe_frames >= 0, "--measure-frames and --niqe-frames must be >= 0")
        need(self.overall in (2, 4, 8), f"--overall {self.overall}: 2, 4 or 8")
        need(math.isfinite(self.rate_lambda) and self.rate_lambda >= 0, "--rate-lambda must be >= 0")
        need(math.isfinite(self.realloc_threshold) and 0 <= self.realloc_threshold <= 1, "--realloc-threshold: 0..1")
        need(self.allocator in ALLOCATORS, f"--allocator {self.allocator}: one of {', '.join(ALLOCATORS)}")
        need(self.layout in LAYOUTS, f"--layout {self.layout}: one of {', '.join(LAYOUTS)}")
        need(self.container in CONTAINERS, f"--container {self.container}: one of {', '.join(CONTAINERS)}")
        need(self.codec in CODECS, f"--codec {self.codec}: one of {', '.join(CODECS)}")
        need(self.realloc in REALLOC, f"--realloc {self.realloc}: one of {', '.join(REALLOC)}")
        need(self.ranges in RANGES, f"ranges {self.ranges}: one of {', '.join(RANGES)}")
        need(self.ten_bit in TEN_BIT, f"--ten-bit {self.ten_bit}: one of {', '.join(TEN_BIT)}")
        scales = self.scales
        need(bool(scales) and not any(k & (k - 1) or not 1 <= k <= 16 for k in scales)
             and scales[0] <= self.overall <= scales[-1],
             f"--scales {','.join(map(str, scales))}: powers of two 1..16 around --overall {self.overall}")
        need(self.block >= 16 and self.block % (2 * max(scales)) == 0,
             f"--block {self.block} must be a multiple of 2 x the largest scale ({2 * max(scales)})")
        if self.adapt is not None:
            self.adapt.check()
        self.refine.check()


@dataclass(frozen=True)
class AutoLadder:
    """``--ladder auto``: measure candidates of every family on a sample of the title and ship the rungs on the
    rate-quality front (packager.ladder)."""

    fast: bool = False  # plain and plain-sr only, plain at 3 sizes (grid: 13 candidates instead of 45)
    search: str = "hull"  # hull: search the rate-quality hull (packager.hull); grid: measure the fixed grid
    min_kbps: float | None = None  # the ladder's bottom rate (hull; None: the smallest size at CRF 38)
    study: str | None = None  # reuse the candidates of a ``bbmr-bench rd`` study of this title (rd.json)
    max_rungs: int = 8
    refine: bool = False  # refined (--refine hcd) variants of the refinable candidates beside the others
    sample_segments: int = 3  # measure on this many segments spread over the title (0: all)
    measure_frames: int = 10  # PSNR-Y of each point on this many evenly spaced frames of the sample (as the stream)

    def check(self) -> None:
        if not 1 <= self.max_rungs <= 16:
            raise InputError("--auto-max-rungs: 1..16")
        if self.sample_segments < 0 or self.measure_frames < 1:
            raise InputError("--auto-sample-segments >= 0 and --auto-measure-frames >= 1")
        if self.search not in SEARCHES:
            raise InputError(f"--auto-search {self.search}: one of {', '.join(SEARCHES)}")
        if self.min_kbps is not None and not (math.isfinite(self.min_kbps) and 0 < self.min_kbps < 10**6):
            raise InputError("--auto-min-kbps: a rate in kbps above 0")


Ladder = Union[AutoLadder, tuple[RungSpec, ...]]
