"""``package_rungs(config, specs) -> Manifest``: the encoder-node pipeline for given rungs (``packager.package``
puts the per-title ladder search in front of it).

decode -> blocks -> score -> allocate -> pack (family pictures) -> encode + SEI -> segment (HLS, MPEG-TS) ->
[adapt: per-title SR models, packager.adapt] -> measure (decode the segments back, reconstruct, PSNR-Y against
the source) -> playlists + manifest.

Everything is written into a temporary directory beside ``config.out`` (on its filesystem: a full disk is met
there) and renamed at the end: an interrupted or failed run never leaves a stream that looks whole, and an
existing stream at ``config.out`` stays as it was until the new one is complete. A full disk (ENOSPC, EDQUOT,
EFBIG) anywhere in the run raises :class:`~bbmr_stream.errors.DiskFullError` naming ``config.out``
(:func:`disk_full_guard`), after the temporary files are removed. Bad input raises
:class:`~bbmr_stream.errors.InputError` before any output exists. Nothing is printed: notes and progress go
through the :class:`~bbmr_stream.progress.Progress` passed in, warnings through :mod:`warnings`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.decode import frames, media_seconds, probe, seek_pts
from bbmr_stream.device import pick_device
from bbmr_stream.errors import InputError, disk_full
from bbmr_stream.family import FAMILIES, Family, Geometry, RungSpec, make_family, spec_of
from bbmr_stream.imageio import normal_mode
from bbmr_stream.manifest import InitRef, Manifest, Rendition
from bbmr_stream.progress import Progress
from bbmr_stream.resize import RESIZE_CONVENTION
from packager.config import PackageConfig
from packager.deep import PSNR_10BIT, deep_renditions, measure_deep, source_notes
from packager.deep import plan as plan_deep
from packager.segment import gop_segments, master_playlist, segment_hls
from packager.tasks import (
    MeasureTask,
    Rung,
    SegmentTask,
    make_encoder,
    measure_frames,
    pick_upscaler,
    run_measure,
    run_segment,
)


def source_frames(info, cfg: PackageConfig, gop: int):
    """The frames to package: all (up to ``max_frames``), or, when ``cfg.sample`` lists segment indices (the
    auto ladder's sample), the frames of those segments re-timed back to back from 0 (indices and pts contiguous),
    as the segment tasks number them (:func:`packager.tasks.task_frames`)."""
    from bbmr_stream.decode import Frame

    segs = cfg.sample
    if not segs:
        yield from frames(info, cfg.max_frames, strict=True)
        return
    want, last = set(segs), max(segs)
    step = max(1, int(round(1 / (float(info.fps) * float(info.time_base)))))
    j = 0
    for fr in frames(info, cfg.max_frames, strict=True):
        if fr.index // gop > last:
            break
        if fr.index // gop in want:
            yield Frame(j, j * step, fr.rgb, fr.y, step)
            j += 1


MAX_ENCODERS = 10  # x264 encoders alive at once: each holds its lookahead (~0.2 GB at 1080p, ~0.9 GB at 4K)


def encode_groups(specs: list[RungSpec], size: int = MAX_ENCODERS) -> list[list[RungSpec]]:
    """Rungs encoded together: the allocating (BBMR) rungs share one pass (one scorer run), the others go in
    groups of at most ``size``; each group re-decodes the source."""
    alloc = [s for s in specs if FAMILIES[s.family].allocates]
    rest = [s for s in specs if not FAMILIES[s.family].allocates]
    groups = [alloc] if alloc else []
    # rungs that share a refined picture (one family and factor, --refine) go in one group when they fit: the
    # refinement, the most expensive stage, then runs once per frame for all of them
    units: dict = {}
    for s in rest:
        units.setdefault((s.family, s.factor, s.size, "refine") if s.refine else id(s), []).append(s)
    cur: list[RungSpec] = []
    for unit in units.values():
        for i in range(0, len(unit), size):
            part = unit[i:i + size]
            if cur and len(cur) + len(part) > size:
                groups.append(cur)
                cur = []
            cur += part
    if cur:
        groups.append(cur)
    return groups


def segment_plan(info, cfg: PackageConfig, gop: int) -> list[tuple[int, int, int | None]]:
    """The run's segments as (segment, source segment, frames: None = to the end of the source): every segment of
    the title up to ``max_frames``, or the auto ladder's sample (``cfg.sample``) numbered anew. A source whose frame
    count is an estimate has its last segment read to the end."""
    total = min(info.frames or 0, cfg.max_frames or 10**12)
    if cfg.sample:
        return [(j, s, min(gop, total - s * gop)) for j, s in enumerate(s for s in cfg.sample if s * gop < total)]
    n = max(1, -(-total // gop))
    exact = info.frames_exact or (cfg.max_frames is not None and info.frames > cfg.max_frames)
    return [(i, i, min(gop, total - i * gop) if i < n - 1 or exact else None) for i in range(n)]


def rung_cost(s: RungSpec, source_px: int) -> float:
    """A rung's rough encode cost per frame, in coded pixels (x264's work): a plain rung's size, a plain-sr
    rung's 1/K^2 of the source, a block family's ~1/16 plus its packing."""
    if s.size:
        return s.size[0] * s.size[1]
    if s.family == "plain":
        return source_px
    return source_px / (s.factor or 4) ** 2 * (1 if s.factor else 2)


def group_cost(g: list[RungSpec], source_px: int) -> float:
    """A task's rough cost per frame: its rungs, the decode of its segment (measured here: ~14 % of an 8-rung 1080p
    ladder's time, i.e. ~0.9 source pixels), the scorer when it allocates."""
    alloc = any(FAMILIES[s.family].allocates for s in g)
    return sum(rung_cost(s, source_px) for s in g) + 0.9 * source_px + (2.0 * source_px if alloc else 0)


def makespan(costs: list[float], workers: int) -> float:
    """The finishing time of tasks of these costs on ``workers`` workers, the costliest first (as submitted:
    :func:`run_longest_first`), each to the first free worker."""
    load = [0.0] * workers
    for c in sorted(costs, reverse=True):
        load[load.index(min(load))] += c
    return max(load)


def task_groups(groups: list[list[RungSpec]], n_segments: int, workers: int,
                source_px: int = 1920 * 1080) -> list[list[RungSpec]]:
    """:func:`encode_groups` split further for ``workers`` workers while that shortens the stage's estimated
    finishing time (:func:`makespan` of :func:`group_cost` per task: every task decodes its segment, so a split
    has a price): the costliest group is split in two of about equal cost, between its units (rungs sharing
    pictures: one family and size; the BBMR rungs, which share one scorer pass) when it has several, else between
    its rungs (each half then makes the shared pictures, or runs the scorer, itself). The rungs' bytes do not
    depend on the grouping."""
    groups = [list(g) for g in groups]

    def cost(g):
        return group_cost(g, source_px)

    def span(gs):
        return makespan([cost(g) for g in gs for _ in range(n_segments)], workers)

    while workers > 1:
        big = max(groups, key=cost)
        if len(big) < 2:
            return groups
        units: dict = {}
        for s in big:
            units.setdefault("bbmr" if FAMILIES[s.family].allocates else (s.family, s.factor, s.size), []).append(s)
        parts = list(units.values()) if len(units) > 1 else [[s] for s in big]
        halves: list[list[RungSpec]] = [[], []]
        for part in sorted(parts, key=lambda p: sum(rung_cost(s, source_px) for s in p), reverse=True):
            min(halves, key=lambda h: sum(rung_cost(s, source_px) for s in h)).extend(part)
        after = [g for g in groups if g is not big] + halves
        if span(after) >= span(groups):
            return groups
        groups = after
    return groups


def check_counts(plan: list, meta: dict, specs: list[RungSpec]) -> int:
    """The frames coded, checked: every rung of a segment has as many frames, every segment as many as planned
    until the source ends (then none after it). A mismatch is a bug (RuntimeError)."""
    counts = [meta[(specs[0].name, seg)][0] for seg, _, _ in plan]
    for (name, seg), m in meta.items():
        if m[0] != counts[seg]:
            raise RuntimeError(f"segment {seg}: {m[0]} frames for {name}, {counts[seg]} for {specs[0].name}")
    ended = False
    for (seg, _, count), got in zip(plan, counts):
        if (ended and got) or (count is not None and got > count):
            raise RuntimeError(f"segment {seg}: {got} frames, {count} planned (frames after the source ended?)")
        ended = ended or (count is not None and got < count)
    return sum(counts)


@dataclass
class Encoded:
    """What the segment tasks of a run made (:func:`encode_in_groups`)."""

    frames: int
    seconds: dict
    renditions: list
    scored: bool  # a scorer allocated BBMR blocks
    allocations: int  # scorer + allocator runs
    refs: dict  # run frame index -> the source's Y plane (the frames asked for)


def encode_in_groups(specs, geo: Geometry, info, cfg: PackageConfig, gop: int, work: Path, tmp: Path, device,
                     progress: Progress, refine_log: dict | None = None, title: dict | None = None,
                     keep_y: tuple[int, ...] = ()) -> Encoded:
    """The encode and segment stages: :class:`packager.tasks.SegmentTask` per segment and group of rungs
    (:func:`encode_groups`, :func:`task_groups`) on the current runner (:mod:`packager.runner`), their packets
    written into each rung's MPEG-TS in segment order, then segmented; renditions in ladder order.
    ``refine_log`` receives the refined rungs' upscalers and losses; ``title`` ({rung name: Rendition with
    per-title models in ``tmp``}): refine those rungs through their models (in this process: the models are in
    ``tmp``); ``keep_y``: run frame indices whose source Y planes to return (the measured frames)."""
    import pickle

    from models.factory import use_backend
    from packager.refine import refine_summary
    from packager.runner import Serial, current

    runner = Serial() if title else current()
    plan = segment_plan(info, cfg, gop)
    groups = task_groups(encode_groups(specs), len(plan), runner.workers, info.width * info.height)
    src = dataclasses.replace(info, path=str(Path(info.path).resolve()))  # workers may not share our cwd
    backend = use_backend(cfg.backend)
    tcfg = dataclasses.replace(cfg, device=device.type)  # every task on the driver's kind of device
    seeks = {s: seek_pts(info, s * gop) if s else None for _, s, _ in plan}  # one packet scan, here
    want = set(keep_y)
    tasks = [SegmentTask(tcfg, src, tuple(g), seg, source_seg, gop, count, retime=bool(cfg.sample),
                         keep_y=tuple(i for i in keep_y if i // gop == seg) if gi == 0 else (), backend=backend,
                         title=(title, tmp) if title else None, seek=seeks[source_seg])
             for gi, g in enumerate(groups) for seg, source_seg, count in plan]
    meta: dict = {}  # (rung, segment) -> (frames, factors, map bytes, codecs)
    seconds: dict = {}
    states, through, refs, allocations = {}, {}, {}, [0]
    with progress.task(f"encoding {len(specs)} renditions ({len(plan)} segments, {len(tasks)} tasks)",
                       len(tasks)) as bar:
        def done(i: int, res) -> None:
            for name, ch in res.rungs.items():
                with open(work / f"{name}.{res.segment:06d}.pkt", "wb") as f:
                    pickle.dump(ch.packets, f, protocol=pickle.HIGHEST_PROTOCOL)
                meta[(name, res.segment)] = (res.frames, ch.factors, ch.map_bytes, ch.codecs)
            for k, v in res.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
            allocations[0] += res.allocations
            states[i] = res.refine
            through.update(res.refined_through)
            refs.update({k: v for k, v in res.y.items() if k in want})
            bar.advance()

        run_longest_first(runner, run_segment, tasks, [encode_cost(t) for t in tasks], done)
    n_frames = check_counts(plan, meta, specs)
    if n_frames == 0:
        raise InputError(f"{cfg.input}: no frames decoded")
    if refine_log is not None and any(states.values()):
        refine_log.setdefault("upscalers", {}).update(through)
        refine_log.setdefault("loss", {}).update(refine_summary([states[i] for i in sorted(states)]))
    t0 = time.time()
    rungs = []
    for spec in specs:
        fam = make_family(spec, geo)
        r = Rung(spec, fam, make_encoder(spec, fam, info, cfg, gop, work / f"{spec.name}.ts"), work / f"{spec.name}.ts")
        for seg, _, _ in plan:
            part = work / f"{spec.name}.{seg:06d}.pkt"
            with open(part, "rb") as f:
                r.encoder.write(pickle.load(f))
            part.unlink()
            _, factors, map_bytes, codecs = meta[(spec.name, seg)]
            r.factors += factors
            r.map_bytes += map_bytes
        r.encoder.close()
        rungs.append(r)
    seconds["mux"] = time.time() - t0
    t0 = time.time()
    renditions = segment_stage(rungs, tmp, info, n_frames, cfg, gop)
    seconds["segment"] = time.time() - t0
    scored = any(FAMILIES[s.family].allocates for s in specs) and cfg.allocator != "uniform"
    return Encoded(n_frames, seconds, renditions, scored, allocations[0], refs)


def segment_stage(rungs: list[Rung], tmp: Path, info, n_frames: int, cfg: PackageConfig,
                  gop: int) -> list[Rendition]:
    """Each rung's MPEG-TS -> HLS segments (``cfg.container``, one per GOP of ``gop`` frames) + media playlist; a
    Rendition per rung (bytes as shipped: the segments and the fMP4 init segment; rates over the frames' real
    duration, :func:`~bbmr_stream.decode.media_seconds`)."""
    out = []
    for r in rungs:
        cut = segment_hls(r.ts, tmp, r.name, cfg.segment, cfg.container)
        seg_objs = gop_segments(cut, n_frames, gop, r.name)
        dur = stream_seconds(cfg, info, n_frames)
        init = InitRef(cut.init.file, cut.init.bytes) if cut.init else None
        kbps = (sum(s.bytes for s in seg_objs) * 8 / dur + (init.bytes * 8 / _init_span_s(cfg, info, dur)
                                                             if init else 0)) / 1000
        share = {}
        if r.factors:
            allf = np.stack(r.factors)
            share = {str(k): float(np.mean(allf == k)) for k in r.family.lr_scales()}
        w, h = r.encoder.stream.width, r.encoder.stream.height
        es_kbps = round(es_bytes(r.ts) * 8 / dur / 1000, 2)
        map_kbps = r.map_bytes * 8 / dur / 1000
        parts = {"video": round(kbps - map_kbps, 3), "map": round(map_kbps, 3)}
        out.append(Rendition(r.name, r.spec.family, cfg.codec, r.spec.crf, r.family.layout, r.family.lr_scales(),
                             r.family.overall(), w, h, round(kbps, 2), cut.playlist, seg_objs, share=share,
                             pictures=[[s.width, s.height] for s in r.encoder.streams], codecs=r.encoder.codecs,
                             es_kbps=es_kbps, parts_kbps=parts, init=init,
                             refine=cfg.refine.label if r.spec.refine else None))
    return out


def stream_seconds(cfg: PackageConfig, info, n_frames: int) -> float:
    """Seconds the first ``n_frames`` packaged frames last (:func:`~bbmr_stream.decode.media_seconds`; the auto
    ladder's sample, ``cfg.sample``, is re-timed at the average rate: n / fps)."""
    return n_frames / float(info.fps) if cfg.sample else media_seconds(info, n_frames)


def _init_span_s(cfg: PackageConfig, info, dur: float) -> float:
    """The seconds an init segment's bytes are spread over: the stream's, or for a sample of the title (the auto
    ladder's candidates, ``cfg.sample``) the whole title's, as in the stream that will ship."""
    if cfg.sample is None or not info.frames:
        return dur
    frames = min(info.frames, cfg.max_frames) if cfg.max_frames else info.frames
    return max(dur, media_seconds(info, frames))


def es_bytes(ts: Path) -> int:
    """Bytes of the coded video of an MPEG-TS file: the sum of its video packets (H.264/HEVC elementary streams
    as Annex B access units, SEI included, no PES/TS overhead), every video stream of the file."""
    import av

    with av.open(str(ts), format="mpegts") as c:
        if not c.streams.video:
            return 0
        return sum(p.size for p in c.demux(*c.streams.video) if p.size)


def measured_frames(n_frames: int, count: int) -> list[int]:
    """Indices of the frames whose quality is measured: all (count 0), else ``count`` evenly spaced."""
    if count <= 0 or count >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, count)})


def build_manifest(cfg: PackageConfig, info, geo: Geometry, n_frames: int, renditions, allocs: tuple[bool, int],
                   timing: dict, audio, measured: list[int] | None) -> Manifest:
    """The manifest; ``allocs``: (a scorer allocated BBMR blocks, scorer + allocator runs)."""
    conv = {"psnr_y": PSNR_CONVENTION, "bitrate": BITRATE_CONVENTION,
            "timing_s": {k: round(v, 3) for k, v in timing.items()}}
    if measured is not None:
        conv["measured_frames"] = measured
    source = {"file": Path(cfg.input).name, "width": info.width, "height": info.height,
              "fps": [info.fps.numerator, info.fps.denominator], "frames": n_frames,
              "duration_s": stream_seconds(cfg, info, n_frames), "matrix": info.matrix, "full_range": info.full_range}
    if info.vfr:
        source["max_fps"] = round(info.max_fps, 6)
    source |= {"transfer": info.transfer, "bit_depth": info.bit_depth}
    if info.sar != 1:
        source["sar"] = [info.sar.numerator, info.sar.denominator]
    if any(r.bit_depth > 8 for r in renditions):
        conv["psnr_y_10bit"] = PSNR_10BIT
    if info.transfer != "SDR":
        from bbmr_stream.tonemap import ToneMap

        conv["tonemap"] = (f"{info.transfer} -> SDR BT.709: {ToneMap(info.transfer.lower()).name}; the SDR renditions' "
                           f"pictures, and what a player shows of an HDR rendition on an SDR display "
                           f"(bbmr_stream.colour.sdr_of_hdr)")
    return Manifest(
        source=source,
        block=geo.grid.block, overall=geo.overall, scales=list(geo.scales), resize=RESIZE_CONVENTION,
        container=cfg.container, segment_s=cfg.segment, realloc=f"{cfg.realloc} ({allocs[1]} allocations)",
        scorer=cfg.scorer if allocs[0] else "none", allocator=cfg.allocator, renditions=renditions,
        audio=audio, conventions=conv)


BITRATE_CONVENTION = ("bytes the client downloads for the rendition: its HLS segments as shipped (the manifest's "
                      "container; fmp4: with its init segment) plus its model files (models), * 8 / duration; "
                      "parts_kbps splits it into video (segments and init less the scale-map SEI payloads), map and "
                      "model")
ADAPT_CONVENTION = ("per-title models (packager.adapt): each plain-sr rendition's per-scale SR model fine-tuned "
                    "from its generic weights on the rendition's own decoded pictures (LR) and the source frames "
                    "(HR), shipped as models/<rendition>.safetensors (delta-int8, delta-int4 or fp16) and counted "
                    "in its rate")
REFINE_CONVENTION = ("refined renditions (refine): each LR picture is the collaborative LR of models/hcd.py through "
                     "the upscaler the rendition is measured with (upscalers), per frame, warm-started from the "
                     "previous frame within a segment; loss: MSE of BT.601 Y [0, 255] before / after, per shared "
                     "picture, before coding")
PSNR_CONVENTION = ("video PSNR-Y: the source's decoded 8-bit Y plane vs the reconstruction's luma in the source's "
                   "matrix and range (plain: the decoded Y plane, bicubic-resized when smaller, as FFmpeg's psnr "
                   "filter; SR families: the exact luma of the unrounded RGB output), peak 255, crop 0, mean of "
                   "per-frame PSNR over the measured frames (bbmr_stream.family.Family.luma)")


def package_rungs(config: PackageConfig, specs: list[RungSpec], progress: Progress | None = None,
                  notes: bool = True) -> Manifest:
    """Package ``config.input`` into the stream directory ``config.out`` with the rungs ``specs`` and return the
    manifest written there (:func:`packager.package` is this with the ladder search in front). Raises
    InputError on bad input, before any output exists. ``notes``: say what the source is and what happens to it
    (False: the ladder search's candidate runs, the user heard it once)."""
    progress = progress or Progress()
    with disk_full_guard(config):
        out, info = prepare(config, progress, notes)
        return write_rungs(config, specs, info, out, progress)


def disk_full_guard(config: PackageConfig):
    """Around a packaging run: a full disk anywhere in it (the encoder's and FFmpeg's files, models, playlists,
    the manifest, the ladder search's candidates) -> :class:`~bbmr_stream.errors.DiskFullError` ``no space left
    on device writing OUT/ (ENOSPC); nothing was written[, the previous stream is unchanged]``."""
    kept = ", the previous stream is unchanged" if Path(config.out).is_dir() else ""
    return disk_full(f"{str(config.out).rstrip('/')}/", f"nothing was written{kept}")


def prepare(config: PackageConfig, progress: Progress, notes: bool = True):
    """The checks before any work (output directory, options) and the probed source (its ``notes`` reported):
    ``(out, info)``."""
    out = check_out(config)
    config.check()
    info = probe(config.input)
    if config.ranges == "hdr-only" and info.transfer == "SDR":
        raise InputError(f"--hdr-only: {config.input} is SDR (no PQ or HLG transfer)")
    for n in info.notes + source_notes(config, info) if notes else ():
        progress.note(f"note: {n}")
    return out, info


def write_rungs(config: PackageConfig, specs, info, out: Path, progress: Progress, select=None) -> Manifest:
    """:func:`write_stream` of ``specs`` after the device and the SR backend are chosen."""
    if not specs and config.ranges != "hdr-only":
        raise InputError("--ladder is empty")
    device = pick_device(config.device)
    from models.factory import use_backend

    use_backend(config.backend)
    geo = Geometry(BlockGrid(info.height, info.width, config.block), tuple(config.scales), config.overall,
                   config.layout)
    return write_stream(config, list(specs), info, geo, device, out, progress, select)


def check_out(config: PackageConfig) -> Path:
    """The output directory, checked: absent (or replaced with ``force``), its parent creatable and writable."""
    out = Path(config.out)
    if out.exists() and not config.force:
        raise InputError(f"{out} exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create {out.parent} ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {out.parent} is not writable")
    return out


def write_stream(cfg: PackageConfig, specs: list[RungSpec], info, geo: Geometry, device, out: Path,
                 progress: Progress, select=None) -> Manifest:
    """Encode, segment and measure ``specs`` into a temporary directory beside ``out``, then swap it in.
    ``select(renditions, directory) -> renditions``: after measuring, the renditions to ship (it deletes the
    files of the others: :func:`packager.titled.select_titled`)."""
    from packager.runner import current

    check_refine(cfg, specs, geo, device)
    gop = max(1, int(round(float(info.fps) * cfg.segment)))
    remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    normal_mode(tmp)
    try:
        work = tmp / "work"
        work.mkdir()
        refine_log: dict = {}
        adapted: dict = {}
        measured = None
        if cfg.ranges == "hdr-only":
            n_frames, timing, renditions, allocs = None, {}, [], (False, 0)
        else:
            n_frames, timing, renditions, allocs, measured = eight_bit_ladder(
                cfg, specs, info, geo, gop, work, tmp, device, progress, refine_log, adapted, select)
        shutil.rmtree(work, ignore_errors=True)
        rungs10 = plan_deep(cfg, info, renditions, specs)
        if rungs10:
            t = time.time()
            deep, n_frames = deep_renditions(cfg, info, rungs10, gop, n_frames, tmp, progress)
            timing["encode_10bit"] = time.time() - t
            if cfg.measure:
                t = time.time()
                measured = measured or measured_frames(n_frames, cfg.measure_frames)
                measure_deep(deep, info, measured, tmp, progress)
                timing["measure_10bit"] = time.time() - t
            renditions += deep
        from packager.audio import audio_renditions

        t = time.time()
        audio = [] if cfg.sample else audio_renditions(  # (the ladder search's sample: video only)
            info.path, tmp, cfg.container, cfg.segment, media_seconds(info, n_frames) if n_frames < info.frames
            else None, progress.note, video_delay_s(renditions, tmp, info) if info.has_audio else 0.0)
        timing["audio"] = time.time() - t
        (tmp / "master.m3u8").write_text(master_playlist(
            [(r.playlist, r.bitrate_kbps * 1000, _peak_bps(r), r.lr_width, r.lr_height, r.codecs, r.video_range)
             for r in renditions], audio))
        man = build_manifest(cfg, info, geo, n_frames, renditions, allocs, timing, audio, measured)
        man.conventions["made"] = current().describe()
        if refine_log:
            man.conventions["refine"] = {"config": cfg.refine.to_dict(), "label": cfg.refine.label,
                                         "convention": REFINE_CONVENTION, **refine_log}
        if adapted:
            man.conventions["adapt"] = {"config": cfg.adapt.to_dict(), "renditions": adapted,
                                        "convention": ADAPT_CONVENTION}
        (tmp / "manifest.json").write_text(man.to_json())
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return man


def eight_bit_ladder(cfg: PackageConfig, specs: list[RungSpec], info, geo: Geometry, gop: int, work: Path, tmp: Path,
                     device, progress: Progress, refine_log: dict, adapted: dict, select=None):
    """The 8-bit ladder (every family; an HDR source's SDR picture): encode, segment, [adapt,] measure, [select,]
    export web models. Returns (frames, seconds per stage, renditions, (scored, allocations), measured frames or
    None); ``adapted`` receives the per-title models' summary."""
    plan = segment_plan(info, cfg, gop)
    expected = None if any(c is None for *_, c in plan) else sum(c for *_, c in plan)
    keep = measured_frames(expected, cfg.measure_frames) if cfg.measure and expected else []
    enc = encode_in_groups(specs, geo, info, cfg, gop, work, tmp, device, progress, refine_log, keep_y=tuple(keep))
    n_frames, timing, renditions = enc.frames, enc.seconds, enc.renditions
    shutil.rmtree(work)
    if cfg.adapt is not None:
        from packager.adapt import adapt_stage

        t = time.time()
        adapted.update(adapt_stage(renditions, cfg.adapt, lambda fam: pick_upscaler(cfg.upscaler, fam, device)[0],
                                   info, geo, n_frames, tmp, lambda: source_frames(info, cfg, gop), device, progress))
        timing["adapt"] = time.time() - t
        renditions = refine_through_titles(cfg, specs, renditions, geo, info, gop, tmp, device, progress,
                                           refine_log, timing)
    for r in renditions:
        add_model_rate(r, stream_seconds(cfg, info, n_frames))
    measured = None
    if cfg.measure:
        t = time.time()
        measured = measured_frames(n_frames, cfg.measure_frames)
        refs = enc.refs if set(measured) <= set(enc.refs) else source_refs(source_frames(info, cfg, gop), measured)
        measure(renditions, info, geo, measured, lambda fam, rend: pick_for(cfg.upscaler, fam, rend, tmp, device),
                tmp, progress, refs, cfg)
        timing["measure"] = time.time() - t
        if select is not None:
            renditions = select(renditions, tmp)
    if cfg.web_models:
        from packager.web_models import export_web_models

        t = time.time()
        if export_web_models(renditions, tmp, progress):
            timing["web_models"] = time.time() - t
    return n_frames, timing, renditions, (enc.scored, enc.allocations), measured


def refine_through_titles(cfg: PackageConfig, specs: list[RungSpec], renditions: list[Rendition], geo: Geometry,
                          info, gop: int, tmp: Path, device, progress: Progress, refine_log: dict,
                          timing: dict) -> list[Rendition]:
    """Refined rungs that got per-title models: encoded again with their pictures refined through those models
    (the network the client runs; packager/refine.py), segments replaced in ``tmp``, models kept."""
    redo = {r.name: r for r in renditions if r.models and r.refine is not None}
    if not redo:
        return renditions
    t = time.time()
    work = tmp / "work"
    work.mkdir()
    again = encode_in_groups([s for s in specs if s.name in redo], geo, info, cfg, gop, work, tmp, device,
                             progress, refine_log, title=redo).renditions
    shutil.rmtree(work)
    for r in again:
        r.models = redo[r.name].models
    timing["refine_title"] = time.time() - t
    new = {r.name: r for r in again}
    return [new.get(r.name, r) for r in renditions]


def check_refine(cfg: PackageConfig, specs: list[RungSpec], geo: Geometry | None = None, device=None) -> None:
    """Refined rungs need a refinable family (the ladder parser's check), a per-scale (or bicubic) upscaler
    and, for now, the generic weights."""
    from packager.refine import refinable_upscaler

    refined = [s for s in specs if s.refine]
    bad = [s.text for s in refined if not FAMILIES[s.family].refinable]
    if bad:
        raise InputError(f"--refine: {', '.join(bad)}: only {', '.join(n for n, c in FAMILIES.items() if c.refinable)}"
                         " rungs are refined")
    if refined:
        blocks = [s for s in refined if FAMILIES[s.family].allocates]
        if len(blocks) < len(refined) and not refinable_upscaler(cfg.upscaler):
            raise InputError(f"--refine: --upscaler {cfg.upscaler} is not a per-scale model (fast, omnisr, bicubic)")
        if blocks and cfg.upscaler not in ("auto", "jointsr"):
            raise InputError(f"--refine: BBMR rungs are refined through JointSR (--upscaler auto or jointsr), not "
                             f"{cfg.upscaler}")
        if blocks and cfg.layout != "planes":
            raise InputError(f"--refine: BBMR rungs are refined in the planes layout, not --layout {cfg.layout}")
        if blocks and geo is not None:  # auto falls back to other upscalers when no JointSR fits: say so now
            name, _ = pick_upscaler(cfg.upscaler, make_family(blocks[0], geo), device)
            if name != "jointsr":
                raise InputError(f"--refine: BBMR rungs are refined through JointSR, and no JointSR weights fit "
                                 f"scales {list(geo.scales)} (the rungs would be measured with {name})")


def remove_stale_temps(out: Path) -> None:
    """Delete ``.NAME.tmp-PID-*`` / ``.NAME.old-PID`` directories next to ``out`` left by a packager run that was
    killed (SIGKILL, power loss: no cleanup ran) and whose process is gone."""
    import re

    pat = re.compile(rf"^\.{re.escape(out.name)}\.(?:tmp|old)-(\d+)")
    for p in out.parent.glob(f".{out.name}.*"):
        m = pat.match(p.name)
        if m and p.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_dir(new: Path, out: Path) -> None:
    """Put the complete stream ``new`` at ``out``: an old ``out`` is first renamed aside (same directory), then
    ``new`` renamed in, then the old one deleted, so at every moment one whole stream is at ``out`` or beside it
    (a failed swap puts the old one back)."""
    if not out.exists():
        new.rename(out)
        return
    if not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def video_delay_s(renditions: list[Rendition], tmp: Path, info) -> float:
    """Seconds the renditions' timestamps run behind the source's: the first frame's presentation time in the
    shipped segments minus the source's (the encoders' B-frame delay, which the MPEG-TS muxer adds to keep decode
    times >= 0). The audio renditions are shifted by as much, so audio and video keep the source's sync. Every
    rendition has the same delay (one timeline to switch on), checked."""
    import av

    from bbmr_stream.demux import Chained

    starts = {}
    for r in renditions:
        seg = tmp / r.segments[0].file
        raw = Chained(tmp / r.init.file, seg) if r.init is not None else None
        with av.open(raw if raw is not None else str(seg), format="mp4" if raw is not None else "mpegts") as c:
            st = c.streams.video[0]
            starts[r.name] = min(float(p.pts * st.time_base) for p in c.demux(st) if p.pts is not None)
        if raw is not None:
            raw.close()
    if max(starts.values()) - min(starts.values()) > 1e-3:
        raise RuntimeError(f"renditions start at different times: {starts}")
    return min(starts.values()) - info.start_s


def _peak_bps(r: Rendition) -> float:
    """The highest segment rate, each segment with its share of the model and init-segment bytes (BANDWIDTH)."""
    extra = r.segment_extra_bytes()
    return max(((s.bytes + m) * 8 / s.duration_s for s, m in zip(r.segments, extra) if s.duration_s > 0),
               default=r.bitrate_kbps * 1000)


def add_model_rate(rend: Rendition, duration_s: float) -> None:
    """Count the rendition's model files in its rate: ``bitrate_kbps`` and ``parts_kbps["model"]``."""
    nbytes = sum(m.bytes for m in rend.models)
    if nbytes:
        kbps = nbytes * 8 / duration_s / 1000
        rend.parts_kbps["model"] = round(kbps, 3)
        rend.bitrate_kbps = round(rend.bitrate_kbps + kbps, 2)


def pick_for(name: str, fam: Family, rend: Rendition | None, root: Path, device):
    """:func:`pick_upscaler`, with the rendition's own title model (its first) when it has one (``rend`` None:
    the generic weights)."""
    up_name, up = pick_upscaler(name, fam, device)
    ref = rend.model_for(0) if rend is not None else None
    if ref is None:
        return up_name, up
    from models.upscalers import title_upscaler

    return up_name, title_upscaler(up_name, root / ref.file, ref.scale, ref.arch, ref.base, ref.bytes, ref.sha256,
                                   device)


def source_refs(source, measured: list[int]) -> dict:
    """Run frame index -> the source's Y plane of the ``measured`` frames, from the frames ``source`` yields."""
    want, refs = set(measured), {}
    for fr in source:
        if fr.index in want:
            refs[fr.index] = fr.y
        if fr.index >= max(measured):
            break
    return refs


def measure(renditions: list[Rendition], info, geo: Geometry, measured: list[int], pick, tmp: Path, progress: Progress,
            refs: dict, cfg: PackageConfig) -> None:
    """Decode every rendition back, reconstruct the ``measured`` frames with its family and upscaler, and set its
    mean PSNR-Y against ``refs`` (run frame index -> the source's Y plane; :data:`PSNR_CONVENTION`) and the NIQE
    of its first ``cfg.niqe_frames`` measured frames. Renditions with the generic weights are
    :class:`packager.tasks.MeasureTask`\\ s on the current runner; one with a title model is measured here with
    ``pick(family, rendition) -> (name, upscaler)`` (rendition None: the generic weights, whose PSNR-Y goes to
    ``psnr_y_generic`` beside the model's)."""
    from models.factory import use_backend
    from packager.runner import current

    runner = current()
    generic = [r for r in renditions if not r.models]
    backend = use_backend(cfg.backend)
    tcfg = dataclasses.replace(cfg, device=pick_device(cfg.device).type)
    niqe_of = tuple(measured[:cfg.niqe_frames])
    tasks, owner = [], []  # a task per rendition and segment holding measured frames
    for k, r in enumerate(generic):
        for seg in r.segments:
            mine = tuple(i for i in measured if seg.first_frame <= i < seg.first_frame + seg.frames)
            if mine:
                files = None if runner.local_files else _files(tmp, r, seg)
                tasks.append(MeasureTask(r, tcfg, info, mine, str(tmp) if runner.local_files else None, files,
                                         backend, tuple(i for i in niqe_of if i in mine)))
                owner.append(k)
    results: dict[int, object] = {}
    with progress.task("measuring", len(tasks) + len(renditions) - len(generic)) as task:
        def done(i: int, res) -> None:
            results[i] = res
            task.advance()

        if tasks:
            run_longest_first(runner, run_measure, tasks, [measure_cost(t) for t in tasks], done,
                              shared={i: refs[i] for i in measured})
        for k, rend in enumerate(generic):
            mine = [results[i] for i in range(len(tasks)) if owner[i] == k]
            psnr, niqes = [v for r in mine for v in r.psnr], [v for r in mine for v in r.niqe]
            if len(psnr) != len(measured):
                raise RuntimeError(f"{rend.name}: measured {len(psnr)} of {len(measured)} frames")
            rend.psnr_y = round(float(np.mean(psnr)), 4)
            rend.niqe = round(float(np.mean(niqes)), 4) if niqes else None
            rend.psnr_y_upscaler = mine[0].upscaler
            rend.weights = weights_ref(mine[0].upscaler)
        for rend in renditions:
            if rend.models:
                measure_titled(rend, info, geo, measured, pick, tmp, refs, cfg.niqe_frames)
                task.advance()


SR_COST = {"plain": 1, "plain-sr": 30, "uniform": 30, "bbmr": 80}  # rough cost of a reconstructed pixel, by family


def measure_cost(t: MeasureTask) -> float:
    """A measure task's rough cost (the SR reconstruction of its frames at the source size)."""
    return len(t.measured) * t.info.width * t.info.height * SR_COST.get(t.rendition.kind, 30)


def encode_cost(t: SegmentTask) -> float:
    """A segment task's rough cost (:func:`group_cost`)."""
    return group_cost(list(t.specs), t.info.width * t.info.height)


def run_longest_first(runner, fn, tasks: list, costs: list[float], done, shared=None) -> None:
    """``runner.map`` with the most expensive tasks submitted first (a shorter tail when there are few workers);
    ``done(index in tasks, result)``."""
    order = sorted(range(len(tasks)), key=lambda i: -costs[i])
    runner.map(fn, [tasks[i] for i in order], shared=shared, done=lambda j, res: done(order[j], res))


def _files(root: Path, rend: Rendition, seg) -> dict:
    """The bytes of a rendition's init segment and of its media segment ``seg`` (name -> bytes): a remote
    worker's copy."""
    names = ([rend.init.file] if rend.init is not None else []) + [seg.file]
    return {n: (root / n).read_bytes() for n in names}


def measure_titled(rend: Rendition, info, geo: Geometry, measured: list[int], pick, tmp: Path, refs: dict,
                   niqe_frames: int) -> None:
    """:func:`measure` of a rendition with a per-title model, in this process (its model is in ``tmp``)."""
    fam = make_family(spec_of(rend), geo)
    up_name, upscaler = pick(fam, rend)
    generic = pick(fam, None)[1]  # the fallback's quality beside the model's
    vals, niqes, gvals = measure_frames(rend, fam, tmp, measured, measured[:niqe_frames], upscaler, refs, info,
                                        generic)
    rend.psnr_y = round(float(np.mean(vals)), 4)
    rend.psnr_y_generic = round(float(np.mean(gvals)), 4)
    rend.niqe = round(float(np.mean(niqes)), 4) if niqes else None
    rend.psnr_y_upscaler = up_name
    rend.weights = weights_ref(up_name)


def weights_ref(upscaler: str | None) -> dict | None:
    """{weights id: sha256} of the shipped weights a rendition was measured with (the manifest's ``weights``)."""
    if upscaler in (None, "bicubic", "none"):
        return None
    from models.registry import load_registry
    from models.upscalers import weights_ids

    reg = load_registry()
    return {i: reg[i].sha256 for i in weights_ids(upscaler, ()) if i in reg}
