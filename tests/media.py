"""Small generated media for the tests (no ../shared needed)."""

from pathlib import Path

import av
import numpy as np

W, H, FPS, N = 320, 200, 10, 12  # 3 x 2 blocks (odd sizes: padded), GOP = 4 frames at --segment 0.4


def _clip(path: Path) -> None:
    """Textured picture panning + a moving noisy square: the best scale per block changes every frame."""
    from skimage import data

    base = np.asarray(data.astronaut()[:, :, :3])
    rng = np.random.default_rng(0)

    def frame(i: int) -> np.ndarray:
        img = base[20 + 7 * i:20 + 7 * i + H, 30:30 + W].copy()
        y, x = (i * 37) % (H - 60), (i * 53) % (W - 60)
        img[y:y + 60, x:x + 60] = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
        img[:, (i * 29) % W:] //= 3  # flat dark area that moves
        return img

    _write_lossless(path, (frame(i) for i in range(N)), W, H)


def _write_lossless(path: Path, frames, width: int, height: int) -> None:
    """RGB frames -> H.264 qp 0 4:4:4 at FPS, pts 0, 1, 2, ..."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = width, height, "yuv444p"
        s.codec_context.options = {"qp": "0", "preset": "ultrafast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def _texture_clip(path: Path, n: int = N) -> None:
    """384 x 256 (3 x 2 blocks), near-lossless: a natural texture (scikit-image's brick wall photo) panning in
    the left block column, a smooth moving colour gradient elsewhere, so the allocator mixes x2/x4 (texture)
    with x8 (gradient) and a trained SR model clearly beats bicubic."""
    from skimage import data

    base = np.asarray(data.brick())
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)

    def frame(i: int) -> np.ndarray:
        img = np.empty((256, 384, 3), np.uint8)
        img[:, :128] = base[5 * i:5 * i + 256, 3 * i:3 * i + 128, None]
        for c, (a, b) in enumerate(((0.011, 0.004), (0.006, 0.009), (0.003, 0.007))):
            img[:, 128:, c] = (128 + 90 * np.sin(a * xx + b * yy + 0.3 * i + c)).astype(np.uint8)
        return img

    _write_lossless(path, (frame(i) for i in range(n)), 384, 256)


def smooth_picture(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """A crop of scikit-image's astronaut photo (smooth areas and edges), (h, w, 3) uint8."""
    from skimage import data

    img = np.asarray(data.astronaut())
    y, x = np.random.default_rng(seed).integers(0, 200, 2)
    return np.ascontiguousarray(img[y:y + h, x:x + w])
