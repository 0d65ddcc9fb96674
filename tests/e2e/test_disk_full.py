"""A disk that fills up (ENOSPC) while packaging, while playing to ``--out``/``--report`` and while recording the
live view: one error line, exit code 4, no partial output, the previous output at that path byte-identical and
playable.

Two kinds. A real full filesystem: a small tmpfs mounted in a private mount namespace (``unshare -m``, which
needs root; the mount vanishes with the process), both runs and the checks inside it (the ``_in_*`` functions,
run there by :func:`_in_tmpfs`, return what they saw as JSON). And an ENOSPC injected in-process into one write
path of each stage (always runs).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from bbmr_stream.errors import DiskFullError
from bbmr_stream.progress import Progress
from packager.cli import main as package_cli
from player import PlayConfig, play
from player.cli import main as play_cli

ROOT = Path(__file__).resolve().parents[2]
ENOSPC = (errno.ENOSPC, os.strerror(errno.ENOSPC))
SMALL = ["--ladder", "plain:30", "--max-frames", "4", "--no-measure", "--device", "cpu"]  # ~24 KiB on tmpfs
BIG = ["--ladder", "plain:20", "--lossless", "--no-measure", "--device", "cpu"]  # ~185 KiB of TS, as much again cut


# ---- helpers (also used inside the mount namespace)

def _files(d: Path) -> dict[str, str]:
    """Every file under ``d`` -> sha256 of its bytes."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _cli(main, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of a CLI's ``main`` run in-process (stdout dropped)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "error" in ln.lower() or "Traceback" in ln]


def _plays(stream: Path) -> tuple[int, int]:
    """(frames played, frames concealed) of a headless bicubic playback of ``stream``."""
    r = play(PlayConfig(str(stream), headless=True, upscaler="bicubic", niqe_every=0), Progress())
    return len(r.frames), r.concealed_total()


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (200, 320, 3), dtype=np.uint8)


def _cause_of_disk_full(seen: list) -> None:
    """Record the underlying error of each disk-full line the CLIs print (which write hit the full disk)."""
    import bbmr_stream.cli as cli

    def line(e: OSError) -> str:
        c = e.__cause__ or e
        seen.append(f"{type(c).__module__}.{type(c).__name__}: {c}")
        return real(e)

    real, cli.disk_full_line = cli.disk_full_line, line


# ---- a real full filesystem

def _in_tmpfs(tmp_path: Path, size: str, fn: str, *args) -> dict:
    """Run ``fn(mount, *args)`` of this module in a new process, in a private mount namespace with a ``size``
    tmpfs mounted on a fresh directory; its JSON result."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not on PATH: the real-tmpfs tests need it")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = (f"import json, sys; from tests.e2e.test_disk_full import {fn}; "
            f"print(json.dumps({fn}(*sys.argv[1:])))")
    r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"',
                        "sh", size, str(mnt), sys.executable, "-c", code, str(mnt), *map(str, args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, f"the run in a {size} tmpfs failed (mounting needs root):\n{r.stderr[-3000:]}"
    assert not any(mnt.iterdir()), "the tmpfs was not private to the namespace"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _in_package(mnt: str, clip: str, container: str) -> dict:
    """Package SMALL into the tmpfs, then BIG over it (--force) until the tmpfs is full."""
    out, fmt = Path(mnt) / "s", ["--container", container]
    first, _ = _cli(package_cli, [clip, "--out", out, *SMALL, *fmt])
    before = _files(out)
    seen: list = []
    _cause_of_disk_full(seen)
    code, err = _cli(package_cli, [clip, "--out", out, "--force", *BIG, *fmt])
    return {"first": first, "code": code, "err": err, "cause": seen, "same": _files(out) == before,
            "entries": sorted(os.listdir(mnt)), "played": _plays(out)}


@pytest.mark.parametrize("size,container,cause", [
    ("96k", "fmp4", "OSError"),  # the work directory fills up: the segment tasks' spill files or the rungs' MPEG-TS
    ("320k", "fmp4", "m3u8"),  # the segments fill it: FFmpeg's HLS muxer exits 0 with an empty playlist
    ("330k", "mpegts", "m3u8")])  # the same with TS segments (once shipped as a stream without segments)
def test_packaging_into_a_full_tmpfs(clip, tmp_path, size, container, cause):
    r = _in_tmpfs(tmp_path, size, "_in_package", clip, container)
    assert r["first"] == 0
    assert r["code"] == 4, r["err"]
    assert _error_lines(r["err"]) == [f"bbmr-package: error: no space left on device writing {tmp_path / 'mnt' / 's'}/ "
                                      "(ENOSPC); nothing was written, the previous stream is unchanged"]
    assert len(r["cause"]) == 1 and cause in r["cause"][0]
    assert r["same"] and r["entries"] == ["s"]  # the old stream byte for byte, no temporary directory left
    assert r["played"] == [4, 0]


def _in_play(mnt: str, stream: str, fill: str) -> dict:
    """Play 2 frames to the tmpfs (--out, --report), then play again until it is full: the whole stream
    losslessly (``fill`` "out"), or the report alone with 8 KiB left (``fill`` "report")."""
    d = Path(mnt)
    outs = ["--out", d / "o.mp4", "--report", d / "r.json"]
    base = [stream, "--headless", "--upscaler", "bicubic", "--niqe-every", "0"]
    first, _ = _cli(play_cli, base + outs + ["--max-frames", "2"])
    before = _files(d)
    if fill == "out":
        argv = base + outs + ["--out-crf", "0"]
    else:
        st = os.statvfs(d)
        (d / "filler").write_bytes(b"\0" * (st.f_bfree * st.f_frsize - 8192))
        argv = base + outs[2:]
    code, err = _cli(play_cli, argv)
    (d / "filler").unlink(missing_ok=True)
    return {"first": first, "code": code, "err": err, "same": _files(d) == before, "entries": sorted(os.listdir(d)),
            "frames": _video_frames(d / "o.mp4")}


@pytest.mark.parametrize("fill,what", [("out", "o.mp4"), ("report", "r.json")])
def test_playing_into_a_full_tmpfs(stream, tmp_path, fill, what):
    r = _in_tmpfs(tmp_path, "96k", "_in_play", stream[1], fill)
    assert r["first"] == 0
    assert r["code"] == 4, r["err"]
    mnt = tmp_path / "mnt"
    kept = (f"the previous {mnt / 'o.mp4'} and {mnt / 'r.json'} are unchanged" if fill == "out" else
            f"the previous {mnt / 'r.json'} is unchanged")  # the report alone was asked for
    assert _error_lines(r["err"]) == [f"bbmr-play: error: no space left on device writing {mnt / what} (ENOSPC); "
                                      f"nothing was written, {kept}"]
    assert r["same"] and r["entries"] == ["o.mp4", "r.csv", "r.json", "r.png"] and r["frames"] == 2


def _in_record(mnt: str) -> dict:
    """Record 3 flat frames to the tmpfs, then record noise until it is full."""
    from player.live_record import Recorder

    path = Path(mnt) / "rec.mp4"
    rec = Recorder(str(path), 10)
    for i in range(3):
        rec.write(np.full((200, 320, 3), 60 + i, np.uint8))
    rec.close()
    before = _files(Path(mnt))
    rec, err = Recorder(str(path), 10), None
    try:
        for i in range(300):
            rec.write(_noise(i))
        rec.close()
    except DiskFullError as e:
        err = str(e)
    rec.write(_noise(0))  # after the failure: dropped
    rec.close()
    return {"err": err, "same": _files(Path(mnt)) == before, "entries": sorted(os.listdir(mnt)),
            "frames": _video_frames(path)}


def test_recording_into_a_full_tmpfs(tmp_path):
    r = _in_tmpfs(tmp_path, "128k", "_in_record")
    path = tmp_path / "mnt" / "rec.mp4"
    assert r["err"] == (f"no space left on device writing {path} (ENOSPC); the recording was removed, the "
                        f"previous {path} is unchanged")
    assert r["same"] and r["entries"] == ["rec.mp4"] and r["frames"] == 3


# ---- ENOSPC injected in-process

@pytest.fixture(scope="module")
def old_stream(tmp_path_factory):
    """(clip, a packaged SMALL stream) to copy as the previous stream at --out."""
    from tests.media import _clip

    d = tmp_path_factory.mktemp("old")
    _clip(d / "in.mp4")
    assert package_cli([str(d / "in.mp4"), "--out", str(d / "s"), *SMALL]) == 0
    return d / "in.mp4", d / "s"


def _fake_ffmpeg(tmp_path: Path, script: str) -> str:
    exe = tmp_path / "ffmpeg"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(0o755)
    return str(exe)


def _inject(monkeypatch, tmp_path, where: str) -> None:
    """Make one write path of the packager fail with ENOSPC, as it does on a full disk."""
    from pathlib import Path as P

    import packager.encode
    import packager.segment

    if where == "encoder":  # PyAV's muxer, on the third packet
        mux, n = packager.encode.LREncoder._mux, [0]

        def full(self, pkt, st):
            n[0] += 1
            if n[0] == 3:
                raise av.error.OSError(*ENOSPC, "x.ts")
            mux(self, pkt, st)

        monkeypatch.setattr(packager.encode.LREncoder, "_mux", full)
    elif where in ("segmenter says", "segmenter silent"):  # the HLS muxer reports it / writes an empty playlist
        remux = packager.segment.remux_hls

        def full(ts, playlist, options):
            remux(ts, playlist, options)
            if where == "segmenter says":
                raise av.error.OSError(*ENOSPC, str(playlist))
            playlist.write_bytes(b"")  # as FFmpeg's HLS muxer leaves it on a full tmpfs, without an error

        monkeypatch.setattr(packager.segment, "remux_hls", full)
        monkeypatch.setattr(packager.segment, "free_bytes", lambda d: 0)
    else:  # the manifest, the last file written
        write = P.write_text

        def full(self, *a, **k):
            if self.name == "manifest.json":
                self.write_bytes(b"{")  # partly written
                raise OSError(*ENOSPC)
            return write(self, *a, **k)

        monkeypatch.setattr(P, "write_text", full)


@pytest.mark.parametrize("where", ["encoder", "segmenter says", "segmenter silent", "manifest"])
def test_packaging_hits_enospc(old_stream, tmp_path, monkeypatch, where):
    clip, old = old_stream
    out = tmp_path / "d" / "s"
    shutil.copytree(old, out)
    before = _files(out)
    _inject(monkeypatch, tmp_path, where)
    code, err = _cli(package_cli, [clip, "--out", out, "--force", *SMALL])
    monkeypatch.undo()
    assert code == 4
    assert _error_lines(err) == [f"bbmr-package: error: no space left on device writing {out}/ (ENOSPC); nothing "
                                 "was written, the previous stream is unchanged"]
    assert _files(out) == before and os.listdir(out.parent) == ["s"]
    assert _plays(out) == (4, 0)


def test_ffmpeg_reporting_a_full_disk_is_that_oserror(tmp_path, monkeypatch):
    """The FFmpeg runs (the audio renditions, packager/audio.py) turn FFmpeg's report of a full disk into ENOSPC."""
    import ffmpeg

    import packager.segment

    exe = _fake_ffmpeg(tmp_path, 'echo "[out#0] Error writing trailer: No space left on device" >&2; exit 228')
    monkeypatch.setattr(packager.segment, "ffmpeg_exe", lambda: exe)
    with pytest.raises(OSError) as e:
        packager.segment.run_ffmpeg(ffmpeg.input("in.mp4").output(str(tmp_path / "a.m3u8")), tmp_path / "a.m3u8")
    assert e.value.errno == errno.ENOSPC


def test_package_api_raises_disk_full_and_a_new_out_stays_absent(old_stream, tmp_path, monkeypatch):
    from bbmr_stream.family import parse_ladder
    from packager import PackageConfig, package

    _inject(monkeypatch, tmp_path, "manifest")
    out = tmp_path / "new"  # no previous stream
    with pytest.raises(DiskFullError) as e:
        package(PackageConfig(str(old_stream[0]), str(out), device="cpu", max_frames=4, measure=False),
                tuple(parse_ladder("plain:30")))
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert str(e.value) == f"no space left on device writing {out}/ (ENOSPC); nothing was written"
    assert not out.exists() and not list(tmp_path.glob(".new*"))


def _inject_play(monkeypatch, where: str) -> None:
    """Make one write path of the player fail with ENOSPC."""
    from player.output import VideoWriter
    from player.report import Report

    if where == "out":  # the video's muxer, third frame
        write, n = VideoWriter.write, [0]

        def full(self, rgb):
            n[0] += 1
            if n[0] == 3:
                raise av.error.OSError(*ENOSPC, str(self.tmp))
            write(self, rgb)

        monkeypatch.setattr(VideoWriter, "write", full)
    elif where == "out trailer":
        monkeypatch.setattr(VideoWriter, "finish", lambda self: (_ for _ in ()).throw(av.error.OSError(*ENOSPC)))
    else:  # the report's plot, the last file written, half written
        def full(self, path):
            Path(path).write_bytes(b"\x89PNG")
            raise OSError(*ENOSPC)

        monkeypatch.setattr(Report, "plot", full)


@pytest.mark.parametrize("where,what", [("out", "o.mp4"), ("out trailer", "o.mp4"), ("report", "r.json")])
def test_playing_hits_enospc(stream, tmp_path, monkeypatch, where, what):
    outs = ["--out", tmp_path / "o.mp4", "--report", tmp_path / "r.json"]
    base = [stream[1], "--headless", "--upscaler", "bicubic", "--niqe-every", "0"]
    assert _cli(play_cli, base + outs + ["--max-frames", "2"])[0] == 0
    before = _files(tmp_path)
    _inject_play(monkeypatch, where)
    code, err = _cli(play_cli, base + outs)
    monkeypatch.undo()
    assert code == 4
    kept = f"the previous {tmp_path / 'o.mp4'} and {tmp_path / 'r.json'} are unchanged"
    assert _error_lines(err) == [f"bbmr-play: error: no space left on device writing {tmp_path / what} (ENOSPC); "
                                 f"nothing was written, {kept}"]
    assert _files(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["o.mp4", "r.csv", "r.json", "r.png"]
    assert _video_frames(tmp_path / "o.mp4") == 2


def test_downloads_that_do_not_fit_are_not_concealed():
    """A segment that does not fit on the local disk is an error, not a damaged segment to conceal."""
    from player.playback import media_error

    assert media_error(OSError(*ENOSPC)) is None
    assert media_error(av.error.OSError(*ENOSPC, "seg.m4s")) is None
    assert media_error(OSError(errno.EIO, "I/O error")).cause == "corrupt"


@pytest.mark.parametrize("where", ["write", "finish"])
def test_recorder_hits_enospc(tmp_path, monkeypatch, where):
    from player.live_record import Recorder
    from player.output import VideoWriter

    path = tmp_path / "rec.mp4"
    path.write_bytes(b"previous recording")
    rec = Recorder(str(path), 10)
    rec.write(_noise(0))

    def full(*a):
        raise av.error.OSError(*ENOSPC, str(tmp_path / ".rec.mp4.part.mp4"))

    monkeypatch.setattr(VideoWriter, where, full)
    msg = (f"no space left on device writing {path} (ENOSPC); the recording was removed, the previous {path} "
           "is unchanged")
    with pytest.raises(DiskFullError, match="no space left") as e:
        if where == "write":
            rec.write(_noise(1))
        rec.close()
    assert str(e.value) == msg
    monkeypatch.undo()
    rec.write(_noise(2))  # after the failure: dropped, no new file
    rec.close()
    assert path.read_bytes() == b"previous recording" and sorted(os.listdir(tmp_path)) == ["rec.mp4"]


@pytest.fixture
def clip(tmp_path_factory):
    from tests.media import _clip

    p = tmp_path_factory.mktemp("clip") / "in.mp4"
    _clip(p)
    return p


def test_live_view_record_on_a_full_disk_stops_the_viewer_with_one_line(tmp_path, monkeypatch, capsys):
    """``bbmr-live view --record`` (no --seconds: it would run forever) on a disk that fills: the viewer stops at
    once, one line, exit 4, the previous recording unchanged, no partial file."""
    import asyncio
    import threading

    from packager.live_send import SendConfig, start_sender
    from player.live_cli import main as live
    from player.output import VideoWriter

    path = tmp_path / "rec.mp4"
    path.write_bytes(b"previous recording")

    def full(*a):
        raise av.error.OSError(*ENOSPC, str(tmp_path / ".rec.mp4.part.mp4"))

    monkeypatch.setattr(VideoWriter, "write", full)
    port, ready, stop = [], threading.Event(), threading.Event()

    def serve():
        async def go():
            s = await start_sender(SendConfig(size=(128, 96), fps=10.0, device="cpu", port=0))
            port.append(s.port)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            await s.close()

        asyncio.run(go())

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        assert ready.wait(60)
        code = live(["view", f"http://127.0.0.1:{port[0]}/", "--upscaler", "bicubic", "--device", "cpu",
                     "--fps", "10", "--record", str(path)])
    finally:
        stop.set()
        th.join(30)
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("{")]  # stats lines are JSON
    assert code == 4, err
    assert len(err) == 1 and err[0].startswith("bbmr-live: error: no space left on device writing"), err
    assert path.read_bytes() == b"previous recording" and sorted(os.listdir(tmp_path)) == ["rec.mp4"]
