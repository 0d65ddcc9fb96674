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



def write_report(out: Path | str, stem: str, result: dict, markdown: str) -> None:
    """``out/STEM.json`` and ``out/STEM.md`` (each written to a temp file, then renamed; ``out`` made if missing),
    the Markdown printed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{stem}.json", json.dumps(result, indent=1))
    write_text_atomic(out / f"{stem}.md", markdown)
    print(markdown)
