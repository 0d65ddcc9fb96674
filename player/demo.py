"""The main job on the embedded default, start to end, in a few minutes on a 2-core CPU (``bbmr-demo``).

1. ``sample.mp4``: a pan over photos that ship with scikit-image (:mod:`bbmr_stream.sample`), or the user's clip.
2. :func:`packager.package` with the per-title ladder (``AutoLadder(fast=True)``): MPEG-TS HLS with
   ``master.m3u8`` and ``manifest.json``.
3. :func:`player.play` headless over a simulated slow link (1.3x the lowest rung's rate; the ABR rule takes the
   best measured rendition that fits), per-frame PSNR-Y/NIQE report (JSON, CSV, PNG plot) and the frames as shown.
4. ``side_by_side.png``: one frame's crop as the source, the ladder's lowest plain rung (bicubic up) and a BBMR
   rung at the nearest rate (JointSR) show it (:mod:`packager.look`), captioned with kbps and PSNR-Y.

This is one of the player's two end-to-end tools that drive the packager (the other is the live demo).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bbmr_stream.errors import InputError
from bbmr_stream.family import BBMR, parse_ladder, spec_of
from bbmr_stream.manifest import Manifest
from bbmr_stream.progress import Progress
from player.config import PlayConfig
from player.report import Report

BBMR_CRFS = (30, 35, 40)  # BBMR candidates for the side-by-side; the one nearest the plain rung's rate is shown


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes (``out``), what it packages (``clip``, or a generated ``size`` (w, h) pixels,
    ``seconds`` long sample) and on which device."""

    out: str = "bbmr-demo"
    clip: str | None = None
    size: tuple[int, int] = (960, 540)
    seconds: float = 4.0
    device: str = "auto"
    workers: int = 0  # packaging processes (0: one per CPU core; packager.runner.RunConfig)


@dataclass
class DemoResult:
    """What the demo made: the files, the manifest, the play report, the side-by-side captions and the
    seconds per step."""

    clip: Path
    stream: Path
    manifest: Manifest
    report: Report
    report_file: Path
    played: Path
    panel: Path
    labels: list[str]
    times: dict[str, float] = field(default_factory=dict)


def write_trace(path: Path, man: Manifest) -> Path:
    """A slow network: 1.3x the lowest rung's rate for the whole clip (the ABR rule takes the best measured
    rendition that fits: on the demo's ladder a client-SR rung)."""
    rate = min(r.bitrate_kbps for r in man.renditions)
    mbps = 1.3 * rate / 1000
    path.write_text(f"# time_s throughput_Mbps (bbmr-demo: a slow link)\n0 {mbps:.4f}\n3600 {mbps:.4f}\n")
    return path


def side_by_side(clip: Path, man: Manifest, out: Path, device: str, progress: Progress) -> tuple[Path, list[str]]:
    """source | lowest plain rung (bicubic) | BBMR at the nearest rate (of :data:`BBMR_CRFS`)."""
    from bbmr_stream.family import FAMILIES
    from packager.look import look_tiles, save_panel, tile_label

    shown = [r for r in man.renditions if not FAMILIES[r.kind].client_sr]
    plain = min(shown, key=lambda r: r.bitrate_kbps, default=None)
    if plain is None:
        raise InputError("the ladder has no plain rung to compare with")
    n = min(man.source["frames"], 12)  # one allocation (realloc gop) shared by the BBMR rungs
    specs = [spec_of(plain)] + parse_ladder(",".join(f"{BBMR.name}:{c}" for c in BBMR_CRFS))
    src, rungs = look_tiles(str(clip), specs, n, n // 2, "", "light", device, progress, realloc="gop")
    p = next(r for r in rungs if r[0].name == plain.name)
    b = min((r for r in rungs if r[0].kind == BBMR.name), key=lambda r: abs(r[0].bitrate_kbps - p[0].bitrate_kbps))
    tiles = [src, (tile_label(*p[:3]), p[3]), (tile_label(*b[:3]), b[3])]
    return save_panel(tiles, 2, out), [label.replace("\n", ": ") for label, _ in tiles]


def run_demo(config: DemoConfig, progress: Progress | None = None, on_step: Callable[[str], None] | None = None,
             on_packaged: Callable[[Manifest], None] | None = None,
             on_played: Callable[[Report], None] | None = None) -> DemoResult:
    """Sample (or clip) -> package -> play over a slow link -> side by side; ``on_step`` gets one line per step,
    ``on_packaged`` the stream's manifest and ``on_played`` the play report as each step ends (what the CLI
    prints), ``progress`` the bars and notes of each step."""
    from bbmr_stream.sample import write_sample
    from packager import AutoLadder, PackageConfig, package
    from packager.runner import RunConfig
    from player.session import play

    progress = progress or Progress()
    step = on_step or (lambda text: None)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}
    if config.clip:
        clip = Path(config.clip)
    else:
        w, h = config.size
        step(f"[1/4] writing the sample clip ({w}x{h}, {config.seconds:g} s)")
        try:
            clip = write_sample(out / "sample.mp4", w, h, config.seconds)
        except ValueError as e:
            raise InputError(str(e)) from None
    times["sample"] = time.time() - t0
    stream = out / "stream"
    step(f"[2/4] bbmr-package {clip} --out {stream} --fast")
    t = time.time()
    man = package(PackageConfig(str(clip), str(stream), force=True, device=config.device), AutoLadder(fast=True),
                  progress, RunConfig(workers=config.workers))
    times["package"] = time.time() - t
    if on_packaged:
        on_packaged(man)
    trace = write_trace(out / "network.trace", man)
    report_file, played = out / "report.json", out / "played.mp4"
    step(f"[3/4] bbmr-play {stream} --headless --reference {clip} --trace {trace} --report {report_file} "
         f"--out {played}")
    t = time.time()
    report = play(PlayConfig(str(stream), headless=True, reference=str(clip), trace=str(trace),
                             report=str(report_file), out=str(played), niqe_every=8, device=config.device), progress)
    times["play"] = time.time() - t
    if on_played:
        on_played(report)
    step("[4/4] side by side at equal rate: source | plain rung, bicubic | BBMR, JointSR")
    t = time.time()
    panel, labels = side_by_side(clip, man, out / "side_by_side.png", config.device, progress)
    times["side_by_side"] = time.time() - t
    return DemoResult(clip, stream, man, report, report_file, played, panel, labels, times)
