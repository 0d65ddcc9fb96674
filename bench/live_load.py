"""Load and soak of the live sender on loopback (issue: live and served surfaces under load).

    python -m bench.live_load load --viewers 1,4,8 --seconds 30 --size 1280x720 --out bench/results/live
    python -m bench.live_load soak --minutes 30 --size 320x192 --out bench/results/live

The sender is ``bbmr-live send --sample`` in its own process (its CPU and RSS read from /proc); the viewers are
:class:`player.live_view.Viewer` s in this process without their display workers (receive, decode, match each
frame's map: what every viewer does before showing), so the figure is the sender's and the transport's cost.
CPU is in % of one core (200 % = both cores of this machine), RSS in MiB.

- ``load``: for each N, a fresh sender and N viewers; after a warm-up, per-viewer received fps, maps matched,
  the sender's sent fps, CPU and peak RSS over ``--seconds``.
- ``soak``: one sender for ``--minutes`` with ``--viewers`` steady viewers plus one that reconnects every
  ``--churn`` seconds (to surface per-peer leaks); every minute the sender's and this process's RSS and open
  file descriptors. Growth after the warm-up (the first ``--warmup`` minutes) is reported against a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import write_report

TICK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> dict:
    """CPU seconds (user + system), RSS (MiB), open file descriptors and threads of ``pid`` from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICK
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    return {"cpu_s": cpu, "rss_mib": round(rss, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(stat[17])}


class SenderProcess:
    """``bbmr-live send --sample`` in a subprocess on 127.0.0.1; ``frames_sent`` parsed from its status lines."""

    def __init__(self, size: str, fps: float, max_peers: int) -> None:
        cmd = [sys.executable, "-m", "player.live_cli", "send", "--sample", "--size", size, "--fps", str(fps),
               "--port", "0", "--device", "cpu", "--max-peers", str(max_peers), "--offer-rate", "6000"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        self.url: str | None = None
        self.frames_sent = 0
        self.status: list[tuple[float, int]] = []  # (monotonic time of the status line, frames sent)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(120) or self.url is None:
            self.close()
            raise RuntimeError("the sender did not start")

    def _read(self) -> None:
        for line in self.proc.stderr:
            if "sender on " in line:
                self.url = line.split("sender on ")[1].split()[0]
                self.ready.set()
            elif line.startswith("sent "):
                self.frames_sent = int(line.split()[1])
                self.status.append((time.monotonic(), self.frames_sent))
        self.ready.set()

    def sample(self) -> dict:
        return proc_sample(self.proc.pid)

    def fps(self, t0: float, t1: float) -> float:
        """Frames sent per second between the first and the last status line in [t0, t1] (monotonic s)."""
        inside = [s for s in self.status if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return float("nan")
        (ta, fa), (tb, fb) = inside[0], inside[-1]
        return (fb - fa) / (tb - ta)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def viewer(url: str, fps: float):
    from player.live_view import ViewConfig, Viewer

    return Viewer(ViewConfig(url, upscaler="bicubic", device="cpu", fps=fps))  # no start(): no display workers


async def _connect(url: str, fps: float):
    v = viewer(url, fps)
    await v.connect()
    return v


async def load_one(n: int, size: str, fps: float, warmup: float, seconds: float) -> dict:
    """N viewers on a fresh sender: received fps per viewer, maps matched, sender fps, CPU and RSS."""
    snd = SenderProcess(size, fps, max_peers=max(n, 1))
    viewers = []
    try:
        for _ in range(n):
            viewers.append(await _connect(snd.url, fps))
        await asyncio.sleep(warmup)
        r0 = [v.stats.received for v in viewers]
        m0 = [v.stats.maps_sei + v.stats.maps_channel for v in viewers]
        s0, me0, t0 = snd.sample(), proc_sample(os.getpid()), time.monotonic()
        peak = s0["rss_mib"]
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1.0)
            peak = max(peak, snd.sample()["rss_mib"])
        s1, me1, dt = snd.sample(), proc_sample(os.getpid()), time.monotonic() - t0
        rx = [(v.stats.received - a) / dt for v, a in zip(viewers, r0)]
        got = [v.stats.received - a for v, a in zip(viewers, r0)]
        matched = [v.stats.maps_sei + v.stats.maps_channel - b for v, b in zip(viewers, m0)]
        return {"viewers": n, "seconds": round(dt, 1), "sender_fps": round(snd.fps(t0, t0 + dt), 2),
                "fps_received_per_viewer": [round(x, 2) for x in rx],
                "fps_received_min": round(min(rx), 2), "fps_received_mean": round(sum(rx) / n, 2),
                "maps_matched": sum(matched), "frames_received": sum(got),
                "maps_invalid": sum(v.stats.maps_invalid for v in viewers),
                "sender_cpu_pct": round(100 * (s1["cpu_s"] - s0["cpu_s"]) / dt, 1),
                "sender_rss_mib_peak": peak, "sender_threads": s1["threads"],
                "viewers_cpu_pct": round(100 * (me1["cpu_s"] - me0["cpu_s"]) / dt, 1)}
    finally:
        for v in viewers:
            await v.close()
        snd.close()


def load(args) -> None:
    rows = []
    for n in (int(x) for x in args.viewers.split(",")):
        rows.append(asyncio.run(load_one(n, args.size, args.fps, args.warmup, args.seconds)))
        print(rows[-1], file=sys.stderr, flush=True)
    md = [f"Live sender load, loopback, `--sample --size {args.size} --fps {args.fps:g}`, bicubic scorer, H.264, "
          f"{args.seconds:g} s after {args.warmup:g} s warm-up; viewers receive + decode + match maps in one "
          "other process; CPU in % of one core (2 cores = 200 %).", "",
          "| viewers | sender fps | received fps per viewer (min / mean) | maps matched / frames | sender CPU % "
          "| sender RSS peak MiB | viewers' CPU % |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['viewers']} | {r['sender_fps']} | {r['fps_received_min']} / {r['fps_received_mean']} | "
                  f"{r['maps_matched']} / {r['frames_received']} | {r['sender_cpu_pct']} | "
                  f"{r['sender_rss_mib_peak']} | {r['viewers_cpu_pct']} |")
    command = "python -m bench.live_load " + " ".join(sys.argv[1:])
    write_report(args.out, "load", {"command": command, "rows": rows}, "\n".join(md) + "\n")


async def soak_run(args) -> dict:
    snd = SenderProcess(args.size, args.fps, max_peers=args.viewers + 2)
    steady = [await _connect(snd.url, args.fps) for _ in range(args.viewers)]
    churn = None
    samples, reconnects = [], 0
    t0 = last_churn = time.monotonic()
    next_sample = t0
    try:
        while time.monotonic() - t0 <= args.minutes * 60 + 1:
            now = time.monotonic()
            if now - last_churn >= args.churn:
                if churn is not None:
                    await churn.close()
                churn = await _connect(snd.url, args.fps)
                reconnects, last_churn = reconnects + 1, now
            if now >= next_sample:
                s, me = snd.sample(), proc_sample(os.getpid())
                samples.append({"minute": round((now - t0) / 60, 2), "sender_rss_mib": s["rss_mib"],
                                "sender_fds": s["fds"], "sender_threads": s["threads"],
                                "viewers_rss_mib": me["rss_mib"], "viewers_fds": me["fds"],
                                "frames_sent": snd.frames_sent, "received": [v.stats.received for v in steady]})
                print(samples[-1], file=sys.stderr, flush=True)
                next_sample += 60
            await asyncio.sleep(0.5)
    finally:
        for v in steady + ([churn] if churn else []):
            await v.close()
        snd.close()
    return {"samples": samples, "reconnects": reconnects}


def growth(samples: list[dict], key: str, warmup: float) -> float:
    """Largest value after the warm-up minus the first value after it."""
    after = [s[key] for s in samples if s["minute"] >= warmup]
    return round(max(after) - after[0], 1) if after else 0.0


def soak(args) -> None:
    res = asyncio.run(soak_run(args))
    s = res["samples"]
    bounds = {"sender_rss_mib": args.rss_bound, "viewers_rss_mib": args.rss_bound, "sender_fds": args.fd_bound,
              "viewers_fds": args.fd_bound}
    verdict = {k: {"growth": growth(s, k, args.warmup), "bound": b, "ok": growth(s, k, args.warmup) <= b}
               for k, b in bounds.items()}
    res.update(command="python -m bench.live_load " + " ".join(sys.argv[1:]), growth_after_warmup=verdict)
    md = [f"Live soak, loopback, `--sample --size {args.size} --fps {args.fps:g}`, {args.viewers} steady viewers + "
          f"one reconnecting every {args.churn:g} s ({res['reconnects']} connections), {args.minutes:g} min.", "",
          "| minute | sender RSS MiB | sender fds | sender threads | viewers' RSS MiB | viewers' fds | frames sent |",
          "|---|---|---|---|---|---|---|"]
    for x in s:
        md.append(f"| {x['minute']:.0f} | {x['sender_rss_mib']} | {x['sender_fds']} | {x['sender_threads']} | "
                  f"{x['viewers_rss_mib']} | {x['viewers_fds']} | {x['frames_sent']} |")
    md += ["", f"Growth after minute {args.warmup:g} (max - first): " + ", ".join(
        f"{k} {v['growth']} (bound {v['bound']}: {'ok' if v['ok'] else 'EXCEEDED'})" for k, v in verdict.items())]
    write_report(args.out, "soak", res, "\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--viewers", default="1,4,8")
    lo.add_argument("--seconds", type=float, default=30.0)
    lo.add_argument("--warmup", type=float, default=8.0)
    lo.add_argument("--size", default="1280x720")
    lo.add_argument("--fps", type=float, default=30.0)
    so = sub.add_parser("soak")
    so.add_argument("--minutes", type=float, default=30.0)
    so.add_argument("--warmup", type=float, default=5.0, help="minutes before growth is counted")
    so.add_argument("--viewers", type=int, default=2)
    so.add_argument("--churn", type=float, default=30.0, help="seconds between reconnects of the churn viewer")
    so.add_argument("--size", default="320x192")
    so.add_argument("--fps", type=float, default=15.0)
    so.add_argument("--rss-bound", type=float, default=32.0, help="MiB of RSS growth allowed after the warm-up")
    so.add_argument("--fd-bound", type=float, default=8.0, help="open fds of growth allowed after the warm-up")
    for p in (lo, so):
        p.add_argument("--out", default="bench/results/live")
    args = ap.parse_args(argv)
    (load if args.cmd == "load" else soak)(args)


if __name__ == "__main__":
    main()
