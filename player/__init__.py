"""The BBMR player as a library: ``play(PlayConfig(stream, ...), progress) -> Report``.

``from player import play, PlayConfig, Report``; the names load their modules on first use (importing
``player.display`` or ``player.output`` alone does not load the pipeline, torch or PyAV).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from player.config import PlayConfig
    from player.report import Report
    from player.session import play

__all__ = ["PlayConfig", "Report", "play"]

_WHERE = {"PlayConfig": "player.config", "Report": "player.report", "play": "player.session"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'player' has no attribute {name!r}")
