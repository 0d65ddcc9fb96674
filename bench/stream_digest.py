"""``python -m bench.stream_digest STREAM [--json out.json] [--against digest.json]``: sha256 of every file of a
stream directory, to show that a change of code leaves the bytes a client downloads unchanged.

``manifest.json`` is hashed twice: as written, and with ``conventions.timing_s`` removed (the seconds each stage
took differ from run to run; everything else in the manifest is a function of the input and the options).
``--against`` compares with a digest written before and exits 1 on any difference.
``bench/results/demo_stream_digest.json`` is the digest of ``make demo``'s stream (bbmr-demo/stream) made before
the library-API refactor; the refactored code reproduces it byte for byte on this machine
(``python -m bench.stream_digest bbmr-demo/stream --against bench/results/demo_stream_digest.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def digest(stream: Path) -> dict:
    files = {p.relative_to(stream).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(stream.rglob("*")) if p.is_file()}
    man = json.loads((stream / "manifest.json").read_text())
    man.get("conventions", {}).pop("timing_s", None)
    stable = hashlib.sha256(json.dumps(man, sort_keys=True).encode()).hexdigest()
    return {"files": files, "manifest_without_timing": stable}


def differences(old: dict, new: dict) -> list[str]:
    out = [f"{k}: {old['files'].get(k)} -> {new['files'].get(k)}"
           for k in sorted(set(old["files"]) | set(new["files"]))
           if k != "manifest.json" and old["files"].get(k) != new["files"].get(k)]
    if old["manifest_without_timing"] != new["manifest_without_timing"]:
        out.append("manifest.json (without timing_s) differs")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_digest", description=__doc__.split("\n\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--json", help="write the digest here")
    ap.add_argument("--against", help="a digest written before: exit 1 on any difference")
    a = ap.parse_args(argv)
    d = digest(Path(a.stream))
    print(json.dumps(d, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(d, indent=1) + "\n")
    if a.against:
        diff = differences(json.loads(Path(a.against).read_text()), d)
        print("\n".join(diff) if diff else f"identical to {a.against}", file=sys.stderr)
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
