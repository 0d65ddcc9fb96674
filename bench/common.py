"""Shared bits of the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result, path: str | None) -> None:
    """Print the result as JSON and, with a path, write it there (parents created)."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
