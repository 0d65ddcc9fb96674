"""The playback pipeline, :func:`play`: fetch (player.fetch) -> plan (player.plan) -> demux/unpack/upscale
(player.playback) -> measure (player.measure) -> output (player.output) -> show (a window, player.display, or
headless on the progress object) -> the report (player.report), returned and optionally written.

Nothing here prints: results are in the returned :class:`~player.report.Report`, progress goes through the
:class:`~bbmr_stream.progress.Progress` passed in, media problems are ``warnings.warn``\\ ed and counted.
"""

from __future__ import annotations

import os
import time
import warnings

from bbmr_stream.device import pick_device
from bbmr_stream.errors import InputError, disk_full
from bbmr_stream.imageio import Staged
from bbmr_stream.progress import Progress
from bbmr_stream.resize import RESIZE_CONVENTION
from player.config import PlayConfig
from player.fetch import StreamSource
from player.measure import Measure, open_reference
from player.output import Outputs, prepare_outputs, untouched
from player.plan import make_comparisons, pick_plan, start_frame
from player.playback import PlayStats, hr_frames
from player.report import Report
from player.threads import ahead
from player.upscalers import Upscalers


def play(config: PlayConfig, progress: Progress | None = None) -> Report:
    """Play the stream of ``config`` (see :class:`PlayConfig`) and return its report; the files it asks for
    (``out``, ``frames_dir``, ``report``) are written. Bad input raises InputError; concealed media errors are
    counted in the report (``concealed_frames``, ``concealed_by_cause``, ``segment_errors``). ``out`` and
    ``report`` are renamed into place together at the end; a full disk raises
    :class:`~bbmr_stream.errors.DiskFullError` and leaves the previous ones unchanged."""
    config.check()
    src = StreamSource(config.stream)
    try:
        return _play(config, src, progress or Progress())
    finally:
        src.close()


def _show(config: PlayConfig, src: StreamSource, fps: float, block: int, produced, total: int,
          progress: Progress) -> None:
    """The display stage: a window (paced) or headless (a counted task on ``progress``)."""
    if config.headless:
        with progress.task("playing", total, rate=True) as task:
            for _ in produced:
                task.advance()
        return
    from player.display import Shown, Window

    win = Window(f"bbmr-play {src.name}", fps, config.window_size, linger_s=config.linger)
    win.run((Shown(fr.rgb, fr.scalemap, fr.rendition, m.get("psnr_y"), fr.index) for fr, m in produced), block)


def played_stream(report: Report, man, rend, upscalers: Upscalers) -> dict:
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


def hdr_display(rend) -> str:
    """How an HDR rendition is shown on this player's SDR output (bbmr_stream.colour.sdr_of_hdr)."""
    from bbmr_stream.tonemap import ToneMap

    return ToneMap(rend.video_range.lower()).name


def played_with(report: Report, man, rend, upscalers: Upscalers) -> None:
    """The models, fallbacks and SR backends the run played with, and what it played, into ``report``."""
    report.extra["model_fallbacks"] = upscalers.fallbacks
    if rend.video_range != "SDR":
        report.stream["display"] = f"{rend.video_range} HDR tone-mapped to SDR BT.709: {hdr_display(rend)}"
    report.stream["models"] = upscalers.models_used()
    report.stream.update(played_stream(report, man, rend, upscalers))
    backends = upscalers.backends()
    if backends:
        report.stream["backend"] = ", ".join(backends)  # the SR inference variants used (models/backend.py)


def finish_report(report: Report, stats: PlayStats, comparisons: dict, total_s: float, abr_summary,
                  compare_stats: dict | None = None) -> None:
    """Concealment counts, comparisons, per-stage timing and the ABR decisions into ``report.extra``."""
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


def start_segment(man, rend, start_s: float) -> int:
    """The segment of ``rend`` that holds the first frame played."""
    first = start_frame(man, start_s)
    return next((i for i, s in enumerate(rend.segments) if first < s.first_frame + s.frames), 0)


def _play(config: PlayConfig, src: StreamSource, progress: Progress) -> Report:
    man = src.manifest
    if man.resize != RESIZE_CONVENTION:
        warnings.warn(f"stream resize convention {man.resize!r} differs from this player's {RESIZE_CONVENTION!r}")
    device = pick_device(config.device)
    from models.factory import use_backend

    use_backend(config.backend)
    upscalers = Upscalers(config.upscaler, man.scales, device, fetch=src.path)
    rend, plan, abr_summary = pick_plan(man, config.rendition, config.trace, upscalers.model_ref)
    first = start_segment(man, rend, config.start)
    for r in {r.name: r for r in (plan if isinstance(plan, list) else [rend])}.values():
        if r.video_range != "SDR":
            progress.note(f"note: {r.name} is {r.video_range} HDR: shown tone-mapped to SDR BT.709 "
                          f"({hdr_display(r)})")
    # the first segment's upscaler made now: a missing generic model is an error before playback starts (a title
    # model that cannot be used falls back)
    upscalers(plan[first] if isinstance(plan, list) else rend, first)
    comparisons = make_comparisons(config.compare, man, rend, device)
    fps = man.source["fps"][0] / man.source["fps"][1]
    start = start_frame(man, config.start)
    ref_frames = open_reference(config.reference, start, man)
    if not config.headless and not os.environ.get("DISPLAY"):
        raise InputError("no display (DISPLAY is not set): use --headless")
    prepare_outputs(config.report, config.out)
    report = Report(fps, {"rendition": rend.name, "bitrate_kbps": rend.bitrate_kbps,
                          "upscaler": upscalers.name_for(rend), "layout": rend.layout, "manifest_psnr_y": rend.psnr_y})
    stats = PlayStats()
    stats.seconds.update({"reference_decode": 0.0, "psnr": 0.0, "niqe": 0.0, "compare": 0.0, "output": 0.0})
    measure = Measure(man.source["matrix"], bool(man.source["full_range"]), config.niqe_every, stats.seconds)
    outcome = untouched(config.out, config.report)  # what a full disk leaves
    outputs = Outputs(man, stats.seconds, config.out, config.out_crf, config.frames_dir, outcome)
    compare_stats = {name: PlayStats() for name in comparisons}
    max_frames = config.max_frames
    t0 = time.time()

    def produce():
        others = {name: hr_frames(src.path, man, r, lambda _r, _s=0, u=up: u, compare_stats[name], max_frames, start)
                  for name, (r, up) in comparisons.items()}
        # decode -> SR -> measure/output/display, each stage on its own thread (player.threads)
        for fr in ahead(hr_frames(src.path, man, plan, upscalers, stats, max_frames, start), 4, "sr"):
            m = measure(fr, ref_frames, others)
            report.add(fr.index, m)
            outputs.write(fr)
            yield fr, m

    # the video and the report are written in full under temporary names, then renamed together: a failure (a
    # full disk) or an interrupt leaves the previous files as they were
    with Staged() as staged:
        try:
            total = man.source["frames"] - start
            _show(config, src, fps, man.block, produce(), min(total, max_frames) if max_frames else total, progress)
            outputs.finish(staged)
        finally:
            outputs.close()
        if not report.frames:
            raise InputError(f"{src.where}: no frames played")
        finish_report(report, stats, comparisons, time.time() - t0, abr_summary, compare_stats)
        played_with(report, man, rend, upscalers)
        if config.report:
            with disk_full(config.report, outcome):
                report.write(config.report, staged)
        staged.commit()
    return report
