"""Coverage-guided fuzzing with atheris (optional: ``pip install atheris``), one target per run:
``python -m bench.fuzz_atheris scalemap|sei|manifest -atheris_runs=100000``. Same contract as bench/fuzz.py:
a result or the parser's own exception; anything else is reported by atheris with the input that caused it.
"""

from __future__ import annotations

import contextlib
import json
import sys

try:
    import atheris
except ImportError:  # optional: not a dependency of the project
    atheris = None

with atheris.instrument_imports() if atheris else contextlib.nullcontext():  # coverage feedback from the parsers
    from bbmr_stream.errors import ManifestError, ScaleMapError, SEIError
    from bbmr_stream.manifest import from_dict
    from bbmr_stream.scalemap import ScaleMap
    from bbmr_stream.sei import find_bbmr_payloads


def scalemap(data: bytes) -> None:
    try:
        ScaleMap.from_bytes(data)
    except ScaleMapError:
        pass


def sei(data: bytes) -> None:
    try:
        find_bbmr_payloads(data[1:], "hevc" if data[:1] == b"h" else "h264")
    except SEIError:
        pass


def manifest(data: bytes) -> None:
    try:
        d = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return
    try:
        from_dict(d)
    except ManifestError:
        pass


TARGETS = {"scalemap": scalemap, "sei": sei, "manifest": manifest}


def main() -> None:
    if atheris is None:
        sys.exit("atheris is not installed (pip install atheris)")
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m bench.fuzz_atheris {{{','.join(TARGETS)}}} [-atheris_runs=N]")
    fn = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
