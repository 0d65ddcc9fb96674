"""Markdown table of bbmr-eval JSON reports: mean PSNR-Y per allocator and gains over uniform."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(paths: list[str]) -> str:
    rows = ["| report | mode | border | scorer | upscaler | " + "uniform | paper | optimal | optimal-uniform "
            "(min..max) |", "|---|---|---|---|---|---|---|---|---|"]
    for p in paths:
        r = json.loads(Path(p).read_text())
        m = r["mean"]["psnr_y"]
        gains = [im["psnr_y"]["optimal"] - im["psnr_y"]["uniform"] for im in r["images"]]
        rows.append(f"| {Path(p).name} | {r.get('downscale_mode')} | {r.get('border')} | {r['scorer']} | "
                    f"{r['upscaler']} | {m.get('uniform', float('nan')):.2f} | {m.get('paper', float('nan')):.2f} | "
                    f"{m.get('optimal', float('nan')):.2f} | {m['optimal'] - m['uniform']:+.2f} "
                    f"({min(gains):+.2f}..{max(gains):+.2f}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summarize(sys.argv[1:]))
