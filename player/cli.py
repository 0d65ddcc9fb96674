"""``bbmr-play stream/``: decode a BBMR stream, super-resolve it, show it in a window (player/display.py for
the pacing policy and keys) or play headless, write the HR frames (``--out``, ``--frames-dir``) and a
per-frame quality report (``--report``, ``--reference``). ``--trace`` simulates a network for the ABR rule.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from bbmr_stream.cli import run_cli

from bbmr_stream.device import pick_device
from bbmr_stream.imageio import write_image
from bbmr_stream.errors import InputError
from bbmr_stream.metrics import niqe, psnr_luma
from player.fetch import StreamSource
from player.output import VideoWriter
from player.playback import PlayStats, play
from player.report import Report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-play", description="Play a BBMR stream.")
    ap.add_argument("stream", help="stream directory (with manifest.json) or its http(s) URL")
    ap.add_argument("--rendition", help="rendition name (default: the highest-bitrate rendition; with --trace "
                    "the ABR rule switches, this pins it)")
    ap.add_argument("--upscaler", default="auto", help="auto (each rendition's measured upscaler) | jointsr | "
                    "omnisr | fast (FastSR: plain-sr renditions, ~10x faster than omnisr on a CPU) | bicubic")
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda (default %(default)s)")
    ap.add_argument("--backend", default=None,
                    help="SR inference on a CPU: auto (OpenVINO if installed, else ONNX Runtime, else torch) | torch | "
                         "openvino | onnxruntime; every exported graph is checked against eager fp32 before use "
                         "(models/backend.py; default $BBMR_BACKEND or auto)")
    ap.add_argument("--headless", action="store_true", help="no window (servers, batch reports)")
    ap.add_argument("--start", type=float, default=0.0, help="start at this time in seconds (default %(default)s)")
    ap.add_argument("--window-size", default="1280x720", help="largest window picture, WxH, frames fit inside (default %(default)s)")
    ap.add_argument("--linger", type=float, default=0.0, help="keep the window open this many seconds after the end (default %(default)s)")
    ap.add_argument("--out", help="write the HR frames to this video (MP4, H.264 4:2:0 at --out-crf, tagged with "
                    "the source's colour matrix and range: plays anywhere)")
    ap.add_argument("--out-crf", type=float, default=18.0,
                    help="x264 CRF of --out (default %(default)s, visually lossless); 0 = mathematically lossless "
                         "(qp 0, 4:4:4, ~100x larger, for analysis)")
    ap.add_argument("--frames-dir", help="write every HR frame as PNG here")
    ap.add_argument("--reference", help="source video: per-frame PSNR-Y against it")
    ap.add_argument("--niqe-every", type=int, default=1, help="NIQE on every Nth frame (default %(default)s; 0: off)")
    ap.add_argument("--compare", default="", help="comma list: bicubic (this rendition, bicubic reconstruction), "
                    "uniform (the uniform-x4 rendition nearest in bitrate, OmniSR-O, or bicubic without weights)")
    ap.add_argument("--report", help="per-frame report JSON (CSV and PNG plot beside it; its directory is made)")
    ap.add_argument("--trace", help="simulate the network from a Pensieve trace (time_s throughput_Mbps) and "
                    "switch renditions per segment with the ABR rule; the report gets the per-segment decisions")
    ap.add_argument("--max-frames", type=int, help="play at most this many frames (default: all)")
    ap.add_argument("--strict", action="store_true",
                    help="exit with code 3 when any frame was concealed (missing, truncated or corrupt segment, "
                         "missing or invalid scale map), after writing the report")
    return ap


def make_comparisons(text: str, man, rend, device) -> dict:
    """name -> (rendition, upscaler) reconstructed beside the main one, same frames."""
    from models.factory import make_upscaler

    out = {}
    for c in [c.strip() for c in text.split(",") if c.strip()]:
        if c == "bicubic":
            out["bicubic"] = (rend, make_upscaler("bicubic", man.scales, device))
        elif c == "uniform":
            uni = [r for r in man.renditions if r.kind == "uniform"]
            if not uni:
                warnings.warn("--compare uniform: the stream has no uniform rendition")
                continue
            u = min(uni, key=lambda r: abs(r.bitrate_kbps - rend.bitrate_kbps))
            try:
                out["uniform_omnisr"] = (u, make_upscaler("omnisr", man.scales, device))
            except InputError:
                out["uniform_bicubic"] = (u, make_upscaler("bicubic", man.scales, device))
        else:
            raise InputError(f"--compare takes bicubic and/or uniform, not {c!r}")
    return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--window-size must be WxH, got {text!r}") from None
    if w < 16 or h < 16:
        raise InputError("--window-size too small")
    return w, h


def abr_plan(man, trace_path: str, pinned_name: str | None):
    """Per-segment renditions from the ABR simulation over the trace (all renditions share segment bounds)."""
    from player.abr import Trace, simulate, summary as abr_sum

    rends = man.renditions
    n = len(rends[0].segments)
    if any(len(r.segments) != n for r in rends):
        raise InputError("renditions have different segment counts: cannot switch between them")
    pinned = next(i for i, r in enumerate(rends) if r.name == pinned_name) if pinned_name else None
    dec = simulate([[s.bytes * 8 for s in r.segments] for r in rends], [s.duration_s for s in rends[0].segments],
                   [r.bitrate_kbps for r in rends], Trace.load(trace_path), pinned=pinned,
                   quality=[r.psnr_y for r in rends])
    out = abr_sum(dec)
    for d in out["segments"]:
        d["rendition"] = rends[d["rendition"]].name
    return [rends[d.rendition] for d in dec], out


class Upscalers:
    """The upscaler of each rendition, made once per name: ``auto`` plays a rendition with the upscaler it was
    measured with (manifest), plain renditions with bicubic (a display); a name forces one for all."""

    def __init__(self, name: str, scales, device) -> None:
        self.name, self.scales, self.device = name, scales, device
        self.made: dict[str, object] = {}

    def name_for(self, rend) -> str:
        from bbmr_stream.family import FAMILIES

        fam = FAMILIES.get(rend.kind)
        if fam is None:
            raise InputError(f"rendition {rend.name}: unknown family {rend.kind!r}")
        if self.name != "auto" and fam.name != "plain":
            if self.name not in fam.upscalers + ("bicubic",):
                raise InputError(f"--upscaler {self.name} cannot play {fam.name} renditions "
                                 f"({', '.join(fam.upscalers + ('bicubic',))})")
            return self.name
        return rend.psnr_y_upscaler if rend.psnr_y_upscaler not in (None, "none") else "bicubic"

    def __call__(self, rend):
        from models.factory import make_upscaler

        name = self.name_for(rend)
        # per-scale models (omnisr, fast) load the rendition's scales only: a plain-sr x4 rung needs one model
        scales = tuple(rend.scales) if name in ("omnisr", "fast") else tuple(self.scales)
        if (name, scales) not in self.made:
            self.made[name, scales] = make_upscaler(name, scales, self.device)
            _check_weights(name, rend)
        return self.made[name, scales]


def _check_weights(name: str, rend) -> None:
    if rend.weights and name != "bicubic":
        from models.registry import load_registry

        reg = load_registry()
        for wid, sha in rend.weights.items():
            have = reg.get(wid)
            if have is None or have.sha256 != sha:
                warnings.warn(f"the stream was measured with weights {wid} {sha[:12]}..., this player has "
                              f"{have.sha256[:12] + '...' if have else 'none'}: quality may differ from the manifest")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(emoji=False)  # results on stdout; warnings and errors on stderr
    src = StreamSource(args.stream)
    try:
        return _run(args, src, console)
    finally:
        src.close()


def pick_plan(args: argparse.Namespace, man):
    """The rendition shown (``--rendition``, else the top of the ladder) and the per-segment plan (one
    rendition, or the ABR decisions over ``--trace``)."""
    if args.rendition:
        cand = [r for r in man.renditions if r.name == args.rendition]
        if not cand:
            raise InputError(f"no rendition {args.rendition!r} (have: {', '.join(r.name for r in man.renditions)})")
        rend = cand[0]
    else:
        rend = max(man.renditions, key=lambda r: r.bitrate_kbps)
    if args.trace:
        plan, abr_summary = abr_plan(man, args.trace, args.rendition)
        return rend, plan, abr_summary
    return rend, rend, None


def start_frame(args: argparse.Namespace, man) -> int:
    fps = man.source["fps"][0] / man.source["fps"][1]
    start = max(0, int(round(args.start * fps)))
    if start >= man.source["frames"]:
        raise InputError(f"--start {args.start} s is past the end ({man.source['frames'] / fps:.2f} s)")
    return start


def open_reference(path: str | None, start: int, man=None):
    """Frames of the ``--reference`` source from ``start`` on (None without one); it must have the stream's
    source size."""
    if not path:
        return None
    from bbmr_stream.decode import frames, probe

    info = probe(path)
    if man is not None and (info.width, info.height) != (man.source["width"], man.source["height"]):
        raise InputError(f"--reference {path} is {info.width}x{info.height}, the stream's source is "
                         f"{man.source['width']}x{man.source['height']}")
    it = frames(info)
    for _ in range(start):
        next(it, None)
    return it


@dataclass
class Measure:
    """The per-frame measurement stage: PSNR-Y against the reference, NIQE, the comparison columns."""

    matrix: str
    full_range: bool
    niqe_every: int
    secs: dict

    def _timed(self, key: str, fn):
        t = time.time()
        out = fn()
        self.secs[key] += time.time() - t
        return out

    def __call__(self, fr, ref_frames, others: dict) -> dict:
        m: dict = {"concealed": int(fr.concealed), "rendition": fr.rendition, "family": fr.family}
        if fr.cause:
            m["cause"] = fr.cause
        if fr.scalemap is not None:
            m.update({f"scale_x{k}_share": v for k, v in fr.scalemap.share().items()})
        ref = self._timed("reference_decode", lambda: next(ref_frames, None) if ref_frames is not None else None)
        if ref is not None:
            # a concealed frame's PSNR is kept apart: the psnr_y mean is over frames shown as coded
            key = "psnr_y_concealed" if fr.concealed else "psnr_y"
            m[key] = self._timed("psnr", lambda: psnr_luma(ref.y, fr.rgb, self.matrix, self.full_range))
        compared = self._timed("compare", lambda: {name: next(it) for name, it in others.items()})
        if ref is not None:
            m.update({f"{name}_psnr_y": psnr_luma(ref.y, b.rgb, self.matrix, self.full_range)
                      for name, b in compared.items()})
        if self.niqe_every and fr.index % self.niqe_every == 0 and min(fr.rgb.shape[:2]) >= 96:
            self._timed("niqe", lambda: m.update({"niqe": niqe(fr.rgb)} | {
                f"{name}_niqe": niqe(b.rgb) for name, b in compared.items()}))  # comparisons get NIQE too
        return m


class Outputs:
    """The output stage: the video file (written to a temp name, renamed when playback ended well) and PNGs."""

    def __init__(self, args: argparse.Namespace, man, secs: dict) -> None:
        self.writer = VideoWriter(args.out, man.source["width"], man.source["height"], Fraction(*man.source["fps"]),
                                  args.out_crf, man.source["matrix"], bool(man.source["full_range"])) \
            if args.out else None
        self.frames_dir = Path(args.frames_dir) if args.frames_dir else None
        if self.frames_dir:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.secs = secs

    def write(self, fr) -> None:
        t = time.time()
        if self.writer:
            self.writer.write(fr.rgb)
        if self.frames_dir:
            write_image(self.frames_dir / f"frame_{fr.index:06d}.png", fr.rgb)
        self.secs["output"] += time.time() - t

    def close(self, ok: bool) -> None:
        if self.writer:
            self.writer.close(ok)


def show(args: argparse.Namespace, src: StreamSource, fps: float, block: int, produced, total: int) -> None:
    """The display stage: a window (paced) or headless (a progress bar on stderr)."""
    if args.headless:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("playing"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[fps]:.2f} fps"), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=False) as prog:
            task = prog.add_task("play", total=total, fps=0.0)
            t0 = time.time()
            for i, _ in enumerate(produced, 1):
                prog.update(task, advance=1, fps=i / max(time.time() - t0, 1e-9))
        return
    from player.display import Shown, Window

    win = Window(f"bbmr-play {src.name}", fps, parse_size(args.window_size), linger_s=args.linger)
    win.run((Shown(fr.rgb, fr.scalemap, fr.rendition, m.get("psnr_y"), fr.index) for fr, m in produced), block)


def prepare_outputs(args: argparse.Namespace) -> None:
    """Make the directories of --report/--out/--frames-dir before playback: a bad path fails in a second,
    not after the whole play."""
    from bbmr_stream.imageio import prepare_output_file

    for opt, path in (("--report", args.report), ("--out", args.out)):
        if path:
            prepare_output_file(opt, path)


def played_stream(report: Report, man, rend, upscalers: "Upscalers") -> dict:
    """What was actually played: the single rendition, or (ABR) every rendition with its frame count and the
    frame-weighted mean bitrate."""
    from collections import Counter

    counts = Counter(f["metrics"]["rendition"] for f in report.frames)
    if set(counts) == {rend.name}:
        return {}
    by = {r.name: r for r in man.renditions}
    n = sum(counts.values())
    return {"rendition": "abr: " + ", ".join(counts), "renditions_played": dict(counts),
            "bitrate_kbps": sum(by[k].bitrate_kbps * c for k, c in counts.items()) / n,
            "upscaler": ", ".join(sorted({upscalers.name_for(by[k]) for k in counts})), "manifest_psnr_y": None}


def _run(args: argparse.Namespace, src: StreamSource, console) -> int:
    """fetch (src) -> plan -> demux/unpack/upscale (player.playback) -> measure -> output -> show -> report."""
    from bbmr_stream.resize import RESIZE_CONVENTION

    man = src.manifest
    if man.resize != RESIZE_CONVENTION:
        warnings.warn(f"stream resize convention {man.resize!r} differs from this player's {RESIZE_CONVENTION!r}")
    rend, plan, abr_summary = pick_plan(args, man)
    device = pick_device(args.device)
    from models.factory import use_backend

    use_backend(args.backend)
    upscalers = Upscalers(args.upscaler, man.scales, device)
    upscalers(rend)  # made now: a missing model is an error before playback starts
    comparisons = make_comparisons(args.compare, man, rend, device)
    fps = man.source["fps"][0] / man.source["fps"][1]
    start = start_frame(args, man)
    ref_frames = open_reference(args.reference, start, man)
    if not args.headless and not os.environ.get("DISPLAY"):
        raise InputError("no display (DISPLAY is not set): use --headless")
    prepare_outputs(args)
    report = Report(fps, {"rendition": rend.name, "bitrate_kbps": rend.bitrate_kbps,
                          "upscaler": upscalers.name_for(rend), "layout": rend.layout, "manifest_psnr_y": rend.psnr_y})
    stats = PlayStats()
    stats.seconds.update({"reference_decode": 0.0, "psnr": 0.0, "niqe": 0.0, "compare": 0.0, "output": 0.0})
    measure = Measure(man.source["matrix"], bool(man.source["full_range"]), args.niqe_every, stats.seconds)
    outputs = Outputs(args, man, stats.seconds)
    compare_stats = {name: PlayStats() for name in comparisons}
    t0 = time.time()

    from player.threads import ahead

    def produce():
        others = {name: play(src.path, man, r, lambda _r, u=up: u, compare_stats[name], args.max_frames, start)
                  for name, (r, up) in comparisons.items()}
        # decode -> SR -> measure/output/display, each stage on its own thread (player.threads)
        for fr in ahead(play(src.path, man, plan, upscalers, stats, args.max_frames, start), 4, "sr"):
            m = measure(fr, ref_frames, others)
            report.add(fr.index, m)
            outputs.write(fr)
            yield fr, m

    ok = False
    try:
        total = man.source["frames"] - start
        show(args, src, fps, man.block, produce(), min(total, args.max_frames) if args.max_frames else total)
        ok = True
    finally:
        outputs.close(ok)
    if not report.frames:
        raise InputError(f"{src.where}: no frames played")
    finish_report(report, stats, comparisons, time.time() - t0, abr_summary, compare_stats)
    report.stream.update(played_stream(report, man, rend, upscalers))
    backends = sorted({u.backend for u in upscalers.made.values() if getattr(u, "backend", None)})
    if backends:
        report.stream["backend"] = ", ".join(backends)  # the SR inference variants used (models/backend.py)
    if args.report:
        report.write(args.report)
    summary(report, console)
    if args.report:
        p = Path(args.report)
        console.print(f"wrote {p}, {p.with_suffix('.csv')}, {p.with_suffix('.png')}")
    if args.out:
        console.print(f"wrote {args.out}")
    concealed = stats.concealed_frames + sum(st.concealed_frames for st in compare_stats.values())
    if args.strict and concealed:
        print(f"bbmr-play: --strict: {concealed} frame(s) concealed ({stats.by_cause})", file=sys.stderr)
        return 3
    return 0


def finish_report(report: Report, stats: PlayStats, comparisons: dict, total_s: float, abr_summary,
                  compare_stats: dict | None = None) -> None:
    n = len(report.frames)
    timing = {k: round(v, 3) for k, v in stats.seconds.items() if v >= 5e-4} | {"total": round(total_s, 3)}
    report.extra = {"compare": {name: {"rendition": r.name, "bitrate_kbps": r.bitrate_kbps, "upscaler": up.name}
                                for name, (r, up) in comparisons.items()},
                    "concealed_frames": stats.concealed_frames, "missing_segments": stats.missing_segments,
                    "frames_without_map": stats.frames_without_map, "concealed_by_cause": stats.by_cause,
                    "segment_errors": stats.segment_errors,
                    "compare_concealed": {name: {"concealed_frames": st.concealed_frames,
                                                 "concealed_by_cause": st.by_cause,
                                                 "segment_errors": st.segment_errors}
                                          for name, st in (compare_stats or {}).items()},
                    "timing_s": timing,
                    "stage_fps": {k: round(n / v, 3) for k, v in timing.items() if v > 0}}
    if abr_summary is not None:
        report.extra["abr"] = abr_summary


def summary(report: Report, console) -> None:
    from rich.table import Table

    d = report.to_dict()
    backend = f" on {d['stream']['backend']}" if d["stream"].get("backend") else ""
    t = Table(title=f"{len(d['frames'])} frames, {d['stream']['rendition']} ({d['stream']['bitrate_kbps']:.0f} kbps, "
                    f"{d['stream']['upscaler']}{backend})")
    for c in ("metric", "mean", "min", "max"):
        t.add_column(c)
    for k, v in d["pooled_metrics"].items():
        if v and k != "concealed":
            t.add_row(k, f"{v['mean']:.4f}", f"{v['min']:.4f}", f"{v['max']:.4f}")
    if t.row_count:
        console.print(t)
    else:
        console.print(f"{len(d['frames'])} frames played (no metrics: --reference gives PSNR-Y, --niqe-every NIQE)")
    causes = ", ".join(f"{k} {v}" for k, v in d.get("concealed_by_cause", {}).items() if v)
    console.print(f"concealed frames: {d['concealed_frames']}" + (f" ({causes}; excluded from the PSNR-Y mean)"
                                                                    if causes else ""))
    st = Table(title="time per stage (stages overlap on threads; total = wall)")
    for c in ("stage", "seconds", "frames/s"):
        st.add_column(c)
    for k, v in d["timing_s"].items():
        st.add_row(k, f"{v:.2f}", f"{d['stage_fps'].get(k, 0):.2f}")
    console.print(st)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return run_cli("bbmr-play", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
