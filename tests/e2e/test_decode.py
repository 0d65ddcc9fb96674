"""bbmr_stream.decode: rotation metadata (display matrix) is honoured, with ffmpeg's own autorotation as oracle."""
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from bbmr_stream.decode import frames, probe
from tests.media import _write_lossless

H, W = 48, 80


@pytest.fixture(scope="module")
def upright_clip(tmp_path_factory):
    a = np.zeros((H, W, 3), np.uint8)  # asymmetric: any flip or wrong turn shows
    a[: H // 2, : W // 3] = 255
    a[:, -8:, 1] = 200
    a[-6:, :, 2] = 150
    path = tmp_path_factory.mktemp("rot") / "upright.mp4"
    _write_lossless(path, [a] * 3, W, H)
    return path


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied_as_ffmpeg_does(upright_clip, degrees):
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    rotated = upright_clip.with_name(f"rot{degrees}.mp4")
    subprocess.run([ff, "-v", "error", "-y", "-display_rotation:v:0", str(degrees), "-i", str(upright_clip),
                    "-c", "copy", str(rotated)], check=True)
    info = probe(str(rotated))
    assert info.rotation == degrees
    ours = [f.rgb for f in frames(info)]
    # ffmpeg CLI applies the display matrix by default (autorotate); same colour conversion as ours
    raw = subprocess.run([ff, "-v", "error", "-i", str(rotated), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    h, w = (W, H) if degrees in (90, 270) else (H, W)
    assert (info.height, info.width) == (h, w)
    ref = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert len(ours) == len(ref) == 3
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        # the frame's content is the same picture turned the same way (colour conversion may differ by a step)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
