"""Shared bits of the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path

from bbmr_stream.imageio import write_text_atomic


def emit(result, path: str | None) -> None:
    """Print the result as JSON and, with a path, write it there (parents created; temp file, then rename)."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)


def load_stream(path: str):
    """The stream directory's manifest; a bad or missing one is a one-line InputError."""
    from bbmr_stream.errors import InputError
    from bbmr_stream.manifest import load
    from bbmr_stream.errors import ManifestError

    try:
        return load(path)
    except ManifestError as e:
        raise InputError(str(e)) from None
