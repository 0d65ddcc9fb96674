"""``bbmr-package --workers N`` against ``--workers 1`` in one run: wall time, peak memory, the same stream.

``python -m bench.workers CLIP --out B/workers [--workers 2] [PACKAGE ARGS...]``

Runs the packager on ``CLIP`` twice with the same options (default: the default ladder, ``--ladder auto``), one
process then ``--workers N`` processes, one after the other on an otherwise idle machine; records each run's wall
time, the peak RSS of its largest process and of all its processes together (sampled every 0.5 s from /proc), the
ladder it chose and its per-stage task seconds, checks that every file of the two streams is byte-identical
(the manifests apart from timing and ``conventions.made``), and writes ``OUT/workers.json`` and
``OUT/workers.md``. The ratio is wall(1) / wall(N).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def tree_rss(pid: int) -> tuple[int, int]:
    """(largest RSS, summed RSS) in bytes of ``pid`` and its descendants."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
            ppid = int(st.rsplit(")", 1)[1].split()[1])
            rss[int(d.name)] = int((d / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += kids.get(p, [])
    vals = [rss.get(p, 0) for p in seen]
    return max(vals, default=0), sum(vals)


def run(clip: str, out: Path, workers: int, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(Path(sys.executable).parent / "bbmr-package"), clip, "--out", str(out), "--workers", str(workers),
           *extra]
    log = out.parent / f"package_{workers}.log"  # a file, not a pipe: nothing can block on a full pipe
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
        peak, total = 0, 0
        while p.poll() is None:
            a, b = tree_rss(p.pid)
            peak, total = max(peak, a), max(total, b)
            time.sleep(0.5)
    wall = time.time() - t0
    if p.returncode:
        raise SystemExit(f"bbmr-package --workers {workers} failed ({p.returncode}): {log.read_text()[-2000:]}")
    m = json.loads((out / "manifest.json").read_text())
    return {"workers": workers, "wall_s": round(wall, 1), "peak_rss_gb": round(peak / 2**30, 2),
            "peak_rss_all_gb": round(total / 2**30, 2), "made": m["conventions"]["made"],
            "timing_s": m["conventions"]["timing_s"],
            "rungs": [[r["name"], round(r["bitrate_kbps"], 1), r["psnr_y"]] for r in m["renditions"]],
            "command": " ".join(cmd)}


def same_stream(a: Path, b: Path) -> tuple[bool, list[str]]:
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    if fa != fb:
        return False, sorted(set(fa) ^ set(fb))
    differ = [f for f in fa if f != "manifest.json" and (a / f).read_bytes() != (b / f).read_bytes()]

    def strip(p: Path) -> dict:
        m = json.loads(p.read_text())
        m["conventions"].pop("timing_s")
        m["conventions"].pop("made")
        return m

    if strip(a / "manifest.json") != strip(b / "manifest.json"):
        differ.append("manifest.json")
    return not differ, differ


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=2)
    a, extra = ap.parse_known_args(argv)  # the rest: bbmr-package options
    extra = [x for x in extra if x != "--"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    one = run(a.clip, out / "stream_1", 1, extra)
    print(f"--workers 1: {one['wall_s']} s", file=sys.stderr)
    many = run(a.clip, out / f"stream_{a.workers}", a.workers, extra)
    print(f"--workers {a.workers}: {many['wall_s']} s", file=sys.stderr)
    same, differ = same_stream(out / "stream_1", out / f"stream_{a.workers}")
    res = {"clip": a.clip, "options": extra, "cpus": os.cpu_count(), "runs": [one, many],
           "speedup": round(one["wall_s"] / many["wall_s"], 3), "identical": same, "differ": differ}
    (out / "workers.json").write_text(json.dumps(res, indent=1) + "\n")
    rows = ["| run | wall s | peak RSS, largest process / all GB | ladder shipped |", "|---|---|---|---|"]
    for r in (one, many):
        rows.append(f"| --workers {r['workers']} | {r['wall_s']} | {r['peak_rss_gb']} / {r['peak_rss_all_gb']} | "
                    f"{', '.join(n for n, _, _ in r['rungs'])} |")
    rows.append(f"\nspeedup {res['speedup']}x; streams byte-identical: {same}" + (f" (differ: {differ})" if differ
                                                                                   else ""))
    (out / "workers.md").write_text("\n".join(rows) + "\n")
    for r in (one, many):  # the streams are evidence while the run is read, not results to keep
        shutil.rmtree(out / f"stream_{r['workers']}", ignore_errors=True)
    print("\n".join(rows))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
