"""The packager's units of work: plain data in, plain data out, the same result in any process or machine.

- :class:`SegmentTask` -> :func:`run_segment` -> :class:`SegmentResult`: some rungs of one segment (one closed
  GOP) of the title: decode its frames (seeking to it), [score and allocate,] pack [and refine] the pictures,
  encode them with fresh encoders, return the coded packets (before any muxer), the scale maps and the source's
  Y planes of the frames to be measured. Segments are independent: BBMR re-allocates and refinement restarts at
  every segment start, every GOP is closed and the encoders are made anew per segment, so the packets of a
  segment do not depend on where or after what it was coded.
- :class:`MeasureTask` -> :func:`run_measure` -> :class:`MeasureResult`: one rendition's shipped bytes decoded back
  and reconstructed, PSNR-Y (and NIQE) of the measured frames against their source planes.

Determinism: every task runs with :data:`TASK_THREADS` torch thread(s) and encoders with a fixed thread count
(:data:`packager.encode.ENCODER_THREADS`): a thread count changes x264's bitstream and the summation order of
some torch kernels, so fixed counts give the same bytes and numbers in one process, in ``--workers`` processes
and on a cluster of machines with the same CPU instruction sets. Models are loaded once per process
(:func:`_cached`): a worker keeps them for the tasks it runs.

The runners that execute these tasks are in :mod:`packager.runner`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bbmr_stream.allocate import allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.decode import Frame, SourceInfo, frames_from
from bbmr_stream.errors import InputError
from bbmr_stream.family import Family, Geometry, RungSpec, make_family
from bbmr_stream.resize import to_tensor
from packager.config import PackageConfig
from packager.encode import CodedPacket, LREncoder
from packager.reuse import MapReuse

TASK_THREADS = 1  # torch threads inside a task (see the module docstring)


@dataclass
class Rung:
    """One rendition being made: its spec, its family (how frames become pictures and back) and its encoder."""

    spec: RungSpec
    family: Family
    encoder: LREncoder | None = None
    ts: Path | None = None
    factors: list = field(default_factory=list)  # per frame, for the scale shares of block families
    map_bytes: int = 0  # scale-map SEI payload bytes written

    @property
    def name(self) -> str:
        return self.spec.name


def pick_upscaler(name: str, family: Family, device, make=None):
    """The upscaler a rendition is measured (and, by default, played) with: ``auto`` takes the family's
    preferred shipped model (BBMR: jointsr, else omnisr; uniform and plain-sr: omnisr), else bicubic. Models
    are loaded for the family's LR scales only (a plain-sr xK rung needs one model), by ``make(name, scales)``
    (default: :func:`models.factory.make_upscaler` on ``device``)."""
    from models.factory import make_upscaler

    make = make or (lambda n, scales: make_upscaler(n, scales, device))
    if not family.client_sr:
        return "bicubic", None
    scales = tuple(family.lr_scales())
    if name != "auto":
        return name, make(name, scales)
    for cand in family.upscalers:
        try:
            return cand, make(cand, scales)
        except InputError:
            continue
    return "bicubic", make("bicubic", scales)


def _cached(kind: str, name: str, scales: tuple[int, ...], device: str, backend: str | None):
    """A model loaded once per process (a worker's tasks share it): ``kind`` "scorer" or "upscaler"; loaded
    again when the name resolves to other weights (the registry file changed) or another implementation."""
    return _load(kind, name, scales, device, backend, _fingerprint(kind, name))


def _fingerprint(kind: str, name: str) -> tuple:
    """What a model name resolves to: the weights registry file (path, size, mtime) and the factory object."""
    from models import registry
    from models.scorers import get_scorer
    from models.upscalers import get_upscaler

    p = Path(registry.REGISTRY_FILE)
    try:
        st = p.stat()
        key: tuple = (str(p), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (str(p),)
    try:
        return key + (id(get_scorer(name) if kind == "scorer" else get_upscaler(name)),)
    except Exception:  # an unknown name: the loader says so
        return key


@functools.lru_cache(maxsize=16)
def _load(kind: str, name: str, scales: tuple[int, ...], device: str, backend: str | None, fingerprint: tuple):
    from models.factory import make_scorer, make_upscaler, use_backend

    use_backend(backend)
    if kind == "scorer":
        return make_scorer(name, scales, torch.device(device))
    return make_upscaler(name, scales, torch.device(device))


def cached_upscaler(name: str, family: Family, device, backend: str | None = None):
    """:func:`pick_upscaler` with the models of :func:`_cached`."""
    return pick_upscaler(name, family, device, lambda n, scales: _cached("upscaler", n, scales, str(device), backend))


@contextlib.contextmanager
def task_threads(n: int = TASK_THREADS):
    """torch's intra-op threads set to ``n`` for the duration (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Allocation:
    """The scorer + allocator state of the encode stage: the current per-block factors of BBMR rungs."""

    scorer: object | None
    reuse: MapReuse
    factors: np.ndarray | None = None
    seconds: dict = field(default_factory=lambda: {"score": 0.0, "allocate": 0.0})


def geometry(cfg: PackageConfig, info: SourceInfo) -> Geometry:
    return Geometry(BlockGrid(info.height, info.width, cfg.block), tuple(cfg.scales), cfg.overall, cfg.layout)


def make_encoder(spec: RungSpec, family: Family, info: SourceInfo, cfg: PackageConfig, gop: int,
                 path: Path | None) -> LREncoder:
    """The rung's encoder: writing ``path``, or (None) keeping its packets (a segment task's)."""
    return LREncoder(path, family.sizes(), info.time_base, info.fps, cfg.codec, spec.crf, cfg.preset, gop,
                     info.matrix, info.full_range, lossless=cfg.lossless, tags=sdr_tags(info))


def sdr_tags(info: SourceInfo) -> tuple[int, int]:
    """The (primaries, transfer) tags of the 8-bit ladder: BT.709 for an HDR source (its SDR picture, tone-mapped
    to BT.709), else the source's own (2: unspecified)."""
    return (1, 1) if info.transfer != "SDR" else info.colour_tags[:2]


@dataclass(frozen=True)
class SegmentTask:
    """Some rungs of one segment. ``segment``: its position in the run (the stream's segment; a sampled run's are
    numbered anew) and ``source_segment`` the source's segment it decodes; ``count``: frames to code (None: to the
    end of the source, the last segment of a source whose frame count is an estimate); ``retime``: number the
    frames from ``segment * gop`` at the average rate (the auto ladder's sample, segments back to back);
    ``keep_y``: run frame indices whose source Y planes to return (the measured frames); ``title``: (rung name ->
    Rendition with per-title models, the directory they are in) to refine through them (a local task). The
    config's ``device`` is the driver's resolved one (``cpu`` or ``cuda``): every task runs on the same kind."""

    config: PackageConfig
    info: SourceInfo
    specs: tuple[RungSpec, ...]
    segment: int
    source_segment: int
    gop: int
    count: int | None
    retime: bool = False
    keep_y: tuple[int, ...] = ()
    backend: str | None = None
    title: tuple | None = None
    seek: int | None = None  # the pts of the segment's first frame (the driver's packet scan), None: look it up


@dataclass
class RungChunk:
    """One rung's share of a :class:`SegmentResult`."""

    packets: list[CodedPacket]
    factors: list[np.ndarray]  # per frame: the rung's block factors (block families), else empty
    map_bytes: int
    codecs: str | None


@dataclass
class SegmentResult:
    segment: int
    frames: int
    rungs: dict[str, RungChunk]
    seconds: dict[str, float]  # per stage, this task's
    allocations: int  # scorer + allocator runs
    refine: dict  # picture key -> (losses, seconds, upscaler) of the refined rungs (packager.refine.Refiners.state)
    refined_through: dict[str, str]  # refined rung -> the upscaler it was refined through
    y: dict[int, np.ndarray]  # run frame index -> the source's Y plane (keep_y)


def task_frames(task: SegmentTask):
    """The task's source frames, numbered (and, ``retime``, timed) as in the run."""
    info, gop = task.info, task.gop
    first = task.source_segment * gop
    count = task.count
    if task.config.max_frames is not None:
        left = task.config.max_frames - first
        count = left if count is None else min(count, left)
    if count is not None and count <= 0:
        return
    step = max(1, int(round(1 / (float(info.fps) * float(info.time_base)))))
    for k, fr in enumerate(frames_from(info, first, count, strict=True, seek=task.seek)):
        j = task.segment * gop + k
        yield Frame(j, j * step, fr.rgb, fr.y, step) if task.retime else Frame(j, fr.pts, fr.rgb, fr.y, fr.duration)


def run_segment(task: SegmentTask) -> SegmentResult:
    """Code ``task`` (see the module docstring); the same result wherever it runs."""
    from bbmr_stream.device import pick_device
    from models.factory import use_backend
    from packager.refine import Refiners

    cfg, info = task.config, task.info
    with task_threads():
        use_backend(task.backend)
        device = pick_device(cfg.device)
        geo = geometry(cfg, info)
        rungs = []
        for spec in task.specs:
            fam = make_family(spec, geo)
            rungs.append(Rung(spec, fam, make_encoder(spec, fam, info, cfg, task.gop, None)))
        scorer = None
        if any(r.family.allocates for r in rungs) and cfg.allocator != "uniform":
            scorer = _cached("scorer", cfg.scorer, tuple(cfg.scales), str(device), task.backend)
        alloc = Allocation(scorer, MapReuse(cfg.realloc, geo.grid, cfg.realloc_threshold))
        refiners = Refiners(cfg.refine, lambda fam: cached_upscaler(cfg.upscaler, fam, device, task.backend), device,
                            task.title)
        refiners.segment = task.segment
        ys: dict[int, np.ndarray] = {}
        n, seconds = encode_stage(rungs, task_frames(task), geo, alloc, cfg, task.gop, device, refiners,
                                  set(task.keep_y), ys)
    chunks = {r.name: RungChunk(r.encoder.packets, r.factors, r.map_bytes, r.encoder.codecs) for r in rungs}
    return SegmentResult(task.segment, n, chunks, seconds, alloc.reuse.count, refiners.state(), refiners.upscalers,
                         ys)


def allocate_frame(alloc: Allocation, x: torch.Tensor, rgb: np.ndarray, segment_start: bool, geo: Geometry,
                   cfg: PackageConfig, rate_crf: float, device) -> None:
    """Re-score and re-allocate when the reuse policy says so (sets ``alloc.factors``)."""
    if not alloc.reuse.needs_realloc(rgb, segment_start):
        return
    g = geo.grid
    if alloc.scorer is None:
        alloc.factors = np.full(g.n_blocks, geo.overall, np.uint8)
    else:
        t = time.time()
        dist = alloc.scorer.score(x.to(device), g.block)
        alloc.seconds["score"] += time.time() - t
        t = time.time()
        rate_kw = {}
        if cfg.rate_lambda > 0:
            from bbmr_stream.blocks import pad_tensor
            from bbmr_stream.rate import h264_lambda, rate_proxy

            rate_kw = {"rate": rate_proxy(pad_tensor(x, g.block), geo.scales, g.block, rate_crf),
                       "lam": cfg.rate_lambda * h264_lambda(rate_crf)}
        alloc.factors = allocate(cfg.allocator, dist, geo.scales, geo.overall, g.block,
                                 weights=g.valid_fraction(), **rate_kw)
        alloc.seconds["allocate"] += time.time() - t
    alloc.reuse.allocated(rgb)


def map_payload(r: Rung, factors, index: int, segment_start: bool) -> bytes | None:
    """The frame's scale-map SEI payload, or None: a map is sent at every segment start and whenever it differs
    from the previous frame's; a frame without one has the previous frame's map (docs/formats.md). Per frame,
    the SEI costs 17-26 kbps at 30 fps (1080p-1440p grids), 10-20 % of a low uniform or BBMR rung. Appends the
    frame's block factors to ``r.factors`` (the previous map, and the scale shares of the manifest)."""
    if not r.family.carries_map:
        return None
    bf = r.family.block_factors(factors)
    changed = not r.factors or not np.array_equal(bf, r.factors[-1])
    r.factors.append(bf)
    return r.family.scale_map(factors, index) if segment_start or changed else None


def encode_stage(rungs: list[Rung], source, geo: Geometry, alloc: Allocation, cfg: PackageConfig, gop: int, device,
                 refiners, keep_y: set[int] = frozenset(), ys: dict | None = None) -> tuple[int, dict]:
    """decode -> (score -> allocate) -> pack [-> refine] -> encode + SEI, frame by frame over ``source`` (Frames);
    returns (frames, seconds per stage). ``refiners``: a :class:`packager.refine.Refiners` for the rungs whose
    spec says ``refine``; ``ys`` receives the Y planes of the frames in ``keep_y``."""
    timing = {"decode": 0.0, "pack": 0.0, "encode": 0.0}
    if any(r.spec.refine for r in rungs):
        timing["refine"] = 0.0
    bbmr_crfs = sorted(r.spec.crf for r in rungs if r.family.allocates) or [23.0]
    rate_crf = bbmr_crfs[len(bbmr_crfs) // 2]
    needs_alloc = any(r.family.allocates for r in rungs)
    n = 0
    t = time.time()
    for fr in source:
        timing["decode"] += time.time() - t
        if fr.index in keep_y and ys is not None:
            ys[fr.index] = fr.y
        x = to_tensor(fr.rgb)
        start = fr.index % gop == 0
        if needs_alloc:
            allocate_frame(alloc, x, fr.rgb, start, geo, cfg, rate_crf, device)
        made: dict = {}  # picture_key -> YUV planes: a family at several CRFs resizes and converts once
        for r in rungs:
            t = time.time()
            f = r.family.fit(alloc.factors) if r.family.allocates else None
            key = refiners.key(r.family, f) if r.spec.refine else r.family.picture_key(f)
            pics = made.get(key) if key is not None else None
            if pics is None:
                if r.spec.refine:
                    t1 = time.time()
                    pics = refiners.pictures(r.family, x, f, start)
                    dt = time.time() - t1
                    timing["refine"] += dt
                    t += dt  # refining is not packing
                else:
                    pics = r.family.pictures(x, f)
                pics = r.encoder.planes(pics)  # converted to YUV once per picture
                if key is not None:
                    made[key] = pics
            if r.spec.refine:
                refiners.record(r.family, f)
            payload = map_payload(r, f, fr.index, start)
            r.map_bytes += len(payload) if payload else 0
            timing["pack"] += time.time() - t
            t = time.time()
            r.encoder.encode(pics, fr.pts, payload, fr.duration)
            timing["encode"] += time.time() - t
        n += 1
        t = time.time()
    t = time.time()
    for r in rungs:
        r.encoder.close()
    timing["encode"] += time.time() - t
    timing.update(alloc.seconds)
    return n, timing


@dataclass(frozen=True)
class MeasureTask:
    """Frames of one rendition to measure (those of one segment): its manifest entry, where its files are
    (``root``, the stream directory being written, on a machine that sees it) or their bytes (``files``: name ->
    bytes, for a worker that does not), the run's config and source, the run frame indices to measure (their
    source Y planes come with the task's shared data: :func:`run_measure`) and those of them whose NIQE to
    compute."""

    rendition: object  # bbmr_stream.manifest.Rendition
    config: PackageConfig
    info: SourceInfo
    measured: tuple[int, ...]
    root: str | None = None
    files: dict | None = None
    backend: str | None = None
    niqe: tuple[int, ...] = ()


@dataclass
class MeasureResult:
    psnr: list[float]
    niqe: list[float]
    upscaler: str


def run_measure(task: MeasureTask, refs: dict[int, np.ndarray]) -> MeasureResult:
    """Decode the rendition's segments holding the task's frames, reconstruct them with its family and upscaler
    (generic weights; :func:`cached_upscaler`): PSNR-Y against ``refs`` (run frame index -> the source's Y plane)
    in frame order, and the NIQE of the frames in ``task.niqe``."""
    import tempfile

    with contextlib.ExitStack() as stack:
        root = task.root
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="bbmr-measure-"))
            for name, data in task.files.items():
                (Path(root) / name).write_bytes(data)
        return _measure(task, Path(root), refs)


def _measure(task: MeasureTask, root: Path, refs: dict[int, np.ndarray]) -> MeasureResult:
    from bbmr_stream.device import pick_device
    from bbmr_stream.family import spec_of

    cfg, info, rend = task.config, task.info, task.rendition
    with task_threads():
        device = pick_device(cfg.device)
        fam = make_family(spec_of(rend), geometry(cfg, info))
        up_name, upscaler = cached_upscaler(cfg.upscaler, fam, device, task.backend)
        vals, niqes, _ = measure_frames(rend, fam, root, task.measured, task.niqe, upscaler, refs, info)
    return MeasureResult(vals, niqes, up_name)


def measure_frames(rend, fam: Family, root: Path, measured, niqe_of, upscaler, refs: dict[int, np.ndarray],
                   info: SourceInfo, generic=None) -> tuple[list[float], list[float], list[float]]:
    """The ``measured`` run frames of rendition ``rend`` (its files in ``root``) decoded and reconstructed with
    ``upscaler``: (PSNR-Y against ``refs`` in frame order, the NIQE of those in ``niqe_of``, the PSNR-Y with
    ``generic`` instead when given, else empty). Only the segments holding measured frames are decoded."""
    from bbmr_stream.demux import init_path, segment_frames
    from bbmr_stream.metrics import niqe, psnr_plane

    want, niqe_of = set(measured), set(niqe_of)
    vals, niqes, gvals = [], [], []
    for seg in rend.segments:
        if not any(seg.first_frame <= i < seg.first_frame + seg.frames for i in want):
            continue
        for i, (frs, smap) in enumerate(segment_frames(root / seg.file, len(rend.pictures), init_path(root, rend))):
            j = seg.first_frame + i
            if j not in want:
                continue
            y, rgb = fam.luma(frs, smap, upscaler, info.matrix, info.full_range, with_rgb=j in niqe_of)
            vals.append(psnr_plane(refs[j], y))
            if generic is not None:
                gvals.append(psnr_plane(refs[j], fam.luma(frs, smap, generic, info.matrix, info.full_range)[0]))
            if rgb is not None:
                niqes.append(niqe(rgb))
    if len(vals) != len(want):
        raise RuntimeError(f"{rend.name}: decoded {len(vals)} of {len(want)} measured frames")
    return vals, niqes, gvals
