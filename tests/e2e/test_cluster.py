"""The packager's tasks in worker processes and on a Ray cluster (issue: package a title on a cluster): the stream is
byte-identical to the one-process run's, a worker killed mid-run changes nothing, a cluster that goes away is one
line and a non-zero exit with nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.media import _write_lossless

BIN = Path(sys.executable).parent
LADDER = "plain:160x100:30,plain-sr:2:30,uniform:30,bbmr:30"
ARGS = ["--segment", "0.4", "--scorer", "bicubic", "--upscaler", "bicubic", "--device", "cpu", "--measure-frames", "6",
        "--no-web-models", "--ladder", LADDER]


def long_clip(path: Path, n: int = 48) -> None:
    """320x200 at 10 fps, ``n`` frames (12 GOPs of 4 at --segment 0.4): a texture panning with a noisy square."""
    from skimage import data

    base = np.asarray(data.astronaut()[:, :, :3])
    rng = np.random.default_rng(1)

    def frame(i: int) -> np.ndarray:
        img = base[10 + 4 * i:10 + 4 * i + 200, 40:360].copy()
        y, x = (i * 37) % 140, (i * 53) % 260
        img[y:y + 60, x:x + 60] = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
        return img

    _write_lossless(path, (frame(i) for i in range(n)), 320, 200)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cluster") / "in.mp4"
    long_clip(p)
    return p


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "stream"
    r = package(clip, out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    return out


def package(src: Path, out: Path, *extra: str, env: dict | None = None, wait: bool = True):
    cmd = [str(BIN / "bbmr-package"), str(src), "--out", str(out), *ARGS, *extra]
    e = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)


def manifest_without_how(path: Path) -> dict:
    m = json.loads(path.read_text())
    made = m["conventions"].pop("made")
    m["conventions"].pop("timing_s")
    return m, made


def assert_same_stream(a: Path, b: Path) -> dict:
    """Every file of ``b`` byte-identical to ``a``'s, the manifest apart from timing and how it was made (returned)."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    assert len(fa) > 20
    for rel in fa:
        if rel.name != "manifest.json":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, _ = manifest_without_how(a / "manifest.json")
    mb, made = manifest_without_how(b / "manifest.json")
    assert ma == mb
    return made


def test_reference_is_one_process(reference):
    m = json.loads((reference / "manifest.json").read_text())
    assert m["conventions"]["made"] == {"runner": "process", "workers": 1}
    assert len(m["renditions"]) == 4 and len(m["renditions"][0]["segments"]) == 12
    assert all(r["psnr_y"] > 20 for r in m["renditions"])


def test_workers_give_the_same_stream(clip, reference, tmp_path):
    out = tmp_path / "w2"
    r = package(clip, out, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert assert_same_stream(reference, out) == {"runner": "processes", "workers": 2, "pool_restarts": 0}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _wait_for(p: subprocess.Popen, ready):
    """Poll ``ready()`` until it gives something true (returned) while the run ``p`` lasts (at most 120 s)."""
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        got = ready()
        if got:
            return got
        time.sleep(0.02)
    return None


def _workers(p: subprocess.Popen) -> list[int]:
    return [k for k in _children(p.pid) if _is_worker(k)]


def _mid_run(out: Path) -> bool:
    """The encode stage is under way: a segment task's result has been spilled (more are pending: 12 segments)."""
    return any(out.parent.glob(f".{out.name}.tmp-*/work/*.pkt"))


def _is_worker(pid: int) -> bool:
    """A live local worker process (multiprocessing's spawn)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_killed_worker_process_is_replaced(clip, reference, tmp_path):
    """A local worker killed (SIGKILL) mid-run: the pool is made again, the lost tasks run again, same stream."""
    out = tmp_path / "killed"
    p = package(clip, out, "--workers", "2", wait=False)
    # working: a first task is done, the others are pending or running
    kids = _wait_for(p, lambda: _mid_run(out) and _workers(p))
    if kids:
        os.kill(kids[0], signal.SIGKILL)
    _, err = p.communicate(timeout=600)
    assert kids, "the run ended before a worker could be killed"
    assert p.returncode == 0, err
    made = assert_same_stream(reference, out)
    assert made["pool_restarts"] >= 1


def test_sigterm_stops_the_workers(clip, tmp_path):
    """SIGTERM to the packager mid-run: exit 143, its workers gone, nothing written."""
    p = package(clip, tmp_path / "term", "--workers", "2", wait=False)
    kids = _wait_for(p, lambda: _mid_run(tmp_path / "term") and len(ws := _workers(p)) == 2 and ws)
    assert kids and len(kids) == 2, "the workers did not start"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("bbmr-package: terminated"), err
    time.sleep(1)
    assert not any(_is_worker(k) for k in kids)
    assert not list(tmp_path.iterdir())


def test_bad_run_options(clip, tmp_path):
    for extra, says in ((("--workers", "two"), "--workers two"), (("--workers", "-1"), "--workers -1"),
                        (("--cluster", "http://x"), "--cluster http://x"),
                        (("--cluster", "ray://127.0.0.1:1"), "cannot connect")):
        r = package(clip, tmp_path / "bad", *extra)
        assert r.returncode == 2, (extra, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr, r.stderr
        assert not list(tmp_path.iterdir())


# ---- Ray --------------------------------------------------------------------------------------------------------

ray = pytest.importorskip("ray", reason="the cluster extra (pip install -e '.[cluster]') is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """A local Ray head on 127.0.0.1 (its own temp dir and ports), stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.gcs, self.client = _free_port(), _free_port()
        self.tmp = tmp
        # no token authentication: a test cluster of this machine (a token left in ~/.ray would switch it on)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs}",
               f"--ray-client-server-port={self.client}", "--num-cpus=2", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={tmp}"]
        subprocess.run(cmd, check=True, capture_output=True, env=self.env, timeout=120)
        t0 = time.time()  # the Ray Client server starts after `ray start` returns
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.client), timeout=1).close()
                break
            except OSError:
                if time.time() - t0 > 90:
                    raise
                time.sleep(0.5)

    @property
    def address(self) -> str:
        return f"ray://127.0.0.1:{self.client}"

    def stop(self) -> None:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=self.env, timeout=120)


def _ray_workers_running_tasks() -> list[int]:
    """PIDs of Ray worker processes executing a packager task (Ray titles them ``ray::_call``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::_call"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


@pytest.fixture(scope="module")
def head():
    tmp = Path(f"/tmp/bbmr-ray-{os.getpid()}")
    h = Head(tmp)
    yield h
    h.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_ray_cluster_gives_the_same_stream(clip, reference, head, tmp_path):
    out = tmp_path / "ray"
    r = package(clip, out, "--cluster", head.address, env=head.env)
    assert r.returncode == 0, r.stderr
    made = assert_same_stream(reference, out)
    assert made == {"runner": "ray", "workers": 2, "nodes": 1}


def test_ray_worker_killed_mid_task(clip, reference, head, tmp_path):
    """A Ray worker killed (SIGKILL) while it runs a task: Ray runs the task again, the stream is the same."""
    out = tmp_path / "ray_killed"
    p = package(clip, out, "--cluster", head.address, wait=False, env=head.env)
    busy = _wait_for(p, _ray_workers_running_tasks)
    if busy:
        os.kill(busy[0], signal.SIGKILL)
    _, err = p.communicate(timeout=600)
    assert busy, "no task was seen running"
    assert p.returncode == 0, err
    assert_same_stream(reference, out)


def test_cluster_going_away(clip, reference, tmp_path):
    """The cluster stopped mid-run: one line, exit 2, no temporary directory left, the previous stream untouched."""
    h = Head(Path(f"/tmp/bbmr-ray-gone-{os.getpid()}"))
    try:
        out = tmp_path / "gone"
        shutil.copytree(reference, out)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        p = package(clip, out, "--force", "--cluster", h.address, wait=False, env=h.env)
        _wait_for(p, _ray_workers_running_tasks)
        h.stop()
        _, err = p.communicate(timeout=300)
    finally:
        h.stop()
        shutil.rmtree(h.tmp, ignore_errors=True)
    assert p.returncode == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("bbmr-package: error: --cluster"), err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(q.name for q in tmp_path.iterdir()) == ["gone"]
