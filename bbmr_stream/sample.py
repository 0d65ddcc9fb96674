"""The embedded default clip: a camera pan over photos that ship with scikit-image, written as an ordinary
H.264 MP4 (4:2:0, BT.709 tags, CRF 12), so ``bbmr-demo`` and the tests need no download and no ../shared.

The photos (astronaut, coffee, rocket, chelsea) are resized to the canvas height with Lanczos (at 960x540 that is
1.1-1.9x up, so the content is softer than a real 1080p camera frame) and laid side by side; the camera moves
left to right with a slow vertical drift, at a whole number of pixels per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bbmr_stream.colour import video_frame
from bbmr_stream.x264 import with_asm

PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")


def mosaic(height: int) -> np.ndarray:
    """HxWx3 uint8: the photos resized to ``height`` and concatenated left to right."""
    from PIL import Image
    from skimage import data

    tiles = []
    for name in PHOTOS:
        img = Image.fromarray(np.asarray(getattr(data, name)())[:, :, :3])
        w = int(round(img.width * height / img.height))
        tiles.append(np.asarray(img.resize((w, height), Image.LANCZOS)))
    return np.concatenate(tiles, axis=1)


def pan_frames(width: int, height: int, n: int):
    """``n`` RGB frames (HxWx3 uint8) of a left-to-right pan over :func:`mosaic`."""
    canvas = mosaic(int(round(height * 1.07)) + 2)
    ch, cw = canvas.shape[:2]
    if cw < width:
        raise ValueError(f"a {width}px wide sample needs a wider mosaic than {cw}px")
    for i in range(n):
        t = i / max(1, n - 1)
        x, y = int(round(t * (cw - width))), int(round(t * (ch - height)))
        yield np.ascontiguousarray(canvas[y:y + height, x:x + width])


def write_sample(path: str | Path, width: int = 960, height: int = 540, seconds: float = 4.0, fps: int = 24,
                 crf: float = 12.0) -> Path:
    """Write the sample pan to ``path`` (MP4, libx264 CRF ``crf``, yuv420p, BT.709 limited range, tagged) and
    return it. ``width`` and ``height`` must be even."""
    import av

    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"sample size must be even and >= 64, got {width}x{height}")
    path = Path(path)
    n = max(1, int(round(seconds * fps)))
    tmp = path.with_name(f".{path.name}.part")
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.options = with_asm({"crf": str(crf), "preset": "medium"})
        cc = s.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 1, 1, 1, 1  # BT.709, limited
        for i, rgb in enumerate(pan_frames(width, height, n)):
            f = video_frame(rgb, "bt709", False)
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    tmp.replace(path)
    return path
