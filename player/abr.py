"""ABR: pick a rendition per segment with a throughput + buffer rule (dash.js-like), and simulate a network
from a Pensieve-format trace (lines ``time_s throughput_Mbps``).

Rule (:class:`ThroughputBufferABR`): estimate the throughput as the harmonic mean of the last ``window``
segment downloads; among the renditions whose bitrate is <= ``safety`` (0.9, as dash.js) x estimate pick
the one of highest measured PSNR-Y (manifest; rungs of different families are not ordered by bitrate alone),
ties and unmeasured renditions by bitrate; while the buffer is below
``low_buffer_s`` never step up, and when it is below ``panic_buffer_s`` take the lowest rung. The first
segment uses the lowest rung (no estimate yet).

Simulation (:func:`simulate`): segments are downloaded one after another through the trace (looping it),
pausing while the buffer is above its target (12 s); the buffer drains in real time and fills by each
segment's duration; a download that outlasts the buffer
stalls playback (rebuffering). Per segment: rendition, bitrate, download time, rebuffer, buffer, and
QoE_lin = bitrate_Mbps - 4.3 * rebuffer_s - |bitrate_Mbps - previous bitrate_Mbps| (Pensieve's linear QoE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from bbmr_stream.errors import InputError

REBUF_PENALTY = 4.3


@dataclass
class Trace:
    times: list[float]  # seconds
    mbps: list[float]

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such trace file")
        t, m = [], []
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split()
            try:
                a, b = float(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                raise InputError(f"{p}:{n}: expected 'time_s throughput_Mbps'") from None
            if b < 0 or (t and a <= t[-1]):
                raise InputError(f"{p}:{n}: times must increase and throughput be >= 0")
            t.append(a)
            m.append(b)
        if len(t) < 2:
            raise InputError(f"{p}: a trace needs at least two lines")
        return cls(t, m)

    def download(self, start_s: float, megabits: float) -> float:
        """Seconds to download ``megabits`` starting at ``start_s`` (piecewise-constant rate, trace looped)."""
        period = self.times[-1] - self.times[0]
        if period <= 0 or max(self.mbps) <= 0:
            raise InputError("trace has no throughput")
        t = start_s
        left = megabits
        for _ in range(10_000_000):
            tt = self.times[0] + (t - self.times[0]) % period
            i = max(k for k in range(len(self.times) - 1) if self.times[k] <= tt)
            rate = self.mbps[i]
            seg_end = t + (self.times[i + 1] - tt)
            if rate > 0 and left <= rate * (seg_end - t):
                return t + left / rate - start_s
            left -= rate * (seg_end - t)
            t = seg_end
        raise InputError("download never finishes on this trace")


@dataclass
class ThroughputBufferABR:
    bitrates_kbps: list[float]  # per rendition, any order
    quality: list[float | None] | None = None  # measured PSNR-Y per rendition (manifest); None = by bitrate
    safety: float = 0.9
    window: int = 3
    low_buffer_s: float = 4.0
    panic_buffer_s: float = 1.0

    def __post_init__(self) -> None:
        self.history: list[float] = []  # measured Mbps per download

    def observe(self, megabits: float, seconds: float) -> None:
        self.history.append(megabits / max(seconds, 1e-6))

    def estimate_mbps(self) -> float | None:
        h = self.history[-self.window:]
        return len(h) / sum(1.0 / max(x, 1e-9) for x in h) if h else None

    def _value(self, i: int) -> tuple[float, float]:
        """Best measured quality first (families differ: a dearer rung may be worse), then bitrate."""
        q = self.quality[i] if self.quality else None
        return (q if q is not None else float("-inf"), self.bitrates_kbps[i])

    def choose(self, buffer_s: float, current: int | None) -> int:
        order = sorted(range(len(self.bitrates_kbps)), key=lambda i: self.bitrates_kbps[i])
        est = self.estimate_mbps()
        if est is None or buffer_s < self.panic_buffer_s:
            return order[0]
        ok = [i for i in order if self.bitrates_kbps[i] / 1000 <= self.safety * est]
        pick = max(ok, key=self._value) if ok else order[0]
        if current is not None and buffer_s < self.low_buffer_s and \
                self.bitrates_kbps[pick] > self.bitrates_kbps[current]:
            pick = current
        return pick


@dataclass
class SegmentDecision:
    segment: int
    rendition: int
    bitrate_kbps: float
    download_s: float
    rebuffer_s: float
    buffer_s: float
    qoe_lin: float


def simulate(segment_bits: list[list[float]], segment_s: list[float], bitrates_kbps: list[float], trace: Trace,
             abr: ThroughputBufferABR | None = None, pinned: int | None = None,
             buffer_target_s: float = 12.0, quality: list[float | None] | None = None,
             once: list[list[list[tuple[str, float]]]] | None = None) -> list[SegmentDecision]:
    """``segment_bits[r][s]``: size in bits of segment s of rendition r. Returns one decision per segment.
    Downloads pause while the buffer holds more than ``buffer_target_s`` seconds (playback drains it).
    ``once[r][s]``: the (file, bits) segment s of rendition r needs besides itself (its fMP4 init segment, the
    title model it is played with): a file not fetched yet is downloaded with the segment (its time counts in
    the download, once per file)."""
    abr = abr or ThroughputBufferABR(bitrates_kbps, quality)
    t = 0.0
    buffer = 0.0
    cur: int | None = None
    prev_mbps: float | None = None
    out = []
    fetched: set[str] = set()
    for s, dur in enumerate(segment_s):
        if buffer > buffer_target_s:  # wait for playback to drain the buffer down to the target
            t += buffer - buffer_target_s
            buffer = buffer_target_s
        r = pinned if pinned is not None else abr.choose(buffer, cur)
        mb = segment_bits[r][s] / 1e6
        for file, bits in once[r][s] if once else ():
            if file not in fetched:
                fetched.add(file)
                mb += bits / 1e6
        dl = trace.download(t, mb)
        abr.observe(mb, dl)
        rebuf = max(0.0, dl - buffer) if s > 0 else 0.0  # the first segment is start-up delay, not a stall
        buffer = max(0.0, buffer - dl) + dur
        t += dl
        br = bitrates_kbps[r] / 1000
        qoe = br - REBUF_PENALTY * rebuf - (abs(br - prev_mbps) if prev_mbps is not None else 0.0)
        out.append(SegmentDecision(s, r, bitrates_kbps[r], dl, rebuf, buffer, qoe))
        prev_mbps, cur = br, r
    return out


def summary(decisions: list[SegmentDecision]) -> dict:
    switches = sum(1 for a, b in zip(decisions, decisions[1:]) if a.rendition != b.rendition)
    return {"mean_bitrate_kbps": sum(d.bitrate_kbps for d in decisions) / len(decisions),
            "rebuffer_s": sum(d.rebuffer_s for d in decisions), "switches": switches,
            "qoe_lin": sum(d.qoe_lin for d in decisions), "segments": [asdict(d) for d in decisions]}
