"""``bbmr-package input.mp4 --out stream/``: the encoder-node pipeline.

decode -> blocks -> score -> allocate -> pack (atlas) -> encode + SEI -> segment (HLS, MPEG-TS) -> measure
(decode the segments back, unpack, upscale, PSNR-Y against the source) -> manifest.

Everything is written into a temporary directory beside ``--out`` and renamed at the end: an interrupted or
failed run never leaves a stream that looks whole. Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
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
from bbmr_stream.imageio import InputError
from bbmr_stream.manifest import Manifest, Rendition, Segment
from bbmr_stream.metrics import psnr_y
from bbmr_stream.resize import RESIZE_CONVENTION, to_tensor, to_uint8
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.unpack import decode_lr, unpack_segment
from bbmr_stream.decode import frames, probe
from packager.encode import LREncoder
from packager.pack import atlas_cols, atlas_rows, fit_to_rows, pack_frame, pack_planes, plane_sizes
from packager.reuse import MapReuse
from packager.segment import master_playlist, segment_hls

DEFAULT_LADDER = "bbmr:18,bbmr:23,bbmr:28"


@dataclass
class Rung:
    name: str
    kind: str  # bbmr | uniform
    crf: float
    encoder: LREncoder | None = None
    ts: Path | None = None
    shares: list = field(default_factory=list)


def parse_ladder(text: str) -> list[Rung]:
    rungs = []
    for item in text.split(","):
        kind, _, crf = item.strip().partition(":")
        if kind not in ("bbmr", "uniform", "plain") or not crf:
            raise InputError(f"--ladder items are bbmr:CRF, uniform:CRF or plain:CRF, got {item!r}")
        try:
            c = float(crf)
        except ValueError:
            raise InputError(f"--ladder: bad CRF {crf!r}") from None
        rungs.append(Rung(f"{kind}_crf{crf}", kind, c))
    if len({r.name for r in rungs}) != len(rungs):
        raise InputError("--ladder has duplicate rungs")
    return rungs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-package", description="Package a video as a BBMR ABR stream.")
    ap.add_argument("input")
    ap.add_argument("--out", required=True, help="stream directory to create")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    ap.add_argument("--scorer", default="light", help="bicubic | light | full (light: shipped 1-OSAG OmniSR)")
    ap.add_argument("--allocator", default="optimal", choices=("optimal", "paper", "uniform"))
    ap.add_argument("--scales", default=",".join(map(str, DEFAULT_SCALES)))
    ap.add_argument("--overall", type=int, default=4)
    ap.add_argument("--ladder", default=DEFAULT_LADDER,
                    help="comma list of rungs: bbmr:CRF (multi-scale), uniform:CRF (uniform x4, for comparisons), "
                         "plain:CRF (the source frames as ordinary H.264 at full size, for any HLS player)")
    ap.add_argument("--layout", choices=("atlas", "planes"), default="planes",
                    help="LR block streams: one atlas picture, or one picture per scale (docs/packager.md)")
    ap.add_argument("--codec", choices=("h264", "hevc"), default="h264")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--lossless", action="store_true", help="x264 qp 0 / x265 lossless (tests, references)")
    ap.add_argument("--segment", type=float, default=2.0, help="segment (and GOP) duration in seconds")
    ap.add_argument("--realloc", choices=("auto", "gop", "every"), default="auto",
                    help="re-score and re-allocate: at segment starts (gop), every frame (every), or at segment "
                         "starts and whenever the blocks' detail changed (auto, see packager/reuse.py)")
    ap.add_argument("--rate-lambda", type=float, default=0.0,
                    help="rate-aware allocation (optimal allocator): weight of the bit-cost proxy "
                         "(bbmr_stream/rate.py), in units of the H.264 lambda at the middle BBMR rung's CRF; 0 = off")
    ap.add_argument("--realloc-threshold", type=float, default=0.25,
                    help="auto: share of blocks whose detail changed that triggers a re-allocation")
    ap.add_argument("--upscaler", default="auto", help="upscaler whose PSNR-Y goes into the manifest: "
                    "auto (BBMR: jointsr, else omnisr; uniform: omnisr = OmniSR-O; else bicubic) | bicubic | "
                    "omnisr | jointsr")
    ap.add_argument("--no-measure", action="store_true", help="skip decoding the stream back to measure PSNR-Y")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--device", default="auto")
    return ap


def pick_upscaler(name: str, scales, device, kind: str = "bbmr"):
    """The upscaler a rendition is measured (and, by default, played) with. ``auto``: for BBMR renditions the
    best shipped multi-scale model (jointsr, else omnisr), for uniform ones OmniSR-O (omnisr); else bicubic."""
    from bbmr_stream.evaluate import make_upscaler

    if name != "auto":
        return name, make_upscaler(name, scales, device)
    for cand in (("jointsr", "omnisr") if kind == "bbmr" else ("omnisr",)):
        try:
            return cand, make_upscaler(cand, scales, device)
        except InputError:
            continue
    return "bicubic", make_upscaler("bicubic", scales, device)


def run(args: argparse.Namespace, console) -> Path:
    from bbmr_stream.cli import pick_device
    from bbmr_stream.evaluate import make_scorer, parse_scales

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists (use --force to replace it)")
    scales = parse_scales(args.scales)
    rungs = parse_ladder(args.ladder)
    device = pick_device(args.device)
    info = probe(args.input)
    for n in info.notes:
        console.print(f"[yellow]note:[/] {n}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError("--max-frames must be >= 1")
    scorer = make_scorer(args.scorer, scales, device) if args.allocator != "uniform" else None
    grid = BlockGrid(info.height, info.width, 128)
    rows, cols = atlas_rows(grid, scales, args.overall), atlas_cols(grid, scales, args.overall)
    slot = 128 // args.overall
    gop = max(1, int(round(float(info.fps) * args.segment)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        work = tmp / "work"
        work.mkdir()
        for r in rungs:
            r.ts = work / f"{r.name}.ts"
            if r.kind == "plain":
                sizes = [(info.width + info.width % 2, info.height + info.height % 2)]
            elif r.kind == "uniform":
                sizes = [(grid.grid_w * slot, grid.grid_h * slot)]
            elif args.layout == "planes":
                sizes = plane_sizes(grid, scales)
            else:
                sizes = [(cols * slot, rows * slot)]
            r.encoder = LREncoder(r.ts, sizes, info.time_base, info.fps, args.codec, r.crf, args.preset, gop,
                                  info.matrix, info.full_range, lossless=args.lossless)
        timing = {"decode": 0.0, "score": 0.0, "allocate": 0.0, "pack": 0.0, "encode": 0.0}
        n_frames, factors, first_pts = 0, None, None
        reuse = MapReuse(args.realloc, grid, args.realloc_threshold)
        bbmr_crfs = sorted(r.crf for r in rungs if r.kind == "bbmr") or [23.0]
        rate_crf = bbmr_crfs[len(bbmr_crfs) // 2]
        uniform = np.full(grid.n_blocks, args.overall, np.uint8)
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        total = min(info.frames or 0, args.max_frames or 10**9) or None
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[fps]:.2f} fps"), TimeRemainingColumn(), console=console,
                      transient=False) as prog:
            task = prog.add_task("packaging", total=total, fps=0.0)
            t0 = time.time()
            t = time.time()
            for fr in frames(info, args.max_frames):
                timing["decode"] += time.time() - t
                x = to_tensor(fr.rgb)
                if first_pts is None:
                    first_pts = fr.pts
                if reuse.needs_realloc(fr.rgb, fr.index % gop == 0):
                    if scorer is not None:
                        t = time.time()
                        dist = scorer.score(x.to(device), 128)
                        timing["score"] += time.time() - t
                        t = time.time()
                        rate_kw = {}
                        if args.rate_lambda > 0:
                            from bbmr_stream.blocks import pad_tensor
                            from bbmr_stream.rate import h264_lambda, rate_proxy

                            rate_kw = {"rate": rate_proxy(pad_tensor(x, 128), scales, 128, rate_crf),
                                       "lam": args.rate_lambda * h264_lambda(rate_crf)}
                        factors = allocate(args.allocator, dist, scales, args.overall, 128,
                                           weights=grid.valid_fraction(), **rate_kw)
                        factors = fit_to_rows(factors, grid, rows, args.overall)
                        timing["allocate"] += time.time() - t
                    else:
                        factors = uniform
                    reuse.allocated(fr.rgb)
                t = time.time()
                pictures = {}
                for kind, f in (("bbmr", factors), ("uniform", uniform)):
                    if any(r.kind == kind for r in rungs):
                        if kind == "uniform":
                            pics = [pack_frame(x, grid, f, grid.grid_h, grid.grid_w, args.overall)]
                        elif args.layout == "planes":
                            pics = pack_planes(x, grid, f, scales)
                        else:
                            pics = [pack_frame(x, grid, f, rows, cols, args.overall)]
                        pictures[kind] = (pics, ScaleMap(f.reshape(grid.grid_h, grid.grid_w), scales,
                                                         fr.index).to_bytes())
                if any(r.kind == "plain" for r in rungs):
                    even = np.pad(fr.rgb, ((0, info.height % 2), (0, info.width % 2), (0, 0)), mode="edge")
                    pictures["plain"] = ([even], None)
                timing["pack"] += time.time() - t
                t = time.time()
                for r in rungs:
                    pics, payload = pictures[r.kind]
                    r.encoder.encode(pics, fr.pts, payload)
                    r.shares.append(factors if r.kind == "bbmr" else uniform if r.kind == "uniform" else None)
                timing["encode"] += time.time() - t
                n_frames += 1
                prog.update(task, advance=1, fps=n_frames / (time.time() - t0),
                            description=f"packaging ({len(rungs)} renditions)")
                t = time.time()
            if n_frames == 0:
                raise InputError(f"{args.input}: no frames decoded")
            t = time.time()
            for r in rungs:
                r.encoder.close()
            timing["encode"] += time.time() - t

        renditions = []
        t = time.time()
        for r in rungs:
            playlist, segs = segment_hls(r.ts, tmp, r.name, args.segment)
            seg_objs, first = [], 0
            for s in segs:
                nf = int(round(s.duration_s * float(info.fps)))
                seg_objs.append(Segment(s.file, s.duration_s, s.bytes, first, nf))
                first += nf
            if seg_objs:  # the last segment takes the rounding remainder
                seg_objs[-1].frames = n_frames - seg_objs[-1].first_frame
            dur = sum(s.duration_s for s in seg_objs) or n_frames / float(info.fps)
            kbps = sum(s.bytes for s in seg_objs) * 8 / dur / 1000
            share = {}
            if r.kind != "plain":
                allf = np.stack(r.shares)
                share = {str(k): float(np.mean(allf == k)) for k in scales}
            w, h = r.encoder.stream.width, r.encoder.stream.height
            layout_name = args.layout if r.kind == "bbmr" else "plain" if r.kind == "plain" else "atlas"
            renditions.append(Rendition(r.name, r.kind, args.codec, r.crf, layout_name, list(scales), args.overall,
                                        w, h, round(kbps, 2), playlist, seg_objs, share=share,
                                        pictures=[[s.width, s.height] for s in r.encoder.streams]))
        timing["segment"] = time.time() - t
        shutil.rmtree(work)

        if not args.no_measure:
            t = time.time()
            measure(renditions, info, grid, n_frames, lambda kind: pick_upscaler(args.upscaler, scales, device, kind),
                    tmp, console)
            timing["measure"] = time.time() - t

        master = master_playlist([(r.playlist, r.bitrate_kbps * 1000, r.lr_width, r.lr_height) for r in renditions])
        (tmp / "master.m3u8").write_text(master)
        audio = passthrough_audio(info, tmp, console)
        man = Manifest(
            source={"file": Path(args.input).name, "width": info.width, "height": info.height,
                    "fps": [info.fps.numerator, info.fps.denominator], "frames": n_frames,
                    "duration_s": n_frames / float(info.fps), "matrix": info.matrix, "full_range": info.full_range},
            block=128, overall=args.overall, scales=list(scales), resize=RESIZE_CONVENTION, container="mpegts",
            segment_s=args.segment, realloc=f"{args.realloc} ({reuse.count} allocations)", scorer=args.scorer if scorer else "none",
            allocator=args.allocator, renditions=renditions, audio=audio,
            conventions={"psnr_y": "BT.601 Y of RGB (16+65.481R+128.553G+24.966B), unrounded, crop 0, mean over "
                                   "frames, reconstruction rounded to 8 bits vs the decoded source",
                         "timing_s": {k: round(v, 3) for k, v in timing.items()}})
        (tmp / "manifest.json").write_text(man.to_json())
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary(man, n_frames, timing, console)
    return out


def measure(renditions: list[Rendition], info, grid, n_frames: int, pick, tmp: Path, console) -> None:
    """Decode every rendition back, reconstruct it with ``pick(kind) -> (name, upscaler)`` and set its mean
    PSNR-Y against the source (decoded again alongside, frame by frame: memory stays at one frame per stream,
    any length)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task("measuring", total=n_frames * len(renditions))
        ups: dict = {}
        for rend in renditions:
            if rend.kind != "plain" and rend.kind not in ups:
                ups[rend.kind] = pick(rend.kind)
            up_name, upscaler = ups.get(rend.kind, ("none", None))
            prog.update(task, description=f"measuring {rend.name} ({up_name})")
            src = frames(info, n_frames)
            vals = []
            for seg in rend.segments:
                if rend.kind == "plain":
                    recs = (lrf.rgb[: grid.height, : grid.width]
                            for lrf in decode_lr(tmp / seg.file, info.matrix, info.full_range))
                else:
                    recs = (_reconstruct(upscaler, lr, grid)
                            for lr in unpack_segment(tmp / seg.file, rend, grid, info.matrix, info.full_range))
                for rec in recs:
                    vals.append(psnr_y(next(src).rgb, rec, crop=0))
                    prog.advance(task)
            rend.psnr_y = round(float(np.mean(vals)), 4)
            rend.psnr_y_upscaler = up_name if rend.kind != "plain" else "none"
            rend.weights = weights_ref(up_name) if rend.kind != "plain" else None


def _reconstruct(upscaler, lr, grid) -> np.ndarray:
    with torch.no_grad():
        hr = upscaler(lr)[..., : grid.height, : grid.width]
    return to_uint8(hr.float().cpu())


def weights_ref(upscaler: str | None) -> dict | None:
    if upscaler in (None, "bicubic"):
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
    from rich.table import Table

    t = Table(title=f"{n_frames} frames, {man.source['width']}x{man.source['height']}")
    for c in ("rendition", "LR picture", "kbps", "PSNR-Y", "x" + " / x".join(map(str, man.scales)) + " share"):
        t.add_column(c)
    for r in man.renditions:
        t.add_row(r.name, f"{r.lr_width}x{r.lr_height}", f"{r.bitrate_kbps:.0f}",
                  f"{r.psnr_y:.2f} ({r.psnr_y_upscaler})" if r.psnr_y is not None else "-",
                  " / ".join(f"{r.share.get(str(k), 0):.2f}" for k in man.scales))
    console.print(t)
    console.print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    console = Console(stderr=True, emoji=False)

    def go() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = run(args, console)
        console.print(f"wrote {out}")
        return 0

    return run_cli("bbmr-package", go)


if __name__ == "__main__":
    sys.exit(main())
