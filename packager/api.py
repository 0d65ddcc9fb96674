"""``package(config, ladder) -> Manifest``: the packager's entry point. A ladder is either the rungs themselves or
an :class:`~packager.config.AutoLadder`, searched on a sample of the title first (:mod:`packager.ladder`, which
measures candidates with the same pipeline); the rungs are then packaged by :mod:`packager.pipeline`."""

from __future__ import annotations

from bbmr_stream.errors import InputError
from bbmr_stream.manifest import Manifest
from bbmr_stream.progress import Progress
from packager.config import AutoLadder, Ladder, PackageConfig
from packager.ladder import HULL_RATIO, auto_points
from packager.pipeline import disk_full_guard, prepare, write_rungs
from packager.runner import RunConfig, using
from packager.titled import drop_useless_models, select_titled, title_candidates


def package(config: PackageConfig, ladder: Ladder, progress: Progress | None = None,
            run: RunConfig | None = None) -> Manifest:
    """Package ``config.input`` into the stream directory ``config.out`` and return the manifest written there.
    Bad input raises :class:`~bbmr_stream.errors.InputError` before any output exists; a full disk raises
    :class:`~bbmr_stream.errors.DiskFullError` after removing what was written (a previous stream at
    ``config.out`` is unchanged); nothing is printed (notes, tables and progress bars go to ``progress``).
    ``run``: where the work runs (:class:`~packager.runner.RunConfig`: local worker processes or a Ray cluster;
    None: this process): the stream is the same wherever it runs, only the manifest's ``conventions.made`` and
    timings say how it was made."""
    if run is not None:
        run.check()
    with disk_full_guard(config), using(run):
        return _package(config, ladder, progress or Progress())


def _package(config: PackageConfig, ladder: Ladder, progress: Progress) -> Manifest:
    if isinstance(ladder, AutoLadder):
        ladder.check()
    given = () if isinstance(ladder, AutoLadder) else tuple(ladder)
    sr = [s.text for s in given if s.family != "plain"]
    if config.ranges == "hdr-only" and sr:
        raise InputError(f"--hdr-only: the HDR rungs are plain (the SR models are SDR-only): {', '.join(sr)} "
                         f"cannot be HDR rungs (drop them, or leave out --hdr-only for an SDR ladder with them)")
    out, info = prepare(config, progress)
    if config.ranges == "hdr-only":  # 10-bit HDR rungs only: no 8-bit ladder to search (packager/deep.py)
        return write_rungs(config, given, info, out, progress)
    if not isinstance(ladder, AutoLadder):
        return write_rungs(config, ladder, info, out, progress, drop_useless_models if config.adapt else None)
    picked = auto_points(config, ladder, info, progress)
    specs = [p.spec for p in picked]
    if config.adapt is None or not config.measure:
        return write_rungs(config, specs, info, out, progress)
    # per-title models: plain-sr rungs beside the lower half of the ladder are adapted too, and the rungs are
    # chosen again on the whole title with every model's bytes in its rate (generic variants included)
    extra = title_candidates(specs, info.width, info.height, {p.name: p.kbps for p in picked})
    progress.note(f"--adapt: {len(extra)} plain-sr rung(s) adapted beside the ladder "
                  f"({', '.join(s.text for s in extra) or 'none'}); the rungs are chosen again with their models")
    return write_rungs(config, specs + extra, info, out, progress,
                       lambda rends, root: select_titled(rends, ladder.max_rungs, HULL_RATIO, root))
