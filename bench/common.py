"""Shared bits of the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result, path: str | None) -> None:
    """Print the result as JSON and, with a path, write it there (parents created; temp file, then rename)."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(p)
