import math

import pytest

from bench.equal_bytes_gain import gains, interpolate


def test_interpolation_is_linear_in_log_bitrate_and_never_extrapolates():
    curve = [(1000.0, 30.0), (4000.0, 32.0)]
    assert interpolate(curve, 2000.0) == pytest.approx(31.0)  # halfway in log2
    assert interpolate(curve, 1000.0) == 30.0 and interpolate(curve, 4000.0) == 32.0
    assert interpolate(curve, 999.0) is None and interpolate(curve, 4001.0) is None
    assert interpolate(curve, 3000.0) == pytest.approx(30.0 + 2.0 * math.log(3) / math.log(4))


def test_gain_per_bbmr_rung():
    m1 = {"renditions": [{"name": "bbmr_crf20", "kind": "bbmr", "bitrate_kbps": 2000.0, "psnr_y": 32.0},
                         {"name": "uniform_crf8", "kind": "uniform", "bitrate_kbps": 4000.0, "psnr_y": 31.0}]}
    m2 = {"renditions": [{"name": "uniform_crf16", "kind": "uniform", "bitrate_kbps": 1000.0, "psnr_y": 29.0},
                         {"name": "bbmr_crf8", "kind": "bbmr", "bitrate_kbps": 9000.0, "psnr_y": 33.0}]}
    rows = {r["rendition"]: r for r in gains([m1, m2])["bbmr"]}
    assert rows["bbmr_crf20"]["gain_db"] == pytest.approx(2.0)  # uniform at 2000 kbps: 30.0
    assert rows["bbmr_crf8"]["gain_db"] is None
