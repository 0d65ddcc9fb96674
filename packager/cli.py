"""``bbmr-package input.mp4 --out stream/``: the encoder-node pipeline.

decode -> blocks -> score -> allocate -> pack (atlas) -> encode + SEI -> segment (HLS, MPEG-TS) -> measure
(decode the segments back, unpack, upscale, PSNR-Y against the source) -> manifest.

Everything is written into a temporary directory beside ``--out`` and renamed at the end: an interrupted or
failed run never leaves a stream that looks whole. Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bbmr_stream.allocate import DEFAULT_SCALES, allocate
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.cli import run_cli
from bbmr_stream.decode import frames, probe
from bbmr_stream.family import FAMILIES, Family, Geometry, RungSpec, make_family, parse_ladder, spec_of
from bbmr_stream.imageio import normal_mode
from bbmr_stream.errors import InputError
from bbmr_stream.manifest import Manifest, Rendition, Segment
from bbmr_stream.resize import RESIZE_CONVENTION, to_tensor
from packager.encode import LREncoder
from packager.reuse import MapReuse
from packager.segment import master_playlist, segment_hls

DEFAULT_LADDER = "auto"


@dataclass
class Rung:
    """One rendition being made: its spec, its family (how frames become pictures and back) and its encoder."""

    spec: RungSpec
    family: Family
    encoder: LREncoder | None = None
    ts: Path | None = None
    factors: list = field(default_factory=list)  # per frame, for the scale shares of block families

    @property
    def name(self) -> str:
        return self.spec.name


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-package", description="Package a video as a BBMR ABR stream.")
    ap.add_argument("input")
    ap.add_argument("--out", required=True, help="stream directory to create")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    ap.add_argument("--scorer", default="light", help="BBMR block scorer: bicubic | light | full (default %(default)s: the shipped 1-OSAG OmniSR)")
    ap.add_argument("--allocator", default="optimal", choices=("optimal", "paper", "uniform"),
                    help="BBMR scale allocator (default %(default)s)")
    ap.add_argument("--scales", default=",".join(map(str, DEFAULT_SCALES)), help="BBMR block downscale factors, comma list from 2,4,8 (default %(default)s)")
    ap.add_argument("--overall", type=int, default=4, help="BBMR LR pixel budget = uniform x OVERALL (default 4)")
    ap.add_argument("--ladder", default=DEFAULT_LADDER,
                    help="auto (default: measure every family on a sample of the title and ship the rungs on the "
                         "rate-quality front, see packager/ladder.py), or a comma list of plain:CRF, "
                         "plain:WxH:CRF, plain-sr:K:CRF, uniform:CRF, bbmr:CRF (bbmr_stream/family.py)")
    ap.add_argument("--fast", action="store_true",
                    help="--ladder auto: measure 13 candidates (plain at 3 sizes x 3 CRFs, plain-sr x2/x4 at 2 CRFs) instead of 45; "
                         "the rung choice is coarser (packager/ladder.py FAST)")
    ap.add_argument("--study", help="--ladder auto: reuse the candidates measured by `bbmr-bench rd` on this "
                    "title (its rd.json) instead of measuring them again")
    ap.add_argument("--auto-max-rungs", type=int, default=8, help="--ladder auto: at most this many rungs (default %(default)s)")
    ap.add_argument("--auto-sample-segments", type=int, default=3,
                    help="--ladder auto: measure the candidates on this many segments spread over the title (default %(default)s)")
    ap.add_argument("--auto-measure-frames", type=int, default=6,
                    help="--ladder auto: PSNR-Y of each candidate on this many evenly spaced frames of the sample (default %(default)s)")
    ap.add_argument("--block", type=int, default=128, help="BBMR block size in source pixels (default %(default)s)")
    ap.add_argument("--layout", choices=("atlas", "planes"), default="planes",
                    help="BBMR/uniform LR block streams: one atlas picture, or one picture per scale (default %(default)s, docs/formats.md)")
    ap.add_argument("--codec", choices=("h264", "hevc"), default="h264", help="video codec (default %(default)s)")
    ap.add_argument("--preset", default="medium", help="x264/x265 preset: ultrafast ... veryslow (default %(default)s)")
    ap.add_argument("--lossless", action="store_true", help="x264 qp 0 / x265 lossless (tests, references)")
    ap.add_argument("--segment", type=float, default=2.0, help="segment (and GOP) duration in seconds (default %(default)s)")
    ap.add_argument("--realloc", choices=("auto", "gop", "every"), default="auto",
                    help="re-score and re-allocate: at segment starts (gop), every frame (every), or at segment "
                         "starts and whenever the blocks' detail changed (auto, see packager/reuse.py)")
    ap.add_argument("--rate-lambda", type=float, default=0.0,
                    help="rate-aware allocation (optimal allocator): weight of the bit-cost proxy "
                         "(bbmr_stream/rate.py), in units of the H.264 lambda at the middle BBMR rung's CRF; 0 = off")
    ap.add_argument("--realloc-threshold", type=float, default=0.25,
                    help="auto: share of blocks whose detail changed that triggers a re-allocation (default %(default)s)")
    ap.add_argument("--upscaler", default="auto", help="upscaler whose PSNR-Y goes into the manifest: "
                    "auto (BBMR: jointsr, else omnisr; uniform: omnisr = OmniSR-O; else bicubic) | bicubic | "
                    "omnisr | jointsr")
    ap.add_argument("--no-measure", action="store_true", help="skip decoding the stream back to measure PSNR-Y")
    ap.add_argument("--measure-frames", type=int, default=10,
                    help="measure each rendition's PSNR-Y on this many evenly spaced frames (default %(default)s; "
                         "0 = every frame: a plain-sr or BBMR rendition then runs its SR model on all of them)")
    ap.add_argument("--niqe-frames", type=int, default=0, help="NIQE of the first N measured frames per rendition (default %(default)s = off)")
    ap.add_argument("--max-frames", type=int, help="package only the first N frames (default: all)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda (default %(default)s)")
    ap.add_argument("--backend", default=None,
                    help="SR inference on a CPU: auto (OpenVINO if installed, else ONNX Runtime, else torch) | torch | "
                         "openvino | onnxruntime; every exported graph is checked against eager fp32 before use "
                         "(models/backend.py; default $BBMR_BACKEND or auto)")
    return ap


def pick_upscaler(name: str, family: Family, device):
    """The upscaler a rendition is measured (and, by default, played) with: ``auto`` takes the family's
    preferred shipped model (BBMR: jointsr, else omnisr; uniform and plain-sr: omnisr), else bicubic. Models
    are loaded for the family's LR scales only (a plain-sr xK rung needs one model)."""
    from models.factory import make_upscaler

    if family.name == "plain":
        return "bicubic", None
    scales = tuple(family.lr_scales())
    if name != "auto":
        return name, make_upscaler(name, scales, device)
    for cand in family.upscalers:
        try:
            return cand, make_upscaler(cand, scales, device)
        except InputError:
            continue
    return "bicubic", make_upscaler("bicubic", scales, device)


@dataclass
class Allocation:
    """The scorer + allocator state of the encode stage: the current per-block factors of BBMR rungs."""

    scorer: object | None
    reuse: MapReuse
    factors: np.ndarray | None = None
    seconds: dict = field(default_factory=lambda: {"score": 0.0, "allocate": 0.0})


def source_frames(info, args, gop: int):
    """The frames to package: all (up to ``--max-frames``), or, when ``args.sample`` lists segment indices (the
    auto ladder's sample), the frames of those segments re-timed back to back (indices and pts contiguous)."""
    from bbmr_stream.decode import Frame

    segs = getattr(args, "sample", None)
    if not segs:
        yield from frames(info, args.max_frames, strict=True)
        return
    want, last = set(segs), max(segs)
    step = max(1, int(round(1 / (float(info.fps) * float(info.time_base)))))
    j, pts0 = 0, None
    for fr in frames(info, args.max_frames, strict=True):
        if fr.index // gop > last:
            break
        if fr.index // gop in want:
            pts0 = fr.pts if pts0 is None else pts0
            yield Frame(j, pts0 + j * step, fr.rgb, fr.y)
            j += 1


MAX_ENCODERS = 10  # x264 encoders alive at once: each holds its lookahead (~0.2 GB at 1080p, ~0.9 GB at 4K)


def encode_groups(specs: list[RungSpec], size: int = MAX_ENCODERS) -> list[list[RungSpec]]:
    """Rungs encoded together: the allocating (BBMR) rungs share one pass (one scorer run), the others go in
    groups of at most ``size``; each group re-decodes the source."""
    alloc = [s for s in specs if FAMILIES[s.family].allocates]
    rest = [s for s in specs if not FAMILIES[s.family].allocates]
    groups = [alloc] if alloc else []
    groups += [rest[i:i + size] for i in range(0, len(rest), size)]
    return groups


def encode_in_groups(specs, geo: Geometry, info, args, gop: int, work: Path, tmp: Path, scorer, device, console):
    """The encode and segment stages over :func:`encode_groups`; renditions in ladder order, encoders freed
    after each group. Returns (frames, seconds per stage, renditions, the allocation state)."""
    import gc

    timing: dict = {}
    renditions: list[Rendition] = []
    n_frames, alloc_used = None, None
    for group in encode_groups(specs):
        rungs = make_rungs(group, geo, info, args, gop, work)
        alloc = Allocation(scorer if any(FAMILIES[s.family].allocates for s in group) else None,
                           MapReuse(args.realloc, geo.grid, args.realloc_threshold))
        n, t = encode_stage(rungs, info, geo, alloc, args, gop, device, console)
        if n_frames is not None and n != n_frames:
            raise RuntimeError(f"the source gave {n} frames in one pass and {n_frames} in another")
        n_frames = n
        t0 = time.time()
        renditions += segment_stage(rungs, tmp, info, n, args)
        t["segment"] = time.time() - t0
        for k, v in t.items():
            timing[k] = timing.get(k, 0.0) + v
        alloc_used = alloc if alloc.scorer is not None or alloc_used is None else alloc_used
        del rungs
        gc.collect()
    order = {s.name: i for i, s in enumerate(specs)}
    renditions.sort(key=lambda r: order[r.name])
    return n_frames, timing, renditions, alloc_used


def make_rungs(specs: list[RungSpec], geo: Geometry, info, args, gop: int, work: Path) -> list[Rung]:
    rungs = []
    for spec in specs:
        fam = make_family(spec, geo)
        ts = work / f"{spec.name}.ts"
        enc = LREncoder(ts, fam.sizes(), info.time_base, info.fps, args.codec, spec.crf, args.preset, gop,
                        info.matrix, info.full_range, lossless=args.lossless)
        rungs.append(Rung(spec, fam, enc, ts))
    return rungs


def allocate_frame(alloc: Allocation, x: torch.Tensor, rgb: np.ndarray, segment_start: bool, geo: Geometry,
                   args, rate_crf: float, device) -> None:
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
        if args.rate_lambda > 0:
            from bbmr_stream.blocks import pad_tensor
            from bbmr_stream.rate import h264_lambda, rate_proxy

            rate_kw = {"rate": rate_proxy(pad_tensor(x, g.block), geo.scales, g.block, rate_crf),
                       "lam": args.rate_lambda * h264_lambda(rate_crf)}
        alloc.factors = allocate(args.allocator, dist, geo.scales, geo.overall, g.block,
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


def encode_stage(rungs: list[Rung], info, geo: Geometry, alloc: Allocation, args, gop: int, device,
                 console) -> tuple[int, dict]:
    """decode -> (score -> allocate) -> pack -> encode + SEI, frame by frame; returns (frames, seconds)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    timing = {"decode": 0.0, "pack": 0.0, "encode": 0.0}
    bbmr_crfs = sorted(r.spec.crf for r in rungs if r.family.allocates) or [23.0]
    rate_crf = bbmr_crfs[len(bbmr_crfs) // 2]
    needs_alloc = any(r.family.allocates for r in rungs)
    total = min(info.frames or 0, args.max_frames or 10**9) or None
    if getattr(args, "sample", None) and total:  # the auto ladder's sample: those segments only
        total = sum(min(gop, total - i * gop) for i in args.sample if i * gop < total)
    n = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[fps]:.2f} fps"), TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task(f"encoding {len(rungs)} renditions", total=total, fps=0.0)
        t0 = t = time.time()
        for fr in source_frames(info, args, gop):
            timing["decode"] += time.time() - t
            x = to_tensor(fr.rgb)
            if needs_alloc:
                allocate_frame(alloc, x, fr.rgb, fr.index % gop == 0, geo, args, rate_crf, device)
            made: dict = {}  # picture_key -> YUV planes: a family at several CRFs resizes and converts once
            for r in rungs:
                t = time.time()
                f = r.family.fit(alloc.factors) if r.family.allocates else None
                key = r.family.picture_key(f)
                pics = made.get(key) if key is not None else None
                if pics is None:
                    pics = r.encoder.planes(r.family.pictures(x, f))  # converted to YUV once per picture
                    if key is not None:
                        made[key] = pics
                payload = map_payload(r, f, fr.index, fr.index % gop == 0)
                timing["pack"] += time.time() - t
                t = time.time()
                r.encoder.encode(pics, fr.pts, payload)
                timing["encode"] += time.time() - t
            n += 1
            prog.update(task, advance=1, fps=n / (time.time() - t0))
            t = time.time()
        if n == 0:
            raise InputError(f"{args.input}: no frames decoded")
        t = time.time()
        for r in rungs:
            r.encoder.close()
        timing["encode"] += time.time() - t
    timing.update(alloc.seconds)
    return n, timing


def segment_stage(rungs: list[Rung], tmp: Path, info, n_frames: int, args) -> list[Rendition]:
    """Each rung's MPEG-TS -> HLS segments + media playlist; a Rendition per rung (bytes as shipped)."""
    out = []
    for r in rungs:
        playlist, segs = segment_hls(r.ts, tmp, r.name, args.segment)
        seg_objs, first = [], 0
        for s in segs:
            nf = int(round(s.duration_s * float(info.fps)))
            seg_objs.append(Segment(s.file, s.duration_s, s.bytes, first, nf))
            first += nf
        if seg_objs:  # the last segment takes the rounding remainder
            seg_objs[-1].frames = n_frames - seg_objs[-1].first_frame
        dur = n_frames / float(info.fps)
        kbps = sum(s.bytes for s in seg_objs) * 8 / dur / 1000
        share = {}
        if r.factors:
            allf = np.stack(r.factors)
            share = {str(k): float(np.mean(allf == k)) for k in r.family.lr_scales()}
        w, h = r.encoder.stream.width, r.encoder.stream.height
        out.append(Rendition(r.name, r.spec.family, args.codec, r.spec.crf, r.family.layout, r.family.lr_scales(),
                             r.family.overall(), w, h, round(kbps, 2), playlist, seg_objs, share=share,
                             pictures=[[s.width, s.height] for s in r.encoder.streams], codecs=r.encoder.codecs))
    return out


def measured_frames(n_frames: int, count: int) -> list[int]:
    """Indices of the frames whose quality is measured: all (count 0), else ``count`` evenly spaced."""
    if count <= 0 or count >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, count)})


def build_manifest(args, info, geo: Geometry, n_frames: int, renditions, alloc: Allocation, timing: dict,
                   audio, measured: list[int] | None) -> Manifest:
    conv = {"psnr_y": PSNR_CONVENTION, "bitrate": "bytes of the HLS segments as shipped * 8 / duration",
            "timing_s": {k: round(v, 3) for k, v in timing.items()}}
    if measured is not None:
        conv["measured_frames"] = measured
    return Manifest(
        source={"file": Path(args.input).name, "width": info.width, "height": info.height,
                "fps": [info.fps.numerator, info.fps.denominator], "frames": n_frames,
                "duration_s": n_frames / float(info.fps), "matrix": info.matrix, "full_range": info.full_range},
        block=geo.grid.block, overall=geo.overall, scales=list(geo.scales), resize=RESIZE_CONVENTION,
        container="mpegts", segment_s=args.segment, realloc=f"{args.realloc} ({alloc.reuse.count} allocations)",
        scorer=args.scorer if alloc.scorer else "none", allocator=args.allocator, renditions=renditions,
        audio=audio, conventions=conv)


PSNR_CONVENTION = ("video PSNR-Y: the source's decoded 8-bit Y plane vs the reconstruction's luma in the source's "
                   "matrix and range (plain: the decoded Y plane, bicubic-resized when smaller, as FFmpeg's psnr "
                   "filter; SR families: the exact luma of the unrounded RGB output), peak 255, crop 0, mean of "
                   "per-frame PSNR over the measured frames (bbmr_stream.family.Family.luma)")


def run(args: argparse.Namespace, console, specs: list[RungSpec] | None = None) -> Path:
    """The whole pipeline; ``specs`` overrides ``--ladder`` (the auto ladder passes the rungs it chose)."""
    from bbmr_stream.device import pick_device
    from bbmr_stream.evaluate import parse_scales
    from models.factory import make_scorer

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create {out.parent} ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {out.parent} is not writable")
    check_options(args)
    scales = parse_scales(args.scales)
    if any(k & (k - 1) or not 1 <= k <= 16 for k in scales) or not scales[0] <= args.overall <= scales[-1]:
        raise InputError(f"--scales {args.scales}: powers of two 1..16 around --overall {args.overall}")
    if args.block < 16 or args.block % (2 * max(scales)):
        raise InputError(f"--block {args.block} must be a multiple of 2 x the largest scale ({2 * max(scales)})")
    info = probe(args.input)
    for n in info.notes:
        console.print(f"[yellow]note:[/] {n}")
    device = pick_device(args.device)
    from models.factory import use_backend

    use_backend(args.backend)
    geo = Geometry(BlockGrid(info.height, info.width, args.block), tuple(scales), args.overall, args.layout)
    if specs is None:
        if args.ladder == "auto":
            from packager.ladder import auto_ladder

            specs = auto_ladder(run, args, info, geo, console)
        else:
            specs = parse_ladder(args.ladder)
    needs_alloc = any(FAMILIES[s.family].allocates for s in specs)
    scorer = make_scorer(args.scorer, scales, device) if needs_alloc and args.allocator != "uniform" else None
    gop = max(1, int(round(float(info.fps) * args.segment)))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    normal_mode(tmp)
    try:
        work = tmp / "work"
        work.mkdir()
        n_frames, timing, renditions, alloc = encode_in_groups(specs, geo, info, args, gop, work, tmp, scorer,
                                                               device, console)
        shutil.rmtree(work)
        measured = None
        if not args.no_measure:
            t = time.time()
            measured = measured_frames(n_frames, args.measure_frames)
            measure(renditions, info, geo, measured, lambda fam: pick_upscaler(args.upscaler, fam, device),
                    tmp, console, args.niqe_frames, source=lambda: source_frames(info, args, gop))
            timing["measure"] = time.time() - t
        (tmp / "master.m3u8").write_text(master_playlist(
            [(r.playlist, r.bitrate_kbps * 1000, _peak_bps(r), r.lr_width, r.lr_height, r.codecs)
             for r in renditions]))
        audio = passthrough_audio(info, tmp, console)
        man = build_manifest(args, info, geo, n_frames, renditions, alloc, timing, audio, measured)
        (tmp / "manifest.json").write_text(man.to_json())
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not getattr(args, "sample", None) and not getattr(args, "quiet", False):
        summary(man, n_frames, timing, console)
    return out


def check_options(args: argparse.Namespace) -> None:
    """Numeric options in range (one-line errors, before any work)."""
    import math

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise InputError(msg)

    need(math.isfinite(args.segment) and 0.04 <= args.segment <= 60, f"--segment {args.segment}: 0.04..60 seconds")
    need(args.max_frames is None or args.max_frames >= 1, "--max-frames must be >= 1")
    need(args.measure_frames >= 0 and args.niqe_frames >= 0, "--measure-frames and --niqe-frames must be >= 0")
    need(args.overall in (2, 4, 8), f"--overall {args.overall}: 2, 4 or 8")
    need(math.isfinite(args.rate_lambda) and args.rate_lambda >= 0, "--rate-lambda must be >= 0")
    need(math.isfinite(args.realloc_threshold) and 0 <= args.realloc_threshold <= 1, "--realloc-threshold: 0..1")
    need(1 <= args.auto_max_rungs <= 16, "--auto-max-rungs: 1..16")
    need(args.auto_sample_segments >= 0 and args.auto_measure_frames >= 1,
         "--auto-sample-segments >= 0 and --auto-measure-frames >= 1")


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


def _peak_bps(r: Rendition) -> float:
    return max((s.bytes * 8 / s.duration_s for s in r.segments if s.duration_s > 0), default=r.bitrate_kbps * 1000)


def measure(renditions: list[Rendition], info, geo: Geometry, measured: list[int], pick, tmp: Path, console,
            niqe_frames: int = 0, source=None) -> None:
    """Decode every rendition back, reconstruct the ``measured`` frames with its family and
    ``pick(family) -> (name, upscaler)``, and set its mean PSNR-Y (:data:`PSNR_CONVENTION`) and the NIQE of
    its first ``niqe_frames`` measured frames. The source's Y planes of those frames are decoded once."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from bbmr_stream.metrics import niqe, psnr_plane
    from bbmr_stream.demux import segment_frames

    want = set(measured)
    ref = {}
    for fr in (source() if source else frames(info)):
        if fr.index in want:
            ref[fr.index] = fr.y
        if fr.index >= max(measured):
            break
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task("measuring", total=len(measured) * len(renditions))
        ups: dict = {}
        for rend in renditions:
            fam = make_family(spec_of(rend), geo)
            key = (fam.name, tuple(fam.lr_scales()))  # plain-sr x2 and x4 need different models
            if key not in ups:
                ups[key] = pick(fam)
            up_name, upscaler = ups[key]
            prog.update(task, description=f"measuring {rend.name} ({up_name})")
            vals, niqes = [], []
            for seg in rend.segments:
                for i, (frs, smap) in enumerate(segment_frames(tmp / seg.file, len(rend.pictures))):
                    if seg.first_frame + i not in want:
                        continue
                    y, rgb = fam.luma(frs, smap, upscaler, info.matrix, info.full_range,
                                      with_rgb=len(niqes) < niqe_frames)
                    vals.append(psnr_plane(ref[seg.first_frame + i], y))
                    if rgb is not None:
                        niqes.append(niqe(rgb))
                    prog.advance(task)
            if len(vals) != len(measured):
                raise RuntimeError(f"{rend.name}: decoded {len(vals)} of {len(measured)} measured frames")
            rend.psnr_y = round(float(np.mean(vals)), 4)
            rend.niqe = round(float(np.mean(niqes)), 4) if niqes else None
            rend.psnr_y_upscaler = up_name
            rend.weights = weights_ref(up_name)


def weights_ref(upscaler: str | None) -> dict | None:
    if upscaler in (None, "bicubic", "none"):
        return None
    from models.registry import load_registry

    reg = load_registry()
    ids = ["jointsr"] if upscaler == "jointsr" else sorted(k for k in reg if k.startswith("omnisr-light-x"))
    return {i: reg[i].sha256 for i in ids if i in reg}


def passthrough_audio(info, tmp: Path, console) -> str | None:
    if not info.has_audio:
        return None
    import ffmpeg

    from packager.segment import ffmpeg_exe

    try:
        (ffmpeg.input(info.path).output(str(tmp / "audio.ts"), vn=None, acodec="copy", f="mpegts")
         .global_args("-nostdin", "-loglevel", "error").run(cmd=ffmpeg_exe(), capture_stdout=True,
                                                              capture_stderr=True))
        return "audio.ts"
    except ffmpeg.Error as e:
        console.print(f"[yellow]warning:[/] audio not passed through ({e.stderr.decode(errors='replace')[-200:]})")
        return None


def summary(man: Manifest, n_frames: int, timing: dict, console) -> None:
    """The rendition table (results) on stdout; timing on stderr."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{n_frames} frames, {man.source['width']}x{man.source['height']}")
    cols = {"rendition": lambda r: r.name, "family": lambda r: r.kind,
            "coded picture(s)": lambda r: " + ".join(f"{w}x{h}" for w, h in r.pictures),
            "kbps": lambda r: f"{r.bitrate_kbps:.0f}",
            "PSNR-Y dB (upscaler)": lambda r: f"{r.psnr_y:.2f} ({r.psnr_y_upscaler})" if r.psnr_y is not None else "-"}
    if any(r.niqe is not None for r in man.renditions):
        cols["NIQE"] = lambda r: f"{r.niqe:.2f}" if r.niqe is not None else "-"
    if any(r.share for r in man.renditions):
        cols["x" + " / x".join(map(str, man.scales)) + " share"] = \
            lambda r: " / ".join(f"{r.share.get(str(k), 0):.2f}" for k in man.scales) if r.share else "-"
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in man.renditions:
        t.add_row(*(f(r) for f in cols.values()))
    Console(emoji=False).print(t)
    console.print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    console = Console(stderr=True, emoji=False)

    def go() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            out = run(args, console)
        Console(emoji=False).print(f"wrote {out}")
        return 0

    return run_cli("bbmr-package", go)


if __name__ == "__main__":
    sys.exit(main())
