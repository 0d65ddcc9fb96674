"""``bbmr-bench``: benchmarks that users re-run on their own clips (``bbmr-bench rd CLIP --out DIR``)."""

from __future__ import annotations

import sys

from bbmr_stream.cli import run_cli

COMMANDS = {"rd": "bench.rd:main_rd", "ladder-check": "bench.rd:main_check", "look": "bench.look:main_look",
            "rd-summary": "bench.rd:main_summary", "prefilter": "bench.prefilter:main",
            "bytes": "bench.bytes:main", "rd-compare": "bench.rd:main_compare",
            "rd-shortfall": "bench.rd:main_shortfall"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: bbmr-bench {{{','.join(COMMANDS)}}} ... (bbmr-bench rd --help)", file=sys.stderr)
        return 2
    mod, fn = COMMANDS[argv[0]].split(":")
    import importlib

    return run_cli(f"bbmr-bench {argv[0]}", lambda: getattr(importlib.import_module(mod), fn)(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
