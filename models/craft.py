"""CRAFT (Li et al., "Feature Modulation Transformer: Cross-Refinement and Spectrum Modulation for Image
Super-Resolution", ICCV 2023): the Cross-Refinement Adaptive Fusion Transformer.

A self-contained re-implementation (credit: the official code, AVC2-UESTC/CRAFT-SR,
``basicsr/archs/craft_arch.py``) whose module tree, parameter shapes and state-dict keys are the official
ones, so its ``params``/``params_ema`` checkpoints load with ``strict=True`` (the four relative-position
buffers ``relative_position_index_h/v`` and ``biases_h/v`` are persistent, as official).

Input (N, 3, h, w) RGB in [0, 1] -> output (N, 3, s*h, s*w), NCHW float. As official, the network subtracts
the DIV2K RGB mean internally. Any h, w works: the input is mirror-padded (as the official inference script
does) to a multiple of the rectangle windows and the output cropped back.

Structure: 3x3 conv -> len(depths) x RCRFG -> LayerNorm -> 3x3 conv + long skip -> 3x3 conv to 3*s^2
channels + PixelShuffle ("pixelshuffledirect"). An RCRFG is a CRFB + 3x3 conv + skip. A CRFB repeats
``depth`` times: two shifted rectangle-window attention blocks (SRWAB; half the channels in s0 x s1 windows,
half in s1 x s0 windows, dynamic position bias, depthwise-conv "LCM" branch, MLP) give ``low``; a
high-frequency enhancement residual block (HFERB: conv / max-pool branches) gives ``high``; a hybrid fusion
block (HFB: transposed channel attention with queries from ``high``, keys/values from ``low``, gated FFN)
fuses them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.arch import ArchSpec
from models.omnisr import GatedConvFeedForward

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, subtracted inside the network as official

# (rpi_h, biases_h, rpi_v, biases_v): relative position indices/offsets of the two window orientations
PosTables = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class CRAFTConfig:
    """Hyperparameters; defaults are the paper's (embed 48, 4 groups of depth 2, 6 heads, 4 x 16 windows)."""

    scale: int = 4
    embed_dim: int = 48
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    split_size_0: int = 4
    split_size_1: int = 16
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    img_range: float = 1.0
    in_chans: int = 3

    def __post_init__(self) -> None:
        # JSON metadata gives lists: keep tuples (hashable, frozen); a bare int of heads applies to every group
        heads = self.num_heads
        heads = (heads,) * len(self.depths) if isinstance(heads, int) else heads
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in heads))
        if len(self.num_heads) != len(self.depths):
            raise ValueError(f"num_heads {self.num_heads} does not match depths {self.depths}")
        d = self.embed_dim
        if d < 32:  # the dynamic position bias MLP has (d // 2 // 4) // 4 channels
            raise ValueError(f"CRAFT needs embed_dim >= 32, got {d}")
        for h in self.num_heads:
            if h % 2 or d % h or (d // 2) % (h // 2):
                raise ValueError(f"embed_dim {d} and num_heads {h}: heads must be even and divide the channels")

    @property
    def pad_multiple(self) -> int:
        """H and W must be multiples of both window sides (each is used in both orientations)."""
        return math.lcm(self.split_size_0, self.split_size_1)

    def to_dict(self) -> dict:
        return asdict(self)


# --- the shifted rectangle-window attention block (SRWAB) --------------------------------------------


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DynamicPosBias(nn.Module):
    """Relative offsets (L, 2) -> per-head biases (L, heads) through a small MLP (CrossFormer's DPB; the
    official code only uses its non-residual form)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        p = dim // 4
        self.pos_proj = nn.Linear(2, p)
        self.pos1 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, p))
        self.pos2 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, p))
        self.pos3 = nn.Sequential(nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, num_heads))

    def forward(self, biases: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(biases))))


class RectWindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``hs x ws`` windows of (B, H, W, C) q/k/v, with a
    dynamic relative position bias (official ``Attention_regular``; its only parameters are ``pos``)."""

    def __init__(self, dim: int, num_heads: int, hs: int, ws: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.hs, self.ws = hs, ws
        self.scale = (dim // num_heads) ** -0.5
        self.pos = DynamicPosBias(dim // 4, num_heads)

    def _windows(self, t: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B * nW, heads, hs * ws, C / heads)."""
        b, h, w, c = t.shape
        hs, ws = self.hs, self.ws
        t = t.view(b, h // hs, hs, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(-1, hs * ws, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpi: torch.Tensor,
                biases: torch.Tensor) -> torch.Tensor:
        b, h, w, c = q.shape
        n = self.hs * self.ws
        attn = (self._windows(q) * self.scale) @ self._windows(k).transpose(-2, -1)
        bias = self.pos(biases)[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = (attn + bias.unsqueeze(0)).softmax(dim=-1)
        x = (attn @ self._windows(v)).transpose(1, 2).reshape(b, h // self.hs, w // self.ws, self.hs, self.ws, c)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class SRWAB(nn.Module):
    """Shifted rectangle-window attention block on (B, H, W, C) tokens: half the channels attend in
    ``s0 x s1`` windows (H-Rwin), half in ``s1 x s0`` windows (V-Rwin); odd blocks roll the windows by half
    their size (no attention mask, as official). A depthwise conv of V (LCM) is added before the projection."""

    def __init__(self, dim: int, num_heads: int, split: tuple[int, int], shift: tuple[int, int],
                 mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        s0, s1 = split
        self.attns = nn.ModuleList([RectWindowAttention(dim // 2, num_heads // 2, s0, s1),
                                    RectWindowAttention(dim // 2, num_heads // 2, s1, s0)])
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, pos: PosTables) -> torch.Tensor:
        c = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # each (B, H, W, C)
        lcm = self.get_v(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        a, b = self.shift
        outs = []
        for i, (sh, sw) in enumerate(((a, b), (b, a))):  # H-Rwin, then V-Rwin with the shift transposed
            part = slice(0, c // 2) if i == 0 else slice(c // 2, c)
            qkv = [t[..., part] for t in (q, k, v)]
            if sh or sw:
                qkv = [torch.roll(t, shifts=(-sh, -sw), dims=(1, 2)) for t in qkv]
            y = self.attns[i](*qkv, pos[2 * i], pos[2 * i + 1])
            outs.append(torch.roll(y, shifts=(sh, sw), dims=(1, 2)) if sh or sw else y)
        x = x + self.proj(torch.cat(outs, dim=-1) + lcm)
        return x + self.mlp(self.norm2(x))


# --- the high-frequency branch (HFERB) and the fusion block (HFB) --------------------------------------


class HFERB(nn.Module):
    """High-frequency enhancement residual block (NCHW): 3x3 conv on half the channels, max-pool + 1x1 conv
    on the other half, GELU, concat, 1x1 conv, skip."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mid_dim = dim // 2
        self.act = nn.GELU()
        self.last_fc = nn.Conv2d(dim, dim, 1)
        self.fc = nn.Conv2d(self.mid_dim, self.mid_dim, 1)
        self.max_pool = nn.MaxPool2d(3, 1, 1)
        self.conv = nn.Conv2d(self.mid_dim, self.mid_dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mid_dim
        lfe = self.act(self.conv(x[:, :m]))
        hfe = self.act(self.fc(self.max_pool(x[:, m:])))
        return x + self.last_fc(torch.cat([lfe, hfe], dim=1))


class _WithBiasLN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-5)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (Restormer-style; parameters under ``body``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = _WithBiasLN(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CrossAttention(nn.Module):
    """Transposed (channel) attention, NCHW: queries from ``high``, keys/values from ``low``; q and k are
    L2-normalised over pixels and scaled by a learnt per-head temperature (official ``Attention``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        b, c, h, w = low.shape
        q = self.q_dwconv(self.q(high))
        k, v = self.kv_dwconv(self.kv(low)).chunk(2, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class HFB(nn.Module):
    """Hybrid fusion block: low + CrossAttention(LN(low), high), then a gated FFN with its skip."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GatedConvFeedForward(dim, 2.66)  # CRAFT's FFN is OmniSR's, key for key

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = low + self.attn(self.norm1(low), high)
        return x + self.ffn(self.norm2(x))


# --- groups and the network --------------------------------------------------------------------------


class CRFB(nn.Module):
    """Cross-refinement fusion block: ``depth`` x (2 SRWAB -> low, HFERB -> high, HFB(low, high)), NCHW."""

    def __init__(self, dim: int, depth: int, num_heads: int, split: tuple[int, int], mlp_ratio: float,
                 qkv_bias: bool) -> None:
        super().__init__()
        half = (split[0] // 2, split[1] // 2)
        self.srwa_blocks = nn.ModuleList([
            SRWAB(dim, num_heads, split, (0, 0) if i % 2 == 0 else half, mlp_ratio, qkv_bias)
            for i in range(2 * depth)])
        self.hfer_blocks = nn.ModuleList([HFERB(dim) for _ in range(depth)])
        self.hf_blocks = nn.ModuleList([HFB(dim, num_heads) for _ in range(depth)])

    def forward(self, x: torch.Tensor, pos: PosTables) -> torch.Tensor:
        for i, (hfer, hf) in enumerate(zip(self.hfer_blocks, self.hf_blocks, strict=True)):
            low = x.permute(0, 2, 3, 1)
            low = self.srwa_blocks[2 * i + 1](self.srwa_blocks[2 * i](low, pos), pos)
            x = hf(low.permute(0, 3, 1, 2), hfer(x))
        return x


class RCRFG(nn.Module):
    """Residual cross-refinement fusion group: x + conv3x3(CRFB(x))."""

    def __init__(self, dim: int, depth: int, num_heads: int, split: tuple[int, int], mlp_ratio: float,
                 qkv_bias: bool) -> None:
        super().__init__()
        self.residual_group = CRFB(dim, depth, num_heads, split, mlp_ratio, qkv_bias)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, pos: PosTables) -> torch.Tensor:
        return self.conv(self.residual_group(x, pos)) + x


def _position_tables(hs: int, ws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``hs x ws`` windows: the relative position index (hs*ws, hs*ws) into the offsets table, and the
    offsets table ((2hs-1)(2ws-1), 2) of (dy, dx) floats fed to the dynamic position bias MLP."""
    dy, dx = torch.meshgrid(torch.arange(1 - hs, hs), torch.arange(1 - ws, ws), indexing="ij")
    biases = torch.stack([dy.flatten(), dx.flatten()], dim=1).float()
    coords = torch.stack(torch.meshgrid(torch.arange(hs), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rpi = (rel[..., 0] + hs - 1) * (2 * ws - 1) + (rel[..., 1] + ws - 1)
    return rpi, biases


def _mirror_pad(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad the bottom/right of NCHW ``x`` to (h, w) with mirrored copies (edge repeated, as the official
    inference script); repeats the mirroring for inputs smaller than the padding."""
    while x.shape[-2] < h:
        x = torch.cat([x, x.flip(-2)], dim=-2)
    while x.shape[-1] < w:
        x = torch.cat([x, x.flip(-1)], dim=-1)
    return x[..., :h, :w]


class CRAFT(nn.Module):
    """CRAFT, lightweight (pixelshuffledirect) upsampler: (N, 3, h, w) in [0, 1] -> (N, 3, s*h, s*w)."""

    def __init__(self, cfg: CRAFTConfig | None = None, **kw) -> None:
        super().__init__()
        cfg = cfg or CRAFTConfig(**kw)
        self.cfg = cfg
        d, split = cfg.embed_dim, (cfg.split_size_0, cfg.split_size_1)
        rpi_h, biases_h = _position_tables(*split)
        rpi_v, biases_v = _position_tables(split[1], split[0])
        # persistent, as official (they are in its checkpoints)
        self.register_buffer("relative_position_index_h", rpi_h)
        self.register_buffer("relative_position_index_v", rpi_v)
        self.register_buffer("biases_v", biases_v)
        self.register_buffer("biases_h", biases_h)
        mean = torch.tensor(RGB_MEAN if cfg.in_chans == 3 else (0.0,)).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)  # a plain attribute officially: not in checkpoints

        self.conv_first = nn.Conv2d(cfg.in_chans, d, 3, 1, 1)
        self.layers = nn.ModuleList([RCRFG(d, depth, heads, split, cfg.mlp_ratio, cfg.qkv_bias)
                                     for depth, heads in zip(cfg.depths, cfg.num_heads, strict=True)])
        self.norm = ChannelLayerNorm(d)
        self.conv_after_body = nn.Conv2d(d, d, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(d, cfg.scale ** 2 * cfg.in_chans, 3, 1, 1), nn.PixelShuffle(cfg.scale))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.cfg.pad_multiple
        x = _mirror_pad(x, -(-h // m) * m, -(-w // m) * m)
        mean, r = self.mean.to(x.dtype), self.cfg.img_range
        x = self.conv_first((x - mean) * r)
        pos = (self.relative_position_index_h, self.biases_h, self.relative_position_index_v, self.biases_v)
        y = x
        for layer in self.layers:
            y = layer(y, pos)
        x = self.conv_after_body(self.norm(y)) + x
        s = self.cfg.scale
        return (self.upsample(x) / r + mean)[..., : h * s, : w * s]


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# the descriptor (models/arch.py), registered in models/archs.py; "craft" is the paper's lightweight model.
# fp32 only: a windowed transformer with L2-normalised channel attention, trained and validated in fp32
ARCH = ArchSpec(name="craft", config_cls=CRAFTConfig, net_cls=CRAFT, per_scale=True, supports_half=False,
                presets={"craft": {"embed_dim": 48, "depths": (2, 2, 2, 2), "num_heads": (6, 6, 6, 6),
                                   "split_size_0": 4, "split_size_1": 16, "mlp_ratio": 2.0}})
