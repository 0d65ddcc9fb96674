"""``package(config, ladder) -> Manifest``: the packager's entry point. A ladder is either the rungs themselves or
an :class:`~packager.config.AutoLadder`, searched on a sample of the title first (:mod:`packager.ladder`, which
measures candidates with the same pipeline); the rungs are then packaged by :mod:`packager.pipeline`."""

from __future__ import annotations

from bbmr_stream.manifest import Manifest
from bbmr_stream.progress import Progress
from packager.config import AutoLadder, Ladder, PackageConfig
from packager.ladder import auto_ladder
from packager.pipeline import prepare, write_rungs


def package(config: PackageConfig, ladder: Ladder, progress: Progress | None = None) -> Manifest:
    """Package ``config.input`` into the stream directory ``config.out`` and return the manifest written there.
    Bad input raises :class:`~bbmr_stream.errors.InputError` before any output exists; nothing is printed
    (notes, tables and progress bars go to ``progress``)."""
    progress = progress or Progress()
    if isinstance(ladder, AutoLadder):
        ladder.check()
    out, info = prepare(config, progress)
    specs = auto_ladder(config, ladder, info, progress) if isinstance(ladder, AutoLadder) else ladder
    return write_rungs(config, specs, info, out, progress)
