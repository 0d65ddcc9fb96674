"""The packager's tasks and runners: seeking decode, coded packets muxed elsewhere, the segment plan, task groups,
run options."""

from __future__ import annotations

import dataclasses
import pickle
from fractions import Fraction

import numpy as np
import pytest

from bbmr_stream.decode import frames, frames_from, probe
from bbmr_stream.errors import InputError
from bbmr_stream.family import parse_ladder
from packager.config import PackageConfig
from packager.encode import LREncoder
from packager.pipeline import encode_groups, group_cost, makespan, segment_plan, task_groups
from packager.runner import Processes, RunConfig, Serial
from tests.media import _write_lossless


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("tasks") / "in.mp4"
    rng = np.random.default_rng(3)
    _write_lossless(p, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(23)), 64, 48)
    return p


def test_frames_from_seeks_to_the_same_frames(clip):
    info = probe(str(clip))
    every = list(frames(info))
    assert len(every) == 23
    for start, count in ((0, 5), (4, 4), (8, 100), (21, 2), (22, None), (23, 3)):
        got = list(frames_from(info, start, count))
        want = every[start:] if count is None else every[start:start + count]
        assert [(f.index, f.pts, f.duration) for f in got] == [(f.index, f.pts, f.duration) for f in want]
        assert all(np.array_equal(a.rgb, b.rgb) and np.array_equal(a.y, b.y) for a, b in zip(got, want))


def test_frames_from_without_trusted_timestamps_decodes_from_the_start(clip):
    """A frame the packets' timestamps cannot place (first_pts unknown): the same frames, decoded from the start."""
    info = dataclasses.replace(probe(str(clip)), first_pts=None)
    got = list(frames_from(info, 9, 3))
    want = list(frames(info))[9:12]
    assert [f.pts for f in got] == [f.pts for f in want]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(got, want))


def _pictures(i: int) -> list[np.ndarray]:
    rng = np.random.default_rng(i // 5)
    img = np.roll(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), i, axis=1)
    return [img, img[::2, ::2].copy()]


def test_packets_coded_per_segment_and_muxed_elsewhere(tmp_path):
    """One encoder over the frames == its packets kept (``path`` None) and muxed by another encoder (the driver);
    per-segment encoders give whole GOPs whose timestamps continue from one segment to the next."""
    kw = dict(sizes=[(96, 64), (48, 32)], time_base=Fraction(1, 90000), fps=Fraction(25), crf=28, gop=5)

    def code(path, frames_):
        enc = LREncoder(path, **kw)
        for i in frames_:
            enc.encode(_pictures(i), i * 3600, b"map%d" % i if i % 5 == 0 else None, 3600)
        enc.close()
        return enc

    direct = code(tmp_path / "a.ts", range(15))
    kept = code(None, range(15))
    assert kept.codecs == direct.codecs
    w = LREncoder(tmp_path / "b.ts", **kw)
    w.write(pickle.loads(pickle.dumps(kept.packets)))
    w.close()
    assert (tmp_path / "a.ts").read_bytes() == (tmp_path / "b.ts").read_bytes()
    parts = [code(None, range(s, s + 5)).packets for s in (0, 5, 10)]
    dts = [p.dts for part in parts for p in part if p.stream == 0]
    assert dts == sorted(dts) and len(set(dts)) == 15
    assert [p.keyframe for part in parts for p in part if p.stream == 0].count(True) == 3


def test_segment_plan():
    info = type("I", (), {"frames": 23, "frames_exact": True})()
    cfg = PackageConfig("in.mp4", "out")
    assert segment_plan(info, cfg, 5) == [(0, 0, 5), (1, 1, 5), (2, 2, 5), (3, 3, 5), (4, 4, 3)]
    assert segment_plan(info, dataclasses.replace(cfg, max_frames=7), 5) == [(0, 0, 5), (1, 1, 2)]
    assert segment_plan(info, dataclasses.replace(cfg, sample=(1, 4)), 5) == [(0, 1, 5), (1, 4, 3)]
    est = type("I", (), {"frames": 23, "frames_exact": False})()  # an estimate: read the last one to the end
    assert segment_plan(est, cfg, 5)[-1] == (4, 4, None)
    assert segment_plan(est, dataclasses.replace(cfg, max_frames=10), 5) == [(0, 0, 5), (1, 1, 5)]


def test_task_groups_split_for_workers_and_keep_shared_work_together():
    ladder = parse_ladder("plain:480x270:37,plain:640x360:35,plain:960x540:36,plain:1280x720:32,plain:35,plain:29,"
                          "plain:23,plain:18")
    groups = encode_groups(ladder)
    assert task_groups(groups, 5, 1) == groups  # one worker: no split (each task decodes its segment)
    two = [[s.name for s in g] for g in task_groups(groups, 5, 2)]  # 10 tasks, the full-size pictures made once
    assert two == [["plain_crf35", "plain_crf29", "plain_crf23", "plain_crf18"],
                   ["plain_1280x720_crf32", "plain_960x540_crf36", "plain_640x360_crf35", "plain_480x270_crf37"]]
    # a split only where it shortens the stage's estimated finishing time
    assert task_groups(groups, 150, 16) == groups  # plenty of segments: no split, no extra decoding
    assert len(task_groups(groups, 1, 2)) == 3
    mixed = parse_ladder("plain:320x180:30,plain:320x180:34,plain-sr:2:30,plain-sr:2:34,bbmr:30,bbmr:34,uniform:30")
    for n_seg, workers in ((1, 4), (3, 2), (1, 16)):
        base = encode_groups(mixed)
        split = task_groups(base, n_seg, workers, 1920 * 1080)
        assert sorted(s.name for g in split for s in g) == sorted(s.name for s in mixed)
        assert len(split) > len(base) or n_seg > 1  # one segment: the only parallelism is between rungs

        def span(gs):
            return makespan([group_cost(g, 1920 * 1080) for g in gs for _ in range(n_seg)], workers)

        assert span(split) <= span(base)


def _square(x):
    return x * x


def _fail(x):
    raise InputError(f"bad {x}")


def test_runners_give_results_in_task_order():
    seen = []
    assert Serial().map(_square, [3, 1, 2]) == [9, 1, 4]
    assert Serial().map(_square, [3, 1, 2], done=lambda i, r: seen.append((i, r))) is None  # handed over, not kept
    assert seen == [(0, 9), (1, 1), (2, 4)]
    p = Processes(2)
    try:
        got = {}
        assert p.map(_square, list(range(7))) == [i * i for i in range(7)]
        assert p.map(_square, list(range(7)), done=lambda i, r: got.__setitem__(i, r)) is None
        assert got == {i: i * i for i in range(7)}
        with pytest.raises(InputError, match="bad 1"):  # a task's error is not retried: raised as itself
            p.map(_fail, [1])
    finally:
        p.close()
    assert p.describe() == {"runner": "processes", "workers": 2, "pool_restarts": 0}


def test_run_config_checks():
    RunConfig().check()
    RunConfig(workers=0, cluster="ray://10.0.0.1:10001").check()
    RunConfig(cluster="head.example:6379").check()
    RunConfig(cluster="auto").check()
    assert RunConfig(workers=0).processes >= 1
    for bad in (RunConfig(workers=-1), RunConfig(workers=1000), RunConfig(cluster="http://x"),
                RunConfig(cluster="ray://h"), RunConfig(cluster="a b:1")):
        with pytest.raises(InputError):
            bad.check()


def test_segments_whose_frame_rate_drops_at_the_cut(tmp_path):
    """Segment encoders date their first pictures from their own frame durations: 30 fps then 10 fps at a cut
    makes the second segment's first dts go back; the driver's muxer moves it just past the previous one."""
    kw = dict(sizes=[(96, 64)], time_base=Fraction(1, 90000), fps=Fraction(20), crf=28, gop=5)
    parts, pts = [], 0
    for dur in (3000, 9000, 3000):
        enc = LREncoder(None, **kw)
        for i in range(5):
            enc.encode(_pictures(pts // 1000)[:1], pts, None, dur)
            pts += dur
        enc.close()
        parts.append(enc.packets)
    raw = [p.dts for part in parts for p in part]
    assert any(b <= a for a, b in zip(raw, raw[1:])), "x264 no longer dates a segment's start this way"
    w = LREncoder(tmp_path / "vfr.ts", **kw)
    w.write([p for part in parts for p in part])
    w.close()
    import av

    with av.open(str(tmp_path / "vfr.ts")) as c:
        got = [(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(got) == 15 and all(b[1] > a[1] for a, b in zip(got, got[1:])) and all(d <= p for p, d in got)
