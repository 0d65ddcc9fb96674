"""The per-title hull search (``--ladder auto``, the default): find the sizes and CRFs on the title's
rate-quality hull instead of measuring a fixed grid.

A *line* is one rung family at one geometry (plain at one coded size, plain-sr at one factor, uniform, bbmr):
along CRF its rate and PSNR-Y fall together, so each line is one rate-quality curve, and the hull of the title
is the upper envelope of the lines (per-title encoding's convex hull over resolution x QP). The search walks the
lines at integer CRFs in ``crf_range`` (18-51: 51 is H.264's largest QP), in rounds; each round's new points are
measured together (one packaging pass over the sample: :func:`packager.ladder.measure_candidates`).

1. **Probes**: plain lines at ``probe_crfs`` (the largest size also at ``top_crf``), client-SR lines at one
   CRF (``sr_probe_crfs``); an SR line whose points all lie more than ``drop_db`` under the plain curves is not
   searched further, one that comes near gets a second probe ``SR_STEP`` CRFs lower in rate.
2. **Targets**: rates from the ladder's bottom (``min_kbps``; default the smallest plain size at CRF 38, the
   old grid's bottom) to the top probe, ``step`` (1.5x) or more apart, at most ``max_rungs``.
3. **Per target**, until settled or out of rounds: the best measured point within a CRF step of the target
   (rates within ``NEAR``) is its rung once no other line may beat it there. A line *may beat* a quality at a
   rate when its concave upper bound says so (the lower of the secants of its measured neighbours, extended:
   a curve concave in log rate lies under them) and its interpolated curve comes within ``chord_db``; such a
   line is first measured at the CRF predicted for the target (log rate linear in CRF along its points). Then
   a plain rung's neighbouring CRFs are measured (a dense grid has them too) and so is every rival within
   ``margin_db``: a plain rival at the two CRFs bracketing the rung's rate (then it is known there as a dense
   grid knows it), a client-SR rival at the nearest CRF (a model run per measured frame is dear).

The rungs (one per target) go to :func:`packager.ladder.choose`, which keeps the rule of the ladder (rungs
apart in rate, saturation, the simplest family among equals). Units: rates in kbps as shipped (HLS segments),
PSNR-Y in dB (:data:`packager.pipeline.PSNR_CONVENTION`). Tests: tests/unit/test_hull.py (synthetic surfaces
with a known dense front); figures: docs/ladder.md.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from bbmr_stream.errors import InputError
from bbmr_stream.family import Plain, RungSpec

# CRF -> log-rate slope used before a line has two points: x264 halves the rate about every 6 CRF
LOG_RATE_PER_CRF = math.log(2) / 6
REACH = 1.0  # CRFs beyond the range a rate may be predicted at and still be tried (the rate model's error)


@dataclass(frozen=True)
class HullConfig:
    """How the hull is searched. CRFs are integers in ``crf_range``; ``margin_db`` is how close (dB) another
    line's interpolated curve may come to a pick before it is measured there; ``max_points`` bounds the
    measurements (probes included)."""

    crf_range: tuple[int, int] = (18, 51)
    probe_crfs: tuple[int, ...] = (26, 38)  # plain lines
    sr_probe_crfs: tuple[int, ...] = (32,)  # client-SR lines: one probe, a second where they come near plain
    drop_db: float = 0.5  # a client-SR line this far under the plain lines at all its points is dropped
    top_crf: int = 18
    min_kbps: float | None = None  # the ladder's bottom (None: the smallest plain size at probe_crfs[-1])
    max_rounds: int = 10
    max_points: int = 120
    margin_db: float = 0.1  # a rival whose upper bound comes this close to a rung is measured around it
    chord_db: float = 0.5  # ... if its interpolated curve comes this close too (a chord's error over ~6 CRFs)
    tol_db: float = 0.02  # a line's upper bound must beat a target's best point by this much to be tried
    step: float = 1.5  # the least ratio of neighbouring target rates (the ladder's rung ratio)
    max_rungs: int = 8  # targets: about this many, ``step`` or more apart (as packager.ladder.choose)
    rivals: int = 2  # at most this many other lines measured around a rung per round (the best by estimate)


@dataclass
class Line:
    """One rate-quality curve: a rung family at one geometry; ``points`` maps an integer CRF to its Point."""

    template: RungSpec  # the rung at CRF 0: family and geometry
    points: dict = field(default_factory=dict)
    dropped: bool = False  # a client-SR line far under the plain lines: not searched further

    @property
    def key(self) -> tuple:
        return line_key(self.template)

    def spec(self, crf: int) -> RungSpec:
        return dataclasses.replace(self.template, crf=float(crf))

    def curve(self) -> list:
        """Measured points by rate (ascending)."""
        return sorted(self.points.values(), key=lambda p: p.kbps)

    def estimate(self, kbps: float, crf_range: tuple[int, int]) -> float | None:
        """PSNR-Y of the line at ``kbps``: linear in log rate between measured points, the secant of the
        nearest two outside them (an upper bound of a concave curve); -inf where the line cannot get (above
        its rate at the lowest CRF, below its rate at the highest); None with fewer than two points."""
        c = self.curve()
        lo, hi = crf_range
        if c and kbps < c[0].kbps and (c[0].crf >= hi or self.predict_crf(kbps) > hi + REACH):
            return -math.inf
        if c and kbps > c[-1].kbps and (c[-1].crf <= lo or self.predict_crf(kbps) < lo - REACH):
            return -math.inf
        if len(c) < 2:
            return None
        x = math.log(kbps)
        if kbps <= c[0].kbps:
            u, v = c[0], c[1]
        elif kbps >= c[-1].kbps:
            u, v = c[-2], c[-1]
        else:
            i = next(i for i in range(1, len(c)) if c[i].kbps >= kbps)
            u, v = c[i - 1], c[i]
        xu, xv = math.log(u.kbps), math.log(v.kbps)
        if xv == xu:
            return max(u.psnr_y, v.psnr_y)
        return u.psnr_y + (x - xu) / (xv - xu) * (v.psnr_y - u.psnr_y)

    def upper(self, kbps: float, crf_range: tuple[int, int]) -> float | None:
        """An upper bound of the line's PSNR-Y at ``kbps`` if its curve is concave in log rate: the lower of
        the secants of the measured neighbours on either side, extended to ``kbps`` (and at most the next
        point up); -inf where the line cannot get; None with fewer than two points."""
        e = self.estimate(kbps, crf_range)
        if e is None or e == -math.inf:
            return e
        c = self.curve()
        x = math.log(kbps)
        xs = [math.log(p.kbps) for p in c]
        i = sum(1 for v in xs if v <= x)  # points at or below kbps: c[:i]
        bounds = []

        def secant(u, v):
            xu, xv = math.log(u.kbps), math.log(v.kbps)
            return None if xv == xu else u.psnr_y + (x - xu) / (xv - xu) * (v.psnr_y - u.psnr_y)

        if i >= 2:
            bounds.append(secant(c[i - 2], c[i - 1]))
        if i + 1 < len(c):
            bounds.append(secant(c[i], c[i + 1]))
        if i < len(c):
            bounds.append(c[i].psnr_y)  # the next point up (monotone)
        bounds = [b for b in bounds if b is not None]
        if not bounds:
            return e
        # never under what the line measured at a lower rate (noise can make a neighbour's secant dip)
        return max([min(bounds)] + [p.psnr_y for p in c[:i]])

    def bracket(self, kbps: float) -> tuple[int, int] | None:
        """The measured CRFs either side of ``kbps`` (the lower CRF, at the higher rate, first), None outside."""
        c = sorted(self.points.items())  # by CRF: rate falls
        for (c1, p1), (c2, p2) in zip(c, c[1:]):
            if p2.kbps <= kbps <= p1.kbps:
                return int(c1), int(c2)
        return None

    def crf_for(self, kbps: float, crf_range: tuple[int, int]) -> float:
        """The (fractional) CRF predicted to give ``kbps`` (:meth:`predict_crf`) clamped to ``crf_range``."""
        lo, hi = crf_range
        return min(hi, max(lo, self.predict_crf(kbps)))

    def predict_crf(self, kbps: float) -> float:
        """The (fractional) CRF predicted to give ``kbps``: log rate linear in CRF between measured points, the
        nearest secant (or :data:`LOG_RATE_PER_CRF`) outside them; outside any range (a line needs a CRF
        beyond the codec's range to get there when this is)."""
        c = sorted(self.points.items())
        if not c:
            return math.nan
        if len(c) == 1:
            (c0, p0), = c
            return c0 + math.log(p0.kbps / kbps) / LOG_RATE_PER_CRF
        br = self.bracket(kbps)
        if br:
            pairs = [(br[0], self.points[br[0]]), (br[1], self.points[br[1]])]
        elif kbps > c[0][1].kbps:
            pairs = c[:2]
        else:
            pairs = c[-2:]
        (c1, p1), (c2, p2) = pairs
        slope = (math.log(p1.kbps) - math.log(p2.kbps)) / (c2 - c1) if c2 != c1 else 0.0
        if slope <= 1e-6:
            slope = LOG_RATE_PER_CRF
        return c1 + (math.log(p1.kbps) - math.log(kbps)) / slope


def line_key(s: RungSpec) -> tuple:
    """The line a rung lies on: its family and geometry (and refinement), whatever its CRF."""
    return (s.family, s.size, s.factor, s.refine)


def lines_of(specs: list[RungSpec]) -> list[Line]:
    """One :class:`Line` per distinct family and geometry of ``specs`` (their CRFs are ignored)."""
    out: dict = {}
    for s in specs:
        t = dataclasses.replace(s, crf=0.0)
        out.setdefault(line_key(t), Line(t))
    return list(out.values())


@dataclass
class SearchResult:
    """What :func:`search` measured: every point, the lines, the rounds and the ladder's bottom rate."""

    points: list
    lines: list[Line]
    rounds: int
    min_kbps: float | None
    measured_per_round: list[int]
    targets: list[float] = field(default_factory=list)
    rungs: list = field(default_factory=list)  # per target, its rung: the best line's point near it
    open_targets: int = 0  # targets whose rung could not be certified within the rounds


Measure = Callable[[list[RungSpec]], list]  # specs -> their Points (packager.ladder.Point), same order


def search(lines: list[Line], measure: Measure, config: HullConfig,
           on_round: Callable[[int, int], None] | None = None) -> SearchResult:
    """Walk ``lines`` (module doc) with ``measure`` (one call per round) until every target rate has its
    certified rung or ``config.max_rounds`` / ``max_points`` are spent; ``on_round(round, points)`` after each
    round. Returns every point measured and the rung of each target."""
    lo, hi = config.crf_range
    by_key = {ln.key: ln for ln in lines}
    counts: list[int] = []

    def run(todo: set) -> None:
        room = config.max_points - sum(counts)
        items = sorted((k for k in todo if k[1] not in by_key[k[0]].points), key=repr)[:max(0, room)]
        if not items:
            counts.append(0)
            return
        specs = [by_key[key].spec(crf) for key, crf in items]
        for (key, crf), p in zip(items, measure(specs)):
            by_key[key].points[crf] = p
        counts.append(len(items))
        if on_round:
            on_round(len(counts), len(items))

    # 1. probes
    largest = max((ln for ln in lines if ln.template.family == Plain.name), key=_pixels, default=None)
    todo = {(ln.key, int(c)) for ln in lines
            for c in (config.probe_crfs if ln.template.family == Plain.name else config.sr_probe_crfs)
            if lo <= c <= hi}
    if largest is not None:
        todo.add((largest.key, config.top_crf))
    run(todo)
    min_kbps = config.min_kbps
    if min_kbps is None:
        smallest = min((ln for ln in lines if ln.template.family == Plain.name), key=_pixels, default=None)
        p = smallest.points.get(config.probe_crfs[-1]) if smallest else None
        min_kbps = p.kbps if p else None

    # 2. targets: rates ``step`` apart from the bottom to the top point; per target the best line is searched
    top = max((p.kbps for p in all_points(lines)), default=None)
    if min_kbps and top and min_kbps >= top:
        raise InputError(f"--auto-min-kbps {min_kbps:g}: the title's top rung costs {top:.0f} kbps")
    if min_kbps and top and top > min_kbps:
        step = max(config.step, (top / min_kbps) ** (1 / max(1, config.max_rungs - 1)))
        targets = rate_targets(min_kbps, top, step)
    else:
        step, targets = config.step, [top] if top else []
    state = {t: None for t in targets}  # target -> its certified point
    rounds = 1
    while rounds < config.max_rounds and sum(counts) < config.max_points:
        drop_beaten(lines, config)
        # a client-SR line that came near plain: its second probe, SR_STEP CRFs lower in rate
        want: set = {(ln.key, min(hi, max(ln.points) + SR_STEP)) for ln in lines
                     if len(ln.points) == 1 and not ln.dropped}
        for t in targets:
            if state[t] is None:
                got = _target(t, lines, config)
                if isinstance(got, set):
                    want |= got
                else:
                    state[t] = got
        want = {k for k in want if k[1] not in by_key[k[0]].points}
        if not want:
            break
        run(want)
        rounds += 1
    open_targets = 0
    for t in targets:
        if state[t] is None:
            got = _target(t, lines, config)
            if isinstance(got, set):  # out of rounds: the best point measured near the target
                open_targets += 1
                got = max(pareto_of(_near(t, lines)), key=lambda p: p.psnr_y, default=None)
            state[t] = got
    rungs = [p for p in state.values() if p is not None]
    return SearchResult(all_points(lines), lines, rounds, min_kbps, counts, targets, rungs, open_targets)


def pareto_of(points: list) -> list:
    """Points no other point beats at a lower or equal rate, by rate."""
    out: list = []
    for p in sorted(points, key=lambda p: (p.kbps, -p.psnr_y)):
        if not out or p.psnr_y > out[-1].psnr_y:
            out.append(p)
    return out


def drop_beaten(lines: list[Line], config: HullConfig) -> None:
    """Mark the client-SR lines whose every measured point lies more than ``config.drop_db`` under the plain
    lines' curves at its rate: they are not searched further (a model run per measured frame is dear)."""
    plain = [ln for ln in lines if ln.template.family == Plain.name]
    for ln in lines:
        if ln.template.family == Plain.name or ln.dropped or not ln.points:
            continue
        best = [max((e for pl in plain if (e := pl.estimate(p.kbps, config.crf_range)) is not None),
                    default=-math.inf) for p in ln.points.values()]
        if all(p.psnr_y < b - config.drop_db for p, b in zip(ln.points.values(), best)):
            ln.dropped = True


def rate_targets(lo: float, hi: float, step: float) -> list[float]:
    """Rates ``step`` apart from ``lo`` up to ``hi``; the last is ``hi`` (a last step shorter than
    sqrt(``step``) is merged into it), or ``lo`` alone when ``hi`` is within a step of it."""
    out = [lo]
    while out[-1] * step < hi * (1 - 1e-9):
        out.append(out[-1] * step)
    if hi > out[-1] * math.sqrt(step):
        out.append(hi)
    else:
        out[-1] = hi if len(out) > 1 else out[-1]
    return out


def _target(t: float, lines: list[Line], config: HullConfig):
    """The certified point of the target rate ``t``, or the set of (line key, CRF) to measure next: the best
    measured point within a CRF step of ``t`` once no line's curve promises more there, with its line's
    neighbouring CRFs and its rivals' brackets measured."""
    lo, hi = config.crf_range
    near = _near(t, lines)
    best = max(pareto_of(near), key=lambda p: p.psnr_y, default=None)
    floor = best.psnr_y + config.tol_db if best else -math.inf
    have = {_key(p) for p in near}
    hopes = [(ln.estimate(t, config.crf_range), ln) for ln in lines
             if ln.key not in have and len(ln.points) >= 2 and not ln.dropped and _may_beat(ln, t, floor, config)]
    if hopes:
        ln = max(hopes, key=lambda h: math.inf if h[0] is None else h[0])[1]
        c = int(round(ln.crf_for(t, config.crf_range)))
        if c not in ln.points:
            return {(ln.key, c)}
        if best is None:
            return set()
    if best is None:
        return set()
    own = next(ln for ln in lines if ln.key == _key(best))
    c = int(round(best.crf))
    steps = (c - 1, c + 1) if own.template.family == Plain.name else ()
    want = {(own.key, n) for n in steps if lo <= n <= hi and n not in own.points}
    want |= _rivals(best, own, lines, config)
    return want or best


def _may_beat(ln: Line, kbps: float, q: float, config: HullConfig) -> bool:
    """Whether line ``ln`` may give more than ``q`` dB at ``kbps``: its concave upper bound says so and its
    interpolated curve comes within ``config.chord_db`` of ``q`` (or it has too few points to tell); a
    client-SR line only where its interpolated curve itself exceeds ``q``."""
    up = ln.upper(kbps, config.crf_range)
    if up is None:
        return True
    est = ln.estimate(kbps, config.crf_range)
    if ln.template.family != Plain.name:  # a client-SR line costs a model run per measured frame: its curve
        return est > q  # has to reach the pick, not only its bound
    return up > q and est > q - config.chord_db


SR_STEP = 6  # CRFs between the two probes of a client-SR line
NEAR = 1.12  # "within a CRF step" of a rate: x264's rate changes about 12 % per CRF


def _near(t: float, lines: list[Line]) -> list:
    return [p for p in all_points(lines) if t / NEAR <= p.kbps <= t * NEAR]


def _key(p) -> tuple:
    from bbmr_stream.family import parse_rung

    return line_key(parse_rung(p.rung))


def _rivals(p, own: Line, lines: list[Line], config: HullConfig) -> set:
    """{(line key, CRF)}: the bracket of ``p``'s rate on the (at most ``config.rivals``) other lines that may
    reach ``p``'s quality there and are not yet known there to a CRF step."""
    lo, hi = config.crf_range
    rivals = []
    for ln in lines:
        if ln is own or ln.dropped or not ln.points or len(ln.points) < 2 and ln.template.family != Plain.name:
            continue
        br = ln.bracket(p.kbps)
        if br and br[1] - br[0] <= 1:
            continue  # known there as a dense grid knows it
        if _may_beat(ln, p.kbps, p.psnr_y - config.margin_db, config):
            est = ln.estimate(p.kbps, config.crf_range)
            rivals.append((math.inf if est is None else est, ln))
    rivals.sort(key=lambda r: -r[0])
    want = set()
    for _, ln in rivals:
        f = ln.crf_for(p.kbps, config.crf_range)
        # a plain rival is bracketed by two CRFs; a client-SR rival (a model run per frame) gets the nearest
        crfs = (math.floor(f), math.floor(f) + 1) if ln.template.family == Plain.name else (round(f),)
        new = {(ln.key, n) for n in crfs if lo <= n <= hi and n not in ln.points}
        if new:  # (none: its rate is not monotone in CRF here; known as well as a dense grid knows it)
            want |= new
            if len({k for k, _ in want}) >= config.rivals:
                break
    return want


def _pixels(ln: Line) -> int:
    return ln.template.size[0] * ln.template.size[1] if ln.template.size else 1 << 40


def all_points(lines: list[Line]) -> list:
    return [p for ln in lines for p in ln.points.values()]
