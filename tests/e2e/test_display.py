"""The real window, on a virtual X server (Xvfb, installed by .ci/run). No Xvfb is a failure, not a skip."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from bbmr_stream.imageio import read_image
from bbmr_stream.metrics import psnr_y
from player.display import fit, fit_size


@pytest.fixture()
def xvfb():
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is not installed (apt-get install xvfb; make test does it as root)"
    r, w = os.pipe()  # Xvfb picks a free display and writes its number here
    p = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                         pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        num = f.readline().strip()
    assert num.isdigit() and p.poll() is None, "Xvfb did not start"
    yield f":{num}"
    p.terminate()
    p.wait(10)


def test_window_shows_the_decoded_frame(stream, xvfb, tmp_path):
    from PIL import ImageGrab

    _, out = stream
    frames_dir = tmp_path / "frames"
    env = dict(os.environ, DISPLAY=xvfb)
    proc = subprocess.Popen([sys.executable, "-m", "player.cli", str(out), "--upscaler", "bicubic", "--max-frames",
                             "1", "--frames-dir", str(frames_dir), "--window-size", "160x100", "--linger", "30",
                             "--niqe-every", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        png = frames_dir / "frame_000000.png"
        deadline = time.time() + 120
        while not png.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert png.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no frame"
        time.sleep(2.0)  # the window draws the frame
        shot = np.asarray(ImageGrab.grab(xdisplay=xvfb).convert("RGB"))
    finally:
        proc.terminate()
        proc.wait(10)
    frame = read_image(png)
    w, h = fit_size(frame.shape[1], frame.shape[0], 160, 100)
    assert (w, h) == (160, 100)
    expect = fit(frame, (w, h))
    from PIL import Image

    Image.fromarray(shot).save(tmp_path / "screen.png")
    got = shot[:h, :w]  # no window manager: the window sits at +0+0 without decorations
    assert psnr_y(expect, got) >= 30.0, psnr_y(expect, got)
