"""Quality metrics with the conventions of the SR literature.

Video PSNR-Y (:func:`psnr_luma`): the source's own decoded Y plane vs the reconstruction's luma in the
source's matrix (BT.709 for HD), as FFmpeg's ``psnr`` filter and libvmaf; peak 255, no crop.

Image PSNR-Y (:func:`psnr_y`): BT.601 luma of RGB in [0, 1], ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
(so Y is on the [0, 255] scale, 16..235), *not* rounded; ``crop`` pixels removed at every border (SR papers
use crop = scale; video reports use 0); peak 255. Identical images give ``inf``.

NIQE: Mittal et al. 2012 with the semantics of MATLAB ``niqe.m`` as reproduced by BasicSR 1.4.2
``calculate_niqe``: Y as above, rounded to integers; image cropped to whole 96x96 blocks; 2 scales (the
second by MATLAB-style bicubic ``imresize(0.5)`` with antialiasing); 18 AGGD/GGD features per block and
scale (circular shifts inside the block, as BasicSR); distance to the pristine model vendored in
``bbmr_stream/data/niqe_pris_params.npz`` (see ``bbmr_stream/data/NOTICE``). Vectorised over blocks, the
Gaussian local mean/variance run as separable 1-D filters (the 7x7 window is rank one).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.special import gamma as _gamma

Y_COEFFS = (65.481, 128.553, 24.966)  # BT.601 on RGB in [0, 1] -> Y in [16, 235]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB (or float RGB on [0, 255]) -> float64 Y on the [0, 255] scale (BT.601, unrounded)."""
    x = np.asarray(img, dtype=np.float64) / 255.0
    return 16.0 + x[..., 0] * Y_COEFFS[0] + x[..., 1] * Y_COEFFS[1] + x[..., 2] * Y_COEFFS[2]


def rgb_to_y_torch(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float RGB in [0, 1] -> (N, H, W) Y on the [0, 255] scale (BT.601, unrounded)."""
    c = torch.tensor(Y_COEFFS, dtype=x.dtype, device=x.device)
    return 16.0 + torch.einsum("nchw,c->nhw", x, c)


def _crop(a, crop: int):
    if crop < 0:
        raise ValueError("crop must be >= 0")
    if crop == 0:
        return a
    return a[..., crop:-crop, crop:-crop]


def mse_to_psnr(mse: float | np.ndarray) -> float | np.ndarray:
    """MSE on the [0, 255] scale -> PSNR in dB (peak 255); 0 -> inf."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / np.asarray(mse, dtype=np.float64))


def psnr_y(a: np.ndarray, b: np.ndarray, crop: int = 0) -> float:
    """PSNR-Y in dB between two (H, W, 3) RGB uint8 images (BT.601 Y, unrounded, ``crop`` px border cut)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    d = _crop(rgb_to_y(a), crop) - _crop(rgb_to_y(b), crop)
    return float(mse_to_psnr(np.mean(d * d)))


def psnr_plane(ref: np.ndarray, dist: np.ndarray) -> float:
    """PSNR in dB (peak 255) between two (H, W) planes of 8-bit code values (``dist`` may be unrounded)."""
    if ref.shape != dist.shape:
        raise ValueError(f"shape mismatch {ref.shape} vs {dist.shape}")
    d = np.asarray(ref, np.float64) - np.asarray(dist, np.float64)
    return float(mse_to_psnr(np.mean(d * d)))


def psnr_luma(ref_y: np.ndarray, rec_rgb: np.ndarray, matrix: str, full_range: bool = False) -> float:
    """Video PSNR-Y: the source's decoded (H, W) uint8 luma plane vs the luma of an (H, W, 3) uint8 RGB
    reconstruction in the source's own matrix and range (exact, unrounded: :func:`bbmr_stream.colour.luma`),
    peak 255, no crop. For a reconstruction that is a decoded YUV picture this is FFmpeg's ``psnr`` filter on
    Y (tested within 0.01 dB)."""
    from bbmr_stream.colour import luma

    return psnr_plane(ref_y, luma(rec_rgb, matrix, full_range))


def psnr_y_torch(a: torch.Tensor, b: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Per-image PSNR-Y (dB) of (N, 3, H, W) float RGB in [0, 1]; same convention as :func:`psnr_y`."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    d = _crop(rgb_to_y_torch(a.double()), crop) - _crop(rgb_to_y_torch(b.double()), crop)
    mse = d.pow(2).mean(dim=(-2, -1))
    return 10.0 * torch.log10(255.0**2 / mse)


def block_mse_y(hr_blocks: torch.Tensor, rec_blocks: torch.Tensor, valid: np.ndarray | None = None
                ) -> np.ndarray:
    """Per-block MSE on BT.601 Y ([0, 255] scale, unrounded) between (n, 3, b, b) RGB tensors in [0, 1],
    averaged over each block's valid pixels (``valid``: (n, b, b) bool; None = all pixels)."""
    d = (rgb_to_y_torch(rec_blocks.double()) - rgb_to_y_torch(hr_blocks.double())).pow(2)
    if valid is None:
        return d.mean(dim=(1, 2)).cpu().numpy()
    m = torch.from_numpy(valid).to(d.device, d.dtype)
    return ((d * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1)).cpu().numpy()


# ----------------------------------------------------------------------------------------------- NIQE

NIQE_BLOCK = 96


@lru_cache(maxsize=1)
def _pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with resources.files("bbmr_stream.data").joinpath("niqe_pris_params.npz").open("rb") as f:
        d = np.load(f)
        mu, cov, win = d["mu_pris_param"], d["cov_pris_param"], d["gaussian_window"]
    # The 7x7 window is an outer product (rank one): filter separably with its 1-D factor.
    u, s, vt = np.linalg.svd(win)
    g1 = u[:, 0] * math.sqrt(s[0])
    g1 = g1 * np.sign(g1.sum())
    if not np.allclose(np.outer(g1, g1), win, atol=1e-12):
        raise RuntimeError("NIQE window is not separable")
    return mu.reshape(-1), cov, g1


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    gam = np.arange(0.2, 10.001, 0.001)
    r = 1.0 / gam
    r_gam = np.square(_gamma(r * 2)) / (_gamma(r) * _gamma(r * 3))
    return gam, r_gam


def _argmin_sq(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """index of argmin((table - x)^2) for each x, table increasing; ties go to the lower index (np.argmin)."""
    i = np.clip(np.searchsorted(table, x), 1, len(table) - 1)
    lo, hi = table[i - 1], table[i]
    pick_hi = (hi - x) ** 2 < (lo - x) ** 2
    out = np.where(pick_hi, i, i - 1)
    return np.where(np.isnan(x), 0, out)


def _aggd(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD (alpha, beta_l, beta_r) of each block, flattened over all axes but the first (BasicSR)."""
    b = blocks.reshape(blocks.shape[0], -1)
    neg = np.minimum(b, 0)
    pos = np.maximum(b, 0)
    n_neg = np.count_nonzero(neg, axis=1)
    n_pos = np.count_nonzero(pos, axis=1)
    sq_neg = np.einsum("ij,ij->i", neg, neg)
    sq_pos = np.einsum("ij,ij->i", pos, pos)
    n = b.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(sq_neg / n_neg)
        right = np.sqrt(sq_pos / n_pos)
        gh = left / right
        rhat = ((pos.sum(1) - neg.sum(1)) / n) ** 2 / ((sq_neg + sq_pos) / n)
        rn = rhat * (gh**3 + 1) * (gh + 1) / (gh**2 + 1) ** 2
    gam, r_gam = _aggd_table()
    alpha = gam[_argmin_sq(r_gam, rn)]
    f = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left * f, right * f


def _features(blocks: np.ndarray) -> np.ndarray:
    """(n, bh, bw) normalised blocks -> (n, 18) NIQE features."""
    shifts = ((0, 1), (1, 0), (1, 1), (1, -1))
    jobs = [lambda: _aggd(blocks)] + [lambda s=s: _aggd(blocks * np.roll(blocks, s, axis=(1, 2))) for s in shifts]
    # numpy releases the GIL in these kernels: the five estimates run side by side
    results = list(_pool().map(lambda f: f(), jobs))
    a, bl, br = results[0]
    feats = [a, (bl + br) / 2]
    for a, bl, br in results[1:]:
        mean = (br - bl) * (_gamma(2 / a) / _gamma(1 / a))
        feats += [a, mean, bl, br]
    return np.stack(feats, axis=1)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="niqe")


def _blocks(img: np.ndarray, bh: int, bw: int) -> np.ndarray:
    h, w = img.shape
    nh, nw = h // bh, w // bw
    return img[: nh * bh, : nw * bw].reshape(nh, bh, nw, bw).transpose(0, 2, 1, 3).reshape(-1, bh, bw)


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@lru_cache(maxsize=16)
def _matlab_resize_matrix(n_in: int, scale: float) -> sparse.csr_matrix:
    """(n_out, n_in) sparse matrix of MATLAB ``imresize`` (bicubic, antialias, symmetric border) along one axis."""
    n_out = int(math.ceil(n_in * scale))
    kw = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kw / 2)
    p = int(math.ceil(kw)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    dist = u[:, None] - idx
    wts = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    wts = wts / wts.sum(1, keepdims=True)
    # symmetric padding: index i (1-based) outside [1, n] mirrors to 1 - i or 2n + 1 - i
    j = idx - 1
    j = np.where(j < 0, -j - 1, j)
    j = np.where(j >= n_in, 2 * n_in - j - 1, j).astype(np.int64)
    m = sparse.coo_matrix((wts.reshape(-1), (np.repeat(np.arange(n_out), p), j.reshape(-1))), shape=(n_out, n_in))
    return m.tocsr()  # duplicate (row, col) entries are summed


def matlab_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """2-D float image resized like MATLAB ``imresize(img, scale)`` (bicubic, antialiasing), no rounding;
    computed in the input's float dtype."""
    mh = _matlab_resize_matrix(img.shape[0], scale).astype(img.dtype)
    mw = _matlab_resize_matrix(img.shape[1], scale).astype(img.dtype)
    return np.asarray((mw @ (mh @ img).T).T)


def niqe_y(y: np.ndarray) -> float:
    """NIQE of a 2-D luma image on the [0, 255] scale (already rounded, as niqe.m). Lower is better.

    Needs at least 96x96 pixels (one block); raises ValueError otherwise.
    """
    mu_p, cov_p, g1 = _pristine()
    # float32 where BasicSR computes in float32 (the AGGD grid search is sensitive to the last bits):
    # the filters run in float64 and round to float32, as scipy.ndimage does for float32 input.
    img = np.asarray(y, dtype=np.float32)
    h, w = img.shape
    nh, nw = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs an image of at least {NIQE_BLOCK}x{NIQE_BLOCK} pixels, got {w}x{h}")
    img = img[: nh * NIQE_BLOCK, : nw * NIQE_BLOCK]

    def gauss(x: np.ndarray) -> np.ndarray:
        # 'nearest' border; float64 arithmetic, float32 result (what ndimage.convolve does on float32 input)
        t = ndimage.correlate1d(x, g1, axis=0, mode="nearest", output=np.float64)
        return ndimage.correlate1d(t, g1, axis=1, mode="nearest", output=np.float64).astype(np.float32)

    feats = []
    for scale in (1, 2):
        mu, m2 = _pool().map(gauss, (img, img * img))
        sigma = np.sqrt(np.abs(m2 - mu * mu))
        norm = (img - mu) / (sigma + 1)
        feats.append(_features(_blocks(norm, NIQE_BLOCK // scale, NIQE_BLOCK // scale)))
        if scale == 1:
            img = (matlab_imresize(img / np.float32(255.0), 0.5) * np.float32(255.0)).astype(np.float32)
    dist = np.concatenate(feats, axis=1)
    mu_d = np.nanmean(dist, axis=0)
    clean = dist[~np.isnan(dist).any(axis=1)]
    cov_d = np.cov(clean, rowvar=False)
    inv = np.linalg.pinv((cov_p + cov_d) / 2)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ inv @ diff))


def niqe(img: np.ndarray, crop: int = 0) -> float:
    """NIQE of an (H, W, 3) uint8 RGB image (or a 2-D gray/Y image): BT.601 Y rounded to integers, ``crop``
    pixels cut at every border (SR papers use 4 for Y NIQE; BasicSR's default is 0). Lower is better."""
    a = np.asarray(img)
    y = rgb_to_y(a) if a.ndim == 3 else a.astype(np.float64)
    return niqe_y(np.round(_crop(y, crop)))
