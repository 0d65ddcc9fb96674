"""bbmr-bench speed --vs-ffmpeg: both sides make the same rungs and the result says what each took (no time is
asserted: speed targets live in benchmarks)."""

import json

from packager.study_cli import main
from tests.media import _clip


def test_speed_against_ffmpeg_runs_both_sides(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    _clip(clip)
    out = tmp_path / "r.json"
    assert main(["speed", "--vs-ffmpeg", str(clip), "--ladder", "plain:23,plain:160x100:28,plain-sr:2:28",
                 "--frames", "8", "--segment", "0.4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    p = res["packaging"]
    assert res["frames"] == 8 and set(p["ffmpeg_s"]) == {"decode", "scale", "ladder"}
    assert p["ffmpeg_s"]["decode"] <= p["ffmpeg_s"]["ladder"] and p["packager_s"] > 0 and p["ratio"] > 0
    assert {"decode", "pack", "encode"} <= set(p["packager_stages_s"])
    assert res["playback"]["plain"]["rendition"] == "plain_crf23" and res["playback"]["plain"]["player_fps"] > 0
    assert res["playback"]["plain-sr"]["player_fps"] > 0
    assert "| **whole run** (process wall) |" in capsys.readouterr().out


def test_speed_refuses_block_rungs_and_a_missing_clip(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    _clip(clip)
    assert main(["speed", "--vs-ffmpeg", str(clip), "--ladder", "bbmr:30", "--frames", "4"]) == 2
    assert main(["speed"]) == 2
    err = capsys.readouterr().err
    assert "plain and plain-sr rungs" in err and "--vs-ffmpeg CLIP" in err and "Traceback" not in err
