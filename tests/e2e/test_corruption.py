"""Corruption suite: every hostile or damaged input gives a one-line error (exit 2) or honest, counted
concealment; never a traceback, a silent wrong picture or a lost stream."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bbmr_stream.manifest import load
from bbmr_stream.scalemap import ScaleMap
from packager.cli import main as package
from player.cli import main as play


def _copy(stream, tmp_path, name="s"):
    src, out = stream
    dst = tmp_path / name
    shutil.copytree(out, dst)
    return src, dst, load(dst)


def _bbmr(man):
    return next(r for r in man.renditions if r.kind == "bbmr")


def _play(stream_dir, tmp_path, *extra):
    rep = tmp_path / "r.json"
    code = play([str(stream_dir), "--headless", "--report", str(rep), "--upscaler", "bicubic", "--niqe-every", "0",
                 "--rendition", extra[0]] + list(extra[1:]))
    return code, (json.loads(rep.read_text()) if rep.exists() else None)


@pytest.mark.parametrize("damage,cause", [("delete", "missing"), ("half", None), ("garbage", None)])
def test_segment_damage_is_counted_by_cause(stream, tmp_path, damage, cause):
    src, d, man = _copy(stream, tmp_path)
    rend = _bbmr(man)
    seg = rend.segments[1]
    f = d / seg.file
    if damage == "delete":
        f.unlink()
    elif damage == "half":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:  # the media data after the fragment's header boxes (fMP4) or the first packets (MPEG-TS)
        b = bytearray(f.read_bytes())
        keep = 188 * 3 if man.container == "mpegts" else min(len(b) // 4, 256)
        b[keep:] = np.random.default_rng(0).integers(0, 256, len(b) - keep, dtype=np.uint8).tobytes()
        f.write_bytes(bytes(b))
    with pytest.warns(UserWarning, match="concealing"):
        code, r = _play(d, tmp_path, rend.name, "--reference", str(src))
    assert code == 0
    lost = r["concealed_frames"]
    assert lost >= 1 and seg.file in r["missing_segments"]
    assert sum(r["concealed_by_cause"].values()) == lost
    if cause:
        assert r["concealed_by_cause"][cause] == seg.frames
    flagged = [f for f in r["frames"] if f["metrics"]["concealed"]]
    assert len(flagged) == lost and all("cause" in f["metrics"] and "psnr_y" not in f["metrics"] for f in flagged)
    assert r["segment_errors"] and r["segment_errors"][0]["file"] == seg.file
    assert play([str(d), "--headless", "--rendition", rend.name, "--upscaler", "bicubic", "--niqe-every", "0",
                 "--strict"]) == 3


def _audio_only_mp4(path):
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=8000)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        fr.sample_rate, fr.pts = 8000, 0
        for p in list(s.encode(fr)) + list(s.encode(None)):
            c.mux(p)


@pytest.mark.parametrize("damage", ["delete", "half", "garbage", "audio_only"])
def test_init_segment_damage_conceals_its_rendition(stream, tmp_path, damage):
    """An fMP4 init segment that is missing, truncated, garbage or has no video track: every segment of the
    rendition is concealed and counted (never a traceback); --strict exits 3."""
    src, d, man = _copy(stream, tmp_path)
    rend = _bbmr(man)
    f = d / rend.init.file
    if damage == "delete":
        f.unlink()
    elif damage == "half":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "garbage":
        f.write_bytes(np.random.default_rng(1).integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
    else:
        _audio_only_mp4(f)
    with pytest.warns(UserWarning, match="concealing"):
        code, r = _play(d, tmp_path, rend.name, "--reference", str(src))
    assert code == 0
    assert r["concealed_frames"] == sum(s.frames for s in rend.segments)
    assert sum(r["concealed_by_cause"].values()) == r["concealed_frames"]
    if damage == "delete":
        assert r["concealed_by_cause"]["missing"] == r["concealed_frames"]
    assert play([str(d), "--headless", "--rendition", rend.name, "--upscaler", "bicubic", "--niqe-every", "0",
                 "--strict"]) == 3


@pytest.mark.parametrize("forge", ["crc", "scales", "grid", "absent"])
def test_forged_or_broken_maps_are_flagged(stream, tmp_path, forge, monkeypatch):
    """Frames 1 and 2 of the first segment get a broken map (what demux returns for a bad CRC), a valid map
    with a scale the stream does not have, a map of another grid, or none: each is flagged, counted by cause,
    rebuilt with the segment's last valid map, and left out of the PSNR-Y mean and the scale shares."""
    import player.playback as pb
    from bbmr_stream.demux import InvalidMap

    src, d, man = _copy(stream, tmp_path)
    rend = _bbmr(man)
    real = pb.segment_pictures

    def forged(m):
        if forge == "crc":
            return InvalidMap("CRC mismatch")
        if forge == "scales":
            return ScaleMap(np.where(m.scales == 8, 16, m.scales).astype(np.uint8), (2, 4, 16), m.frame_index)
        if forge == "grid":
            return ScaleMap(np.full((1, 1), 4, np.uint8), (2, 4, 8), m.frame_index)
        return None

    def fake(path, r, *a, **k):
        for i, (pics, smap) in enumerate(real(path, r, *a, **k)):
            first = path.name == r.segments[0].file
            yield pics, (forged(smap) if first and i in (1, 2) else smap)

    monkeypatch.setattr(pb, "segment_pictures", fake)
    code, r = _play(d, tmp_path, rend.name, "--reference", str(src))
    assert code == 0
    cause = "map_missing" if forge == "absent" else "map_invalid"
    assert r["concealed_by_cause"][cause] == 2 == r["frames_without_map"] == r["concealed_frames"]
    bad = [f for f in r["frames"] if f["metrics"].get("cause") == cause]
    assert [f["frameNum"] for f in bad] == [1, 2]
    assert all("scale_x2_share" not in f["metrics"] and "psnr_y" not in f["metrics"] for f in bad)
    assert len(r["frames"]) - 2 == sum("psnr_y" in f["metrics"] for f in r["frames"])


def _manifest_with(stream, tmp_path, edit):
    _, d, _ = _copy(stream, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _r(m, kind="bbmr"):
    return next(r for r in m["renditions"] if r["kind"] == kind)


BAD_MANIFESTS = {
    "unknown layout": lambda m: _r(m).update(layout="mosaic"),
    "scales with 0": lambda m: m.update(scales=[0, 4, 8]),
    "rendition scale not in family": lambda m: _r(m).update(scales=[2, 4, 16]),
    "unknown family": lambda m: _r(m).update(kind="magic"),
    "a million frames": lambda m: _r(m)["segments"][0].update(frames=1000000),
    "frames do not tile": lambda m: _r(m)["segments"][1].update(first_frame=0),
    "source 2x": lambda m: m["source"].update(width=m["source"]["width"] * 2, height=m["source"]["height"] * 2),
    "source half": lambda m: m["source"].update(width=m["source"]["width"] // 2),
    "fps zero": lambda m: m["source"].update(fps=[0, 1]),
    "matrix unknown": lambda m: m["source"].update(matrix="xyz"),
    "crf string": lambda m: _r(m).update(crf="high"),
    "crf nan": lambda m: _r(m).update(crf=float("nan")),
    "overall 3": lambda m: m.update(overall=3),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_is_a_one_line_error(stream, tmp_path, capsys, case):
    d = _manifest_with(stream, tmp_path, BAD_MANIFESTS[case])
    assert play([str(d), "--headless", "--upscaler", "bicubic"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_reference_of_another_size(stream, tmp_path, capsys):
    from bbmr_stream.sample import write_sample

    other = write_sample(tmp_path / "o.mp4", 128, 96, seconds=0.5, fps=10)
    assert play([str(stream[1]), "--headless", "--reference", str(other), "--upscaler", "bicubic"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_symlink_out_of_the_stream_is_not_followed(stream, tmp_path):
    src, d, man = _copy(stream, tmp_path)
    rend = _bbmr(man)
    seg = rend.segments[0]
    outside = tmp_path / "outside.ts"
    shutil.move(d / seg.file, outside)
    os.symlink(outside, d / seg.file)
    with pytest.warns(UserWarning, match="outside the stream"):
        code, r = _play(d, tmp_path, rend.name)
    assert code == 0 and r["concealed_frames"] == seg.frames


def test_truncated_input_is_refused(tmp_path, capsys):
    from bbmr_stream.sample import write_sample

    clip = write_sample(tmp_path / "c.mp4", 128, 96, seconds=1.6, fps=10)
    data = clip.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # faststart: the header declaring 16 frames comes first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    code = package([str(cut), "--out", str(tmp_path / "s"), "--ladder", "plain:30", "--device", "cpu"])
    assert code == 2 and not (tmp_path / "s").exists()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("opts", [["--segment", "-1"], ["--segment", "nan"], ["--overall", "3"],
                                  ["--scales", "2,4,9"], ["--max-frames", "0"], ["--block", "100"],
                                  ["--measure-frames", "-2"], ["--ladder", "bbmr:abc"]])
def test_bad_packager_options(clip, tmp_path, capsys, opts):
    assert package([str(clip), "--out", str(tmp_path / "s"), "--device", "cpu", "--ladder", "plain:30"] + opts) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err
    assert not (tmp_path / "s").exists()


def test_out_is_a_file_or_unwritable(clip, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert package([str(clip), "--out", str(f), "--ladder", "plain:30", "--force", "--device", "cpu"]) == 2
    assert package([str(clip), "--out", str(f / "s"), "--ladder", "plain:30", "--device", "cpu"]) == 2
    assert f.read_text() == "x" and "Traceback" not in capsys.readouterr().err


def test_force_replaces_atomically_and_stale_temps_are_removed(clip, tmp_path):
    out = tmp_path / "s"
    args = [str(clip), "--out", str(out), "--ladder", "plain:30", "--device", "cpu", "--max-frames", "4"]
    assert package(args) == 0
    stale = tmp_path / ".s.tmp-999999999-abc"  # a killed run's leftovers (no such pid)
    stale.mkdir()
    (stale / "x.ts").write_bytes(b"x")
    assert package(args + ["--force"]) == 0
    assert load(out).source["frames"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".s.")) == []


def test_sigterm_cleans_up(clip, tmp_path):
    out = tmp_path / "s"
    p = subprocess.Popen([sys.executable, "-c", "import sys; from packager.cli import main; sys.exit(main())",
                          str(clip), "--out", str(out), "--ladder", "bbmr:30", "--scorer", "light", "--device", "cpu"],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".s.tmp-*")):
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".s.*"))


@pytest.fixture
def clip(tmp_path_factory):
    from tests.media import _clip

    p = tmp_path_factory.mktemp("clip") / "in.mp4"
    _clip(p)
    return p


def _serve(handler_cls):
    import http.server
    import threading

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def test_http_cross_origin_redirect_refused_and_trickle_deadline(monkeypatch, capsys):
    import http.server

    import player.fetch as fetch

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/manifest.json")
            self.end_headers()

        def log_message(self, *a):
            pass

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

        def log_message(self, *a):
            pass

    srv, url = _serve(Redirect)
    try:
        assert play([url, "--headless"]) == 2
        assert "another origin" in capsys.readouterr().err
    finally:
        srv.shutdown()
    monkeypatch.setattr(fetch, "DEADLINE_S", 1.0)
    srv, url = _serve(Trickle)
    try:
        t = time.time()
        assert play([url, "--headless"]) == 2
        assert time.time() - t < 10 and "within" in capsys.readouterr().err
    finally:
        srv.shutdown()
