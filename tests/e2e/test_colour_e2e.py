"""Video PSNR-Y tied to FFmpeg's psnr filter: the metric itself, and the packager's manifest figure."""

import re
import subprocess

import av
import numpy as np

from bbmr_stream.colour import video_frame
from bbmr_stream.metrics import psnr_luma
from tests.media import smooth_picture


def _encode(path, frames, crf):
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.codec_context.options = {"qp": "0"} if crf is None else {"crf": str(crf)}
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1  # BT.709, limited
        for i, img in enumerate(frames):
            f = video_frame(img, "bt709", False)
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def _ffmpeg_psnr_y(dist: str, ref: str, cwd) -> list[float]:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", dist, "-i", ref,
                    "-lavfi", "[0:v][1:v]psnr=stats_file=psnr.log", "-f", "null", "-"], check=True, cwd=cwd)
    return [10 * np.log10(255.0**2 / float(re.search(r"mse_y:([0-9.]+)", line).group(1)))
            for line in (cwd / "psnr.log").read_text().splitlines()]


def test_psnr_luma_matches_ffmpeg_psnr_filter(tmp_path):
    """Per frame, FFmpeg's psnr filter (y) on the two files == psnr_plane on the decoded Y planes, and ==
    psnr_luma(source Y, decoded RGB) (what the packager and player measure) within 0.01 dB."""
    import imageio_ffmpeg

    from bbmr_stream.decode import frames, probe
    from bbmr_stream.metrics import psnr_plane

    # a natural picture, saturation and contrast reduced so that coded values stay inside the RGB gamut:
    # RGB clamps Y outside 16..235 and out-of-gamut colours (coding overshoot), the one way the luma of a
    # displayed picture departs from its Y plane (by ~0.06 dB on the full-range picture)
    src_frames = [(0.3 * im + 0.3 * im.mean(axis=2, keepdims=True) + 60).astype(np.uint8)
                  for im in (smooth_picture(128, 192, i).astype(np.float64) for i in range(6))]
    ref, dist = tmp_path / "ref.mkv", tmp_path / "dist.mkv"
    _encode(ref, src_frames, None)
    _encode(dist, src_frames, 30)
    stats = tmp_path / "psnr.log"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(dist), "-i", str(ref),
                    "-lavfi", f"[0:v][1:v]psnr=stats_file={stats.name}", "-f", "null", "-"],
                   check=True, cwd=tmp_path)
    # the stats file prints mse_y with 2 decimals (psnr_y with only 2 decimals of dB): PSNR from mse_y
    want = [10 * np.log10(255.0**2 / float(re.search(r"mse_y:([0-9.]+)", line).group(1)))
            for line in stats.read_text().splitlines()]
    r, d = probe(str(ref)), probe(str(dist))
    pairs = list(zip(frames(r), frames(d)))
    planes = [psnr_plane(a.y, b.y) for a, b in pairs]
    got = [psnr_luma(a.y, b.rgb, d.matrix, d.full_range) for a, b in pairs]
    assert len(got) == len(want) == 6
    assert 25 < min(want) < 45  # a real distortion, not a trivial match
    np.testing.assert_allclose(planes, want, atol=0.002)
    # the luma of the displayed 8-bit RGB adds its rounding noise (~0.1 code values RMS)
    np.testing.assert_allclose(got, want, atol=0.03)


def test_manifest_psnr_of_a_plain_rung_is_ffmpegs(tmp_path):
    """The packager's PSNR-Y of a full-size plain rung (mean of per-frame PSNR) == FFmpeg's psnr filter on
    the shipped segments against the source, within 0.01 dB (full-range picture, coding overshoot and all)."""
    from bbmr_stream.manifest import load
    from packager.cli import main as package

    src = tmp_path / "src.mkv"
    _encode(src, [smooth_picture(128, 192, i) for i in range(8)], None)
    out = tmp_path / "stream"
    assert package([str(src), "--out", str(out), "--ladder", "plain:32", "--segment", "0.4", "--device", "cpu"]) == 0
    rend = load(out).renditions[0]
    cat = tmp_path / "all.mp4"  # fMP4: the init segment, then the media segments (a playable file)
    cat.write_bytes(b"".join((out / f).read_bytes() for f in [rend.init.file] + [s.file for s in rend.segments]))
    want = _ffmpeg_psnr_y(str(cat), str(src), tmp_path)
    assert len(want) == 8 and 25 < np.mean(want) < 45
    assert abs(rend.psnr_y - float(np.mean(want))) < 0.01
