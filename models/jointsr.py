"""JointSR (BBMR paper, Fig. 2/3): super-resolve LR blocks of different scales jointly and deblock them in
feature space.

Data path for a frame (or a batch of frames) cut into ``block`` x ``block`` HR blocks:

1. per scale k, the LR tiles of the blocks at that scale (batched) go through an OmniSR feature branch
   (OmniSR without its upsampler: input conv, OSAGs, output conv + long skip); with ``margin`` > 0 (ours, not
   the paper's) each tile carries ``margin`` LR pixels of its neighbours (other scales resampled to 1/k), and
   the branch features are cropped back to the tile;
2. an Upsample (3x3 conv to C * r^2 channels + PixelShuffle(r), r = k / k_min) brings every branch to the
   common feature grid, 1/k_min of HR (the finest scale's LR grid; r = 1 is a plain 3x3 conv);
3. the feature tiles are put back at their block positions: the full feature map F_r;
4. the deblock branch (3 x [3x3 conv + PReLU], ``deblock_feat`` hidden channels) maps F_r to
   F_d = F_r + deblock(F_r); F_d replaces F_r in a band of ``band`` feature pixels on each side of every
   internal block edge (F_b). It is evaluated on strips around the edges only (same result in the band);
5. a final Upsample (3x3 conv to 3 * k_min^2 + PixelShuffle(k_min)) gives the SR frame.

Initialisation (:meth:`JointSR.load_branches`), function-preserving: each branch k from the trained OmniSR at
scale k, and its Upsample from that model's upsampler rearranged so that the first 3 * k_min^2 channels of the
common grid hold the model's SR pixels (colour, sub-pixel) of each k_min x k_min HR cell; the final Upsample
starts as the matching selection (a centre-tap identity on those channels) and the deblock as F_d = F_r.
An untrained JointSR therefore equals the per-scale OmniSR models applied block by block and stitched (the
paper's case 3 with per-tile borders) exactly; training only has to improve on it (block edges via the deblock
branch, and the other common-grid channels, which start with random Upsample rows and zero read-out weights).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from models.arch import ArchSpec
from models.omnisr import OmniSR, OmniSRConfig, pixelshuffle_block


@dataclass(frozen=True)
class JointSRConfig:
    scales: tuple[int, ...] = (2, 4, 8)
    res_num: int = 1  # OSAGs per branch (the paper: 5; see docs/models.md for what ships)
    num_feat: int = 64
    window_size: int = 8
    block: int = 128  # HR block size
    band: int = 4  # feature pixels on each side of a block edge taken from the deblock branch
    deblock: bool = True
    deblock_feat: int = 32  # hidden channels of the deblock branch (its output has num_feat channels)
    margin: int = 0  # LR pixels of neighbour context around each branch tile (0 = the paper: tile alone)

    @classmethod
    def from_dict(cls, d: dict) -> JointSRConfig:
        d = dict(d)
        d["scales"] = tuple(d["scales"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d

    @property
    def k_min(self) -> int:
        return min(self.scales)

    @property
    def feat_block(self) -> int:
        """Block size on the common feature grid."""
        return self.block // self.k_min


def edge_band_mask(grid_h: int, grid_w: int, fb: int, band: int, device=None) -> torch.Tensor:
    """(1, 1, grid_h*fb, grid_w*fb) bool: True within ``band`` pixels of an internal block edge."""
    def axis(n_blocks: int) -> torch.Tensor:
        pos = torch.arange(n_blocks * fb, device=device)
        d = pos % fb
        near = (d < band) | (d >= fb - band)
        # the frame's outer border is not a block edge
        near &= (pos >= band) & (pos < n_blocks * fb - band)
        return near

    return (axis(grid_h)[:, None] | axis(grid_w)[None, :])[None, None]


def f_end(m: int) -> int | None:
    return -(m - 1) if m > 1 else None


def context_tiles(tiles: dict[int, torch.Tensor], index: dict[int, torch.Tensor], k: int, n_frames: int,
                  grid_h: int, grid_w: int, margin: int) -> torch.Tensor:
    """The tiles of scale ``k`` with ``margin`` LR pixels of their neighbours around them: the frame's LR plane
    at 1/k is assembled from all tiles (other scales resampled to 1/k, as the ``context`` border mode does),
    padded by replication at the frame border, and cut around each tile of scale k.
    Returns (N_k, 3, t + 2 * margin, t + 2 * margin), t = block / k, in the order of ``tiles[k]``."""
    from bbmr_stream.upscale import resample_tiles

    t = tiles[k].shape[-1]
    ref = tiles[k]
    n = n_frames * grid_h * grid_w
    blocks = ref.new_zeros(n, ref.shape[1], t, t)
    for kk, tt in tiles.items():
        if tt.shape[0]:
            blocks[index[kk].to(ref.device)] = resample_tiles(tt, kk, k).to(ref.dtype)
    planes = (blocks.view(n_frames, grid_h, grid_w, -1, t, t).permute(0, 3, 1, 4, 2, 5)
              .reshape(n_frames, -1, grid_h * t, grid_w * t))
    planes = nn.functional.pad(planes, (margin,) * 4, mode="replicate")
    out = []
    for i in index[k].tolist():
        fr, rest = divmod(i, grid_h * grid_w)
        y, x = divmod(rest, grid_w)
        out.append(planes[fr, :, y * t:y * t + t + 2 * margin, x * t:x * t + t + 2 * margin])
    return torch.stack(out)


class JointSR(nn.Module):
    def __init__(self, cfg: JointSRConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or JointSRConfig()
        self.cfg = cfg
        c = cfg.num_feat
        self.branches = nn.ModuleDict()
        self.upsamples = nn.ModuleDict()
        for k in cfg.scales:
            if cfg.block % k or k % cfg.k_min:
                raise ValueError(f"scale {k} must divide the block and be a multiple of {cfg.k_min}")
            b = OmniSR(OmniSRConfig(scale=k, res_num=cfg.res_num, num_feat=c, window_size=cfg.window_size))
            del b.up  # feature extraction only
            self.branches[str(k)] = b
            r = k // cfg.k_min
            self.upsamples[str(k)] = pixelshuffle_block(c, c, r)
        d = cfg.deblock_feat
        if cfg.band + 3 > cfg.feat_block // 2:
            raise ValueError(f"band {cfg.band} too wide for {cfg.feat_block}-px feature blocks")
        self.deblock = nn.Sequential(
            nn.Conv2d(c, d, 3, padding=1), nn.PReLU(d),
            nn.Conv2d(d, d, 3, padding=1), nn.PReLU(d),
            nn.Conv2d(d, c, 3, padding=1), nn.PReLU(c),
        ) if cfg.deblock else None
        self.up = pixelshuffle_block(c, 3, cfg.k_min)
        self._init_identity()

    def _init_identity(self) -> None:
        with torch.no_grad():
            if self.deblock is not None:  # start as F_d = F_r (residual branch off)
                nn.init.zeros_(self.deblock[4].weight)
                nn.init.zeros_(self.deblock[4].bias)

    def load_branches(self, models: dict[int, OmniSR], keep_trained: bool = False) -> None:
        """Initialise from trained per-scale OmniSR models ``{k: model}`` (one per scale of the config) so that
        the JointSR output equals the stitched per-block outputs of those models (see the module docstring).

        ``keep_trained``: re-synchronise a trained JointSR to newer branch models: branches and the SR-pixel
        channels are set as above, while the other common-grid channels (Upsample rows, their read-out
        weights) and the deblock branch keep their trained values (a warm start for fine-tuning)."""
        cfg = self.cfg
        m = cfg.k_min
        if sorted(models) != sorted(cfg.scales):
            raise ValueError(f"need one OmniSR per scale {cfg.scales}, got {sorted(models)}")
        n_out = 3 * m * m  # common-grid channels carrying SR pixels
        if cfg.num_feat < n_out:
            raise ValueError(f"num_feat {cfg.num_feat} < 3 * k_min^2 = {n_out}: the common grid cannot carry "
                             "the per-scale models' output")
        with torch.no_grad():
            for k, net in models.items():
                sd = {n: t for n, t in net.state_dict().items() if not n.startswith("up.")}
                self.branches[str(k)].load_state_dict(sd)
                head = net.up[0]  # conv to 3 * k^2 channels before PixelShuffle(k)
                conv = self.upsamples[str(k)][0]
                r = k // m
                rows = torch.tensor([(col * m * m + u * m + v) * r * r + a * r + b
                                     for col in range(3) for a in range(r) for u in range(m)
                                     for b in range(r) for v in range(m)])
                src = torch.tensor([col * k * k + (a * m + u) * k + (b * m + v)
                                    for col in range(3) for a in range(r) for u in range(m)
                                    for b in range(r) for v in range(m)])
                conv.weight[rows] = head.weight[src].to(conv.weight.dtype)
                conv.bias[rows] = head.bias[src].to(conv.bias.dtype)
            up = self.up[0]
            if keep_trained:
                up.weight[:, :n_out] = 0.0
            else:
                up.weight.zero_()
            up.bias.zero_()
            for c in range(n_out):
                up.weight[c, c, 1, 1] = 1.0

    def feature_map(self, tiles: dict[int, torch.Tensor], index: dict[int, torch.Tensor], n_frames: int,
                    grid_h: int, grid_w: int) -> torch.Tensor:
        """F_r: (n_frames, C, grid_h * fb, grid_w * fb). ``index[k]`` holds the flat block index
        (frame * grid_h * grid_w + raster index) of each tile in ``tiles[k]`` (N_k, 3, block/k, block/k)."""
        cfg = self.cfg
        fb = cfg.feat_block
        n = n_frames * grid_h * grid_w
        feats = None
        m = cfg.margin
        for k, t in tiles.items():
            if t.shape[0] == 0:
                continue
            if m:  # keep 1 feature pixel of context for the Upsample's 3x3 conv, crop after it
                r = k // cfg.k_min
                t = context_tiles(tiles, index, k, n_frames, grid_h, grid_w, m)
                f = self.branches[str(k)].features(t)[..., m - 1:f_end(m), m - 1:f_end(m)]
                f = self.upsamples[str(k)](f)[..., r:-r, r:-r]
            else:
                f = self.upsamples[str(k)](self.branches[str(k)].features(t))
            if feats is None:
                feats = f.new_zeros(n, f.shape[1], fb, fb)
            feats[index[k].to(f.device)] = f.to(feats.dtype)
        if feats is None:
            raise ValueError("no tiles")
        c = feats.shape[1]
        return (feats.view(n_frames, grid_h, grid_w, c, fb, fb).permute(0, 3, 1, 4, 2, 5)
                .reshape(n_frames, c, grid_h * fb, grid_w * fb))

    def forward(self, tiles: dict[int, torch.Tensor], index: dict[int, torch.Tensor], grid_h: int, grid_w: int,
                n_frames: int = 1) -> torch.Tensor:
        """SR frames (n_frames, 3, grid_h * block, grid_w * block) from LR tiles grouped by scale."""
        fr = self.feature_map(tiles, index, n_frames, grid_h, grid_w)
        if self.deblock is not None and self.cfg.band > 0 and (grid_h > 1 or grid_w > 1):
            fr = self.replace_edges(fr, grid_h, grid_w)
        return self.up(fr)

    def replace_edges(self, fr: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """F_b: F_r with F_d = F_r + deblock(F_r) in the band around every internal block edge.

        The deblock branch only runs on strips around the edges (band + its 3-pixel receptive margin on
        each side, batched), which gives exactly the full-map result inside the band (:meth:`deblock_full`)
        at ~40 % of the cost for 128-px blocks."""
        fb, band = self.cfg.feat_block, self.cfg.band
        m = 3  # receptive radius of three 3x3 convs
        half = band + m
        out = fr.clone()
        n = fr.shape[0]
        if grid_h > 1:
            ys = [i * fb for i in range(1, grid_h)]
            strips = torch.cat([fr[:, :, y - half:y + half, :] for y in ys])
            fd = strips[:, :, m:-m] + self.deblock(strips)[:, :, m:-m]
            for j, y in enumerate(ys):
                out[:, :, y - band:y + band, :] = fd[j * n:(j + 1) * n]
        if grid_w > 1:
            xs = [i * fb for i in range(1, grid_w)]
            strips = torch.cat([fr[:, :, :, x - half:x + half] for x in xs])
            fd = strips[:, :, :, m:-m] + self.deblock(strips)[:, :, :, m:-m]
            for j, x in enumerate(xs):
                out[:, :, :, x - band:x + band] = fd[j * n:(j + 1) * n]
        return out

    def deblock_full(self, fr: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """Reference for :meth:`replace_edges`: the deblock branch over the whole map, then the band mask."""
        fd = fr + self.deblock(fr)
        mask = edge_band_mask(grid_h, grid_w, self.cfg.feat_block, self.cfg.band, fr.device)
        return torch.where(mask, fd, fr)


class JointSRUpscaler:
    """:class:`~bbmr_stream.upscale.Upscaler` adapter: LRBlocks -> padded HR frame in [0, 1]."""

    def __init__(self, model: JointSR, device: torch.device | str = "cpu", fp16: bool | None = None) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.fp16 = (self.device.type == "cuda") if fp16 is None else fp16
        self.name = "jointsr"

    @torch.no_grad()
    def __call__(self, lr) -> torch.Tensor:
        g = lr.grid
        tiles = {k: t.to(self.device) for k, t in lr.tiles.items()}
        index = {k: torch.from_numpy(np.asarray(i, dtype=np.int64)) for k, i in lr.index.items()}
        amp = torch.autocast(self.device.type, dtype=torch.float16) if self.fp16 else contextlib.nullcontext()
        with amp:
            out = self.model(tiles, index, g.grid_h, g.grid_w)
        return out.float().clamp_(0.0, 1.0).cpu()  # the Upscaler protocol: a CPU frame, like OmniSRUpscaler


# the descriptor (models/arch.py), registered in models/archs.py; trained by `bbmr-train jointsr` (no sr presets)
ARCH = ArchSpec(name="jointsr", config_cls=JointSRConfig, net_cls=JointSR, per_scale=False,
                supports_half=True, adapter=JointSRUpscaler)
