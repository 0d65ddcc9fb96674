"""A multi-scene 1080p (or ``--size``) test title: camera pans with hard cuts over the 2560x1440 photos of ``bench2k``.

``python -m bench.make_multiscene ../shared/data/bench2k out.mp4 [--seconds 60] [--scene-seconds 6]``

Conventions (as the demo sample, bbmr_stream/sample.py): the frame is a 1920x1080 window of one photo at its
native pixels (no resampling), moving a whole number of pixels per frame; H.264 (libx264, preset medium, one
thread so the bytes are reproducible), yuv420p, BT.709 limited range tagged, CRF 14, 30 fps, written with the
project's exact RGB -> YUV conversion (bbmr_stream.colour.video_frame). Scenes of ``--scene-seconds`` each cut
hard to the next photo (photos in name order, cycling); scene ``i`` pans along one of eight paths (corner to
corner, edge to edge, in both directions) chosen by a seeded RNG, so the title is deterministic for a seed.
Segment boundaries of a 2 s HLS ladder fall on cuts when ``--scene-seconds`` is a multiple of 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

W, H = 1920, 1080

# start and end of the window's top-left corner as fractions of the free travel (x, y)
PATHS = [((0, 0), (1, 1)), ((1, 1), (0, 0)), ((0, 1), (1, 0)), ((1, 0), (0, 1)),
         ((0, 0.5), (1, 0.5)), ((1, 0.5), (0, 0.5)), ((0.5, 0), (0.5, 1)), ((0.5, 1), (0.5, 0))]


def load_photos(data: Path, size: tuple[int, int] = (W, H)) -> list[tuple[str, np.ndarray]]:
    w, h = size
    from PIL import Image

    files = sorted(p for p in data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    out = []
    for p in files:
        a = np.asarray(Image.open(p).convert("RGB"))
        if a.shape[0] < h or a.shape[1] < w:
            continue
        out.append((p.name, a))
    if not out:
        raise SystemExit(f"{data}: no photo of at least {w}x{h}")
    return out


def scenes(n_photos: int, n_scenes: int, seed: int) -> list[tuple[int, int]]:
    """(photo index, path index) per scene: photos cycle in name order, paths drawn by a seeded RNG."""
    rng = np.random.default_rng(seed)
    return [(i % n_photos, int(rng.integers(len(PATHS)))) for i in range(n_scenes)]


def frames(photos, seconds: float, scene_seconds: float, fps: int, seed: int, size: tuple[int, int] = (W, H)):
    w, h = size
    n_total = int(round(seconds * fps))
    per = int(round(scene_seconds * fps))
    plan = scenes(len(photos), -(-n_total // per), seed)
    for i in range(n_total):
        s, j = divmod(i, per)
        pi, path = plan[s]
        img = photos[pi][1]
        fx, fy = img.shape[1] - w, img.shape[0] - h
        t = j / max(1, per - 1)
        (x0, y0), (x1, y1) = PATHS[path]
        x = int(round((x0 + (x1 - x0) * t) * fx))
        y = int(round((y0 + (y1 - y0) * t) * fy))
        yield np.ascontiguousarray(img[y:y + h, x:x + w])


def write(data: Path, out: Path, seconds: float, scene_seconds: float, fps: int, crf: float, seed: int,
          size: tuple[int, int] = (W, H)) -> dict:
    import av

    from bbmr_stream.colour import video_frame

    photos = load_photos(data, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    n = 0
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        cc = s.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 1, 1, 1, 1  # BT.709, limited
        for i, rgb in enumerate(frames(photos, seconds, scene_seconds, fps, seed, size)):
            f = video_frame(rgb, "bt709", False)
            f.pts = i
            c.mux(s.encode(f))
            n += 1
            if i % 150 == 0:
                print(f"frame {i}", file=sys.stderr, flush=True)
        c.mux(s.encode(None))
    tmp.replace(out)
    plan = scenes(len(photos), -(-n // int(round(scene_seconds * fps))), seed)
    return {"file": str(out), "frames": n, "fps": fps, "crf": crf, "seed": seed,
            "scenes": [{"photo": photos[p][0], "path": PATHS[q]} for p, q in plan]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="make_multiscene", description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="directory of photos of at least 1920x1080 (../shared/data/bench2k)")
    ap.add_argument("out", help="MP4 file to write")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scene-seconds", type=float, default=6.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--crf", type=float, default=14.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default=f"{W}x{H}", help="WIDTHxHEIGHT of the window (default %(default)s)")
    a = ap.parse_args(argv)
    size = tuple(int(v) for v in a.size.lower().split("x"))
    import json

    info = write(Path(a.data), Path(a.out), a.seconds, a.scene_seconds, a.fps, a.crf, a.seed, size)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
