"""OmniSR (Wang et al., "Omni Aggregation Networks for Lightweight Image Super-Resolution", CVPR 2023).

A self-contained re-implementation whose module tree, parameter shapes and state-dict keys are those of
the official code (Francis0625/Omni-SR, ``components/OmniSR.py``), so its ``epoch*_OmniSR.pth`` checkpoints
load after dropping thop's ``total_ops``/``total_params`` entries. Parameter-free reshapes sit at the same
``nn.Sequential`` indices as the official ``einops`` layers, which keeps the numbered keys aligned.

Tensors are NCHW float. The network itself is range-agnostic: the input range a set of weights expects
(official weights: [-1, 1]; ours: [0, 1]) is recorded in the weights' metadata and handled by the caller
(:class:`models.registry.SRModel`).

Structure: input conv -> ``res_num`` x OSAG -> output conv + long skip -> upsampler (3x3 conv to
3*s^2 channels + PixelShuffle). An OSAG is ``block_num`` OSA blocks, a 1x1 conv, a skip, then ESA.
An OSA block is MBConv, window self-attention (8x8, relative position bias), gated FFN, window channel
attention, gated FFN, grid self-attention, gated FFN, grid channel attention, gated FFN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.arch import ArchSpec


@dataclass(frozen=True)
class OmniSRConfig:
    """Hyperparameters; defaults are the paper's (5 OSAG = "full"; ``res_num=1`` is the light model)."""

    scale: int = 4
    num_feat: int = 64
    res_num: int = 5
    block_num: int = 1
    window_size: int = 8
    pe: bool = True
    bias: bool = True
    num_in_ch: int = 3
    num_out_ch: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


# --- parameter-free layers that stand where the official code has einops layers -----------------------


class _Windowed(nn.Module):
    """A parameter-free reshaping layer with a window size ``w``."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.w = w


class _ToWindows(_Windowed):
    """(B, C, H, W) -> (B, H/w, W/w, w, w, C): non-overlapping w x w windows ("block" attention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, wd = x.shape
        w = self.w
        return x.view(b, c, h // w, w, wd // w, w).permute(0, 2, 4, 3, 5, 1)


class _FromWindows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nx, ny, w1, w2, c = x.shape
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, nx * w1, ny * w2)


class _ToGrid(_Windowed):
    """(B, C, H, W) -> (B, H/w, W/w, w, w, C) with a dilated (strided) grid: pixel (i, j) of group
    (x, y) is image pixel (i * H/w + x, j * W/w + y) ("grid" attention of MaxViT/OmniSR)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, wd = x.shape
        w = self.w
        return x.view(b, c, w, h // w, w, wd // w).permute(0, 3, 5, 2, 4, 1)


class _FromGrid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nx, ny, w1, w2, c = x.shape
        return x.permute(0, 5, 3, 1, 4, 2).reshape(b, c, w1 * nx, w2 * ny)


class _GlobalAvg(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _Unsqueeze2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None, None]


# --- layers with parameters -------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (eps 1e-6, as the official LayerNorm2d)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class PreNormResidual(nn.Module):
    """x + fn(LayerNorm(x)) on channels-last windows."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class ConvPreNormResidual(nn.Module):
    """x + fn(LayerNorm2d(x)) on NCHW tensors."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class GatedConvFeedForward(nn.Module):
    """1x1 conv to 2*hidden, 3x3 depthwise conv, GELU(x1) * x2, 1x1 conv back (no biases, as official)."""

    def __init__(self, dim: int, mult: float = 1, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mult)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class SqueezeExcitation(nn.Module):
    def __init__(self, dim: int, shrinkage_rate: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * shrinkage_rate)
        self.gate = nn.Sequential(
            _GlobalAvg(),
            nn.Linear(dim, hidden, bias=False),
            nn.SiLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
            _Unsqueeze2(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConvResidual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


def mbconv(dim: int, expansion_rate: float = 1, shrinkage_rate: float = 0.25) -> MBConvResidual:
    hidden = int(expansion_rate * dim)
    return MBConvResidual(
        nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            SqueezeExcitation(hidden, shrinkage_rate),
            nn.Conv2d(hidden, dim, 1),
        )
    )


class Attention(nn.Module):
    """Multi-head self-attention inside w x w windows, with a learned relative position bias."""

    def __init__(self, dim: int, dim_head: int, window_size: int, with_pe: bool = True) -> None:
        super().__init__()
        if dim % dim_head:
            raise ValueError("dim must be divisible by dim_head")
        self.heads = dim // dim_head
        self.with_pe = with_pe
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim, bias=False))
        if with_pe:
            self.rel_pos_bias = nn.Embedding((2 * window_size - 1) ** 2, self.heads)
            pos = torch.arange(window_size)
            grid = torch.stack(torch.meshgrid(pos, pos, indexing="ij")).flatten(1).T  # (w*w, 2)
            rel = grid[:, None, :] - grid[None, :, :] + window_size - 1
            idx = rel[..., 0] * (2 * window_size - 1) + rel[..., 1]
            self.register_buffer("rel_pos_indices", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nx, ny, w1, w2, d = x.shape
        h = self.heads
        t = x.reshape(b * nx * ny, w1 * w2, d)
        q, k, v = self.to_qkv(t).view(t.shape[0], w1 * w2, 3, h, d // h).permute(2, 0, 3, 1, 4)
        bias = None
        if self.with_pe:
            # (1, h, n, n): a 4-D mask takes SDPA's fused CPU kernel; a 3-D one falls back to the unfused path
            bias = self.rel_pos_bias(self.rel_pos_indices).permute(2, 0, 1).unsqueeze(0).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale = dim_head ** -0.5
        out = out.transpose(1, 2).reshape(b, nx, ny, w1, w2, d)
        return self.to_out(out)


class ChannelAttention(nn.Module):
    """Transposed (channel) attention inside w x w windows (``grid=False``) or across windows at each of
    the w*w window positions (``grid=True``); cosine similarity with a learned temperature per head."""

    def __init__(self, dim: int, heads: int, window_size: int, grid: bool, bias: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.ps = window_size
        self.grid = grid
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, 1, 1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, c, h, w = t.shape
        p, nh = self.ps, self.heads
        t = t.view(b, nh, c // nh, h // p, p, w // p, p)
        if self.grid:  # b (ph pw) head d (h w)
            return t.permute(0, 4, 6, 1, 2, 3, 5).reshape(b, p * p, nh, c // nh, (h // p) * (w // p))
        # b (h w) head d (ph pw)
        return t.permute(0, 3, 5, 1, 2, 4, 6).reshape(b, (h // p) * (w // p), nh, c // nh, p * p)

    def _merge(self, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, c, h, w = shape
        p, nh = self.ps, self.heads
        if self.grid:
            t = t.view(b, p, p, nh, c // nh, h // p, w // p).permute(0, 3, 4, 5, 1, 6, 2)
        else:
            t = t.view(b, h // p, w // p, nh, c // nh, p, p).permute(0, 3, 4, 1, 5, 2, 6)
        return t.reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self._split(t) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out(self._merge(attn @ v, x.shape))


class OSABlock(nn.Module):
    def __init__(self, dim: int = 64, window_size: int = 8, with_pe: bool = True) -> None:
        super().__init__()
        w = window_size
        self.layer = nn.Sequential(
            mbconv(dim),
            _ToWindows(w),
            PreNormResidual(dim, Attention(dim, dim // 4, w, with_pe)),
            _FromWindows(),
            ConvPreNormResidual(dim, GatedConvFeedForward(dim)),
            ConvPreNormResidual(dim, ChannelAttention(dim, 4, w, grid=False)),
            ConvPreNormResidual(dim, GatedConvFeedForward(dim)),
            _ToGrid(w),
            PreNormResidual(dim, Attention(dim, dim // 4, w, with_pe)),
            _FromGrid(),
            ConvPreNormResidual(dim, GatedConvFeedForward(dim)),
            ConvPreNormResidual(dim, ChannelAttention(dim, 4, w, grid=True)),
            ConvPreNormResidual(dim, GatedConvFeedForward(dim)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class ESA(nn.Module):
    """Enhanced spatial attention (RFANet), as trimmed in OmniSR (no conv_max/conv3_)."""

    def __init__(self, esa_channels: int, n_feats: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = F.interpolate(self.conv3(v_max), (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class OSAG(nn.Module):
    def __init__(self, channel_num: int = 64, bias: bool = True, block_num: int = 1, window_size: int = 8,
                 pe: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [OSABlock(channel_num, window_size, pe) for _ in range(block_num)]
        layers.append(nn.Conv2d(channel_num, channel_num, 1, 1, 0, bias=bias))
        self.residual_layer = nn.Sequential(*layers)
        self.esa = ESA(max(channel_num // 4, 16), channel_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.esa(self.residual_layer(x) + x)


def pixelshuffle_block(in_ch: int, out_ch: int, scale: int, bias: bool = True) -> nn.Sequential:
    """The Upsample of OmniSR and of JointSR: 3x3 conv to out_ch * s^2 channels, then PixelShuffle(s)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch * scale * scale, 3, padding=1, bias=bias), nn.PixelShuffle(scale))


# Smallest spatial size the network accepts after padding to the window: ESA's stride-2 conv and 7x7
# max-pool need >= 15 pixels, so inputs are padded to at least two windows (16 px for window 8).
def _padded(n: int, w: int) -> int:
    return max((n + w - 1) // w * w, 2 * w)  # not -(-n // w): exporters turn that into a truncating divide


class OmniSR(nn.Module):
    """OmniSR. ``forward`` takes (N, 3, H, W) LR and returns (N, 3, sH, sW) SR; any H, W >= 1
    (zero-padded to a multiple of the window, at least 2 windows, then cropped, as the official code)."""

    def __init__(self, cfg: OmniSRConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = cfg or OmniSRConfig(**kwargs)
        self.cfg = cfg
        f = cfg.num_feat
        self.input = nn.Conv2d(cfg.num_in_ch, f, 3, 1, 1, bias=cfg.bias)
        self.residual_layer = nn.Sequential(
            *[OSAG(f, cfg.bias, cfg.block_num, cfg.window_size, cfg.pe) for _ in range(cfg.res_num)]
        )
        self.output = nn.Conv2d(f, f, 3, 1, 1, bias=cfg.bias)
        self.up = pixelshuffle_block(f, cfg.num_out_ch, cfg.scale, bias=cfg.bias)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.cfg.window_size
        return F.pad(x, (0, _padded(w, ws) - w, 0, _padded(h, ws) - h), "constant", 0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Deep features (N, num_feat, H, W) before the upsampler (JointSR's per-scale branch)."""
        h, w = x.shape[-2:]
        res = self.input(self.pad(x))
        out = self.output(self.residual_layer(res)) + res
        return out[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        res = self.input(self.pad(x))
        out = self.up(self.output(self.residual_layer(res)) + res)
        s = self.cfg.scale
        return out[..., : h * s, : w * s]


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# the descriptor (models/arch.py), registered in models/archs.py; "omnisr" is the paper's full model (5 OSAGs)
ARCH = ArchSpec(name="omnisr", config_cls=OmniSRConfig, net_cls=OmniSR, per_scale=True,
                supports_half=True, presets={"omnisr": {"res_num": 5}, "omnisr-light": {"res_num": 1}})
