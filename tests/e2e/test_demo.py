"""`bbmr-demo` end to end on a tiny sample, and what a newcomer hit on a first clip."""

import json
import stat

import av
import m3u8
import numpy as np
import pytest

from bbmr_stream.sample import pan_frames, write_sample
from player.demo_cli import main as demo


def test_sample_clip_is_an_ordinary_tagged_mp4(tmp_path):
    p = write_sample(tmp_path / "s.mp4", 192, 108, seconds=0.5, fps=12)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
    assert (s.codec_context.name, s.width, s.height, len(frames)) == ("h264", 192, 108, 6)
    assert frames[0].format.name == "yuv420p" and frames[0].colorspace == 1  # BT.709 declared
    a, b = (np.asarray(f.to_ndarray(format="gray"), np.float64) for f in frames[:2])
    assert np.abs(a - b).mean() > 1.0  # the camera moves
    with pytest.raises(ValueError):
        write_sample(tmp_path / "odd.mp4", 191, 108)
    assert next(pan_frames(64, 64, 1)).shape == (64, 64, 3)


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo(["--out", str(out), "--size", "256x144", "--seconds", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    paths = [line.split()[-1] for line in printed.splitlines() if line.startswith("  ") and "/" in line]
    assert len(paths) == 8 and all((tmp_path / p).exists() or __import__("pathlib").Path(p).exists()
                                   for p in paths), printed
    stream = out / "stream"
    master = m3u8.load(str(stream / "master.m3u8"))
    assert master.is_variant and len(master.playlists) >= 2
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["frames"]) == 24 and rep["pooled_metrics"]["psnr_y"]["mean"] > 20
    assert "abr" in rep and rep["stream"]["rendition"] in {f["metrics"]["rendition"] for f in rep["frames"]} | \
        {rep["stream"]["rendition"]}
    played = {f["metrics"]["rendition"] for f in rep["frames"]}
    if len(played) > 1:  # the summary names what was played, not the top rung
        assert rep["stream"]["rendition"].startswith("abr: ") and set(rep["stream"]["renditions_played"]) == played
    with av.open(str(out / "played.mp4")) as c:
        s = c.streams.video[0]
        f = next(c.decode(s))
        assert (f.format.name, f.colorspace, s.width) == ("yuv420p", 1, 256)  # a normal playable file
    from PIL import Image

    assert Image.open(out / "side_by_side.png").size[0] > 3 * 2 * 128
    assert stat.S_IMODE(stream.stat().st_mode) & 0o055 == 0o055  # readable by a web server (umask 022)
    assert stat.S_IMODE((stream / "manifest.json").stat().st_mode) & 0o044 == 0o044
    # the same stream in the browser player (hls.js over MPEG-TS, the page's own ABR): plays to the end
    from player.web import WebConfig
    from player.web_selftest import web_selftest

    r = web_selftest(WebConfig(str(stream), port=0), 1000)
    assert r["why"] == "ended" and r["frames_shown"] >= 12, r
    assert r["renditions_played"] and r["errors"] == [] and r["console_errors"] == [], r
    assert not [e for e in r["hls_errors"] if "fatal" in e], r  # hls.js's own recoveries (a slow append) allowed
