"""Rung families end to end: plain / plain-sr rungs packaged, played and validated as HLS; the RD study
(packager.study, ``bbmr-bench``) on a generated clip, the auto ladder from it, the look panel."""

import json
import subprocess

import m3u8
import pytest

from tests.media import _clip


def test_plain_and_plain_sr_rungs_package_play_and_validate(tmp_path):
    """An explicit ladder of every family packages; the HLS playlists validate (m3u8) and FFmpeg plays the
    master playlist's plain rung; the player plays each rung and its report names the family."""
    import imageio_ffmpeg

    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from player.cli import main as play

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--scorer", "bicubic", "--segment", "0.4", "--upscaler", "bicubic",
                    "--ladder", "plain:160x100:23,plain-sr:2:23,uniform:23,bbmr:23", "--device", "cpu",
                    "--measure-frames", "0"]) == 0
    man = load(out)
    assert [r.kind for r in man.renditions] == ["plain", "plain-sr", "uniform", "bbmr"]
    plain, psr = man.renditions[0], man.renditions[1]
    assert (plain.lr_width, plain.lr_height) == (160, 100) and (psr.lr_width, psr.lr_height) == (160, 100)
    master = m3u8.load(str(out / "master.m3u8"))
    assert len(master.playlists) == 4
    for pl in master.playlists:
        si = pl.stream_info
        assert si.bandwidth >= si.average_bandwidth > 0 and si.codecs.startswith("avc1.") and si.resolution
        media = m3u8.load(str(out / pl.uri))
        assert media.target_duration >= 1 and media.is_endlist
        assert all(round(s.duration) <= media.target_duration for s in media.segments)
    bws = [pl.stream_info.average_bandwidth for pl in master.playlists]
    assert bws == sorted(bws)
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(out / "master.m3u8"),
                        "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rend in man.renditions:
        rep = tmp_path / f"{rend.name}.json"
        assert play([str(out), "--headless", "--rendition", rend.name, "--reference", str(src), "--report", str(rep),
                     "--niqe-every", "0", "--upscaler", "bicubic"]) == 0
        d = json.loads(rep.read_text())
        assert {f["metrics"]["family"] for f in d["frames"]} == {rend.kind}
        assert d["concealed_frames"] == 0
        assert abs(d["pooled_metrics"]["psnr_y"]["mean"] - rend.psnr_y) < 0.05  # player and packager agree


def test_jointsr_cannot_play_plain_sr(tmp_path):
    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from player.cli import main as play

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--segment", "0.4", "--ladder", "plain-sr:2:23", "--upscaler",
                    "bicubic", "--no-measure", "--device", "cpu"]) == 0
    assert load(out).renditions[0].kind == "plain-sr"
    assert play([str(out), "--headless", "--upscaler", "jointsr"]) == 2


def test_rd_study_auto_ladder_and_check(tmp_path, capsys):
    """`bbmr-bench rd` on a generated clip (plain and plain-sr families), then `bbmr-package --ladder auto
    --study rd.json` ships the rungs the study chose, and `bbmr-bench ladder-check` finds the packaged ladder
    nowhere below the plain front (same frames, same encodes)."""
    from bbmr_stream.manifest import load
    from packager.cli import main as package
    from packager.study_cli import main as bench

    src = tmp_path / "in.mp4"
    _clip(src)
    study = tmp_path / "rd"
    assert bench(["rd", str(src), "--out", str(study), "--frames", "12", "--measure-frames", "4", "--niqe-frames",
                  "0", "--families", "plain,plain-sr", "--segment", "0.4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == (study / "rd.md").read_text() + "\n"  # the table, nothing else on stdout
    d = json.loads((study / "rd.json").read_text())
    assert len(d["points"]) == 35 and (study / "rd.png").stat().st_size > 0 and "plain-sr" in d["bd_vs_plain"]
    assert d["meta"]["conventions"]["measured_frames"] == [0, 4, 7, 11]
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--ladder", "auto", "--study", str(study / "rd.json"),
                    "--segment", "0.4", "--measure-frames", "4", "--device", "cpu"]) == 0
    man = load(out)
    by_name = {p["name"]: p for p in d["points"]}
    assert [r.name for r in man.renditions] == d["auto_ladder"]
    dur = man.source["duration_s"]
    for r in man.renditions:  # the same encode gives the same bytes (the TS muxer may add a packet) and quality
        assert abs(r.bitrate_kbps - by_name[r.name]["kbps"]) <= 2 * 188 * 8 * len(r.segments) / dur / 1000
        assert r.psnr_y == pytest.approx(by_name[r.name]["psnr_y"], abs=0.01)  # SR float results vary ~1e-3
    capsys.readouterr()
    assert bench(["ladder-check", str(out), str(study / "rd.json"), "--json", str(tmp_path / "check.json")]) == 0
    chk = json.loads((tmp_path / "check.json").read_text())
    assert chk["max_below_plain_front_db"] is None or chk["max_below_plain_front_db"] <= 0.1
    other = tmp_path / "other.mp4"
    _clip(other)
    assert package([str(other), "--out", str(tmp_path / "s2"), "--ladder", "auto", "--study",
                    str(study / "rd.json"), "--max-frames", "6"]) == 2  # a study of another run is refused


def test_run_study_prints_nothing_and_returns_what_it_wrote(tmp_path, capsys):
    """The study as a library: rd.json, rd.md and rd.png written, the result returned, nothing on stdout or
    stderr (no progress object: silent); the anchor is the plain family."""
    from bbmr_stream.family import Plain
    from packager.study import StudyConfig, run_study

    src = tmp_path / "in.mp4"
    _clip(src)
    res = run_study(StudyConfig(str(src), str(tmp_path / "rd"), frames=4, measure_frames=2, niqe_frames=0,
                                families=(Plain.name,), segment=0.4, preset="ultrafast", device="cpu"))
    assert capsys.readouterr() == ("", "")
    assert {p.family for p in res.points} == {Plain.name} and len(res.points) == 25
    assert (res.out / "rd.md").read_text() == res.markdown and (res.out / "rd.png").stat().st_size > 0
    d = json.loads((res.out / "rd.json").read_text())
    assert d["auto_ladder"] == res.result["auto_ladder"] and set(d["bd_vs_plain"]) == {"all"}


def test_look_panel(tmp_path, capsys):
    from PIL import Image

    from packager.study_cli import main as bench

    src = tmp_path / "in.mp4"
    _clip(src)
    png = tmp_path / "look.png"
    assert bench(["look", str(src), "--rungs", "plain:160x100:30,bbmr:23", "--out", str(png), "--frames", "12",
                  "--frame", "5", "--crop", "0,0,128,96", "--scorer", "bicubic", "--device", "cpu"]) == 0
    im = Image.open(png)
    assert im.size == (3 * 256 + 2 * 4, 192 + 28)
    out = capsys.readouterr().out
    assert "plain_160x100_crf30 (bicubic)" in out and "bbmr_crf23" in out
    assert bench(["look", str(src), "--rungs", "bbmr:23", "--out", str(png), "--frames", "12", "--frame", "50"]) == 2
