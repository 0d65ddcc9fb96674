import pytest

from bbmr_stream.errors import InputError
from player.abr import ThroughputBufferABR, Trace, simulate, summary

RATES = [500.0, 1000.0, 2000.0]


def _bits(n, dur=2.0):
    return [[r * 1000 * dur] * n for r in RATES]


def test_download_time_piecewise():
    tr = Trace([0, 1, 2], [8, 2])  # 8 Mbps for 1 s, then 2 Mbps, looped every 2 s
    assert tr.download(0, 8) == pytest.approx(1.0)
    assert tr.download(0, 10) == pytest.approx(2.0)
    assert tr.download(0, 18) == pytest.approx(3.0)  # loops


def test_steps_down_within_one_segment(tmp_path):
    p = tmp_path / "trace.txt"
    p.write_text("0 6\n20 6\n20.001 0.7\n200 0.7\n")
    tr = Trace.load(p)
    d = simulate(_bits(30), [2.0] * 30, RATES, tr)
    assert max(x.bitrate_kbps for x in d[:8]) == 2000  # climbs to the top rung on 6 Mbps
    # the first download that hits the drop (4 Mbit at 0.7 Mbps instead of 6): the next decision is lower
    k = next(i for i, x in enumerate(d) if x.download_s > 1.0)
    assert d[k].bitrate_kbps == 2000 and d[k + 1].bitrate_kbps < 2000
    assert d[-1].bitrate_kbps == 500  # settles below 0.9 * 0.7 Mbps
    s = summary(d)
    assert s["switches"] >= 2 and set(s) >= {"mean_bitrate_kbps", "rebuffer_s", "qoe_lin", "segments"}


def test_pinned_and_rebuffer_penalty():
    tr = Trace([0, 100], [0.5])
    d = simulate(_bits(5), [2.0] * 5, RATES, tr, pinned=2)  # 4 Mbit segments on 0.5 Mbps: stalls
    assert all(x.rendition == 2 for x in d)
    assert sum(x.rebuffer_s for x in d) > 10
    assert d[1].qoe_lin == pytest.approx(2.0 - 4.3 * d[1].rebuffer_s)


def test_files_fetched_once_count_in_the_download_once():
    """An init segment or model a segment needs is downloaded with the first segment that needs it, not again."""
    tr = Trace([0, 1000], [1.0])  # 1 Mbps
    once = [[[("init", 1e6), ("model", 2e6)]] + [[("init", 1e6), ("model", 2e6)]] * 2 + [[("init", 1e6)]]] * 3
    d = simulate(_bits(4), [2.0] * 4, RATES, tr, pinned=0, once=once)
    assert [x.download_s for x in d] == pytest.approx([1.0 + 3.0, 1.0, 1.0, 1.0])  # 1 Mbit segments


def test_panic_buffer_takes_lowest():
    abr = ThroughputBufferABR(RATES)
    abr.observe(10, 1)
    assert abr.choose(buffer_s=10, current=0) == 2
    assert abr.choose(buffer_s=0.5, current=2) == 0
    assert abr.choose(buffer_s=2, current=1) == 1  # low buffer: no step up


@pytest.mark.parametrize("text", ["", "0 1\n", "0 1\n0 2\n", "a b\n1 2\n", "0 -1\n1 1\n"])
def test_bad_traces(tmp_path, text):
    p = tmp_path / "t.txt"
    p.write_text(text)
    with pytest.raises(InputError):
        Trace.load(p)


def test_picks_by_measured_quality_within_the_budget():
    """Across families a dearer rung can be worse: the rule takes the best measured PSNR-Y that fits 0.9 x the
    throughput estimate, not the highest bitrate."""
    abr = ThroughputBufferABR([500.0, 900.0, 1000.0, 3000.0], quality=[30.0, 33.0, 32.0, 38.0])
    abr.observe(2.0, 1.0)  # 2 Mbps
    assert abr.choose(buffer_s=10.0, current=None) == 1  # 900 kbps at 33 dB beats 1000 kbps at 32 dB
    abr.history = [4.0]
    assert abr.choose(buffer_s=10.0, current=None) == 3
    by_rate = ThroughputBufferABR([500.0, 900.0, 1000.0, 3000.0])
    by_rate.observe(2.0, 1.0)
    assert by_rate.choose(buffer_s=10.0, current=None) == 2
