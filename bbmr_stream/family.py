"""Rung families: how one rendition turns source frames into coded pictures, and decoded pictures back into
frames at the source size. The packager, the player and the rate-quality study all go through this module,
so a new family is one new class here (registered in :data:`FAMILIES`), not edits across files.

| family | coded pictures | scale map (SEI) | reconstruction (upscaler) |
|---|---|---|---|
| ``plain`` | the frame resized to W x H (any size, even) | no | bicubic to the source size (a display) |
| ``plain-sr`` | the frame at 1/K (K = 2, 4, 8) | no | whole-frame OmniSR xK (client SR, NAS-like) |
| ``uniform`` | every 128-px block at 1/overall (atlas) | yes | OmniSR-O |
| ``bbmr`` | blocks at 1/2, 1/4, 1/8 (planes or atlas) | yes | JointSR |

Ladder items (``--ladder``): ``plain:CRF`` (source size), ``plain:WxH:CRF``, ``plain-sr:K:CRF``,
``uniform:CRF``, ``bbmr:CRF``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from bbmr_stream.atlas import Atlas
from bbmr_stream.blocks import BlockGrid
from bbmr_stream.errors import InputError
from bbmr_stream.planes import Planes
from bbmr_stream.registry import Registry
from bbmr_stream.resize import downscale, resize_to, to_tensor, to_uint8
from bbmr_stream.scalemap import ScaleMap

LAYOUTS = {lay.name: lay for lay in (Atlas(), Planes())}  # BBMR stream layouts: one module each


@dataclass(frozen=True)
class RungSpec:
    """One rung of a ladder: family, x264/x265 CRF, and the coded size (plain) or SR factor (plain-sr)."""

    family: str
    crf: float
    size: tuple[int, int] | None = None  # plain: coded (width, height); None = the source size
    factor: int | None = None  # plain-sr: downscale factor K
    refine: bool = False  # LR pictures refined through the client upscaler (models/hcd.py, PackageConfig.refine)

    @property
    def name(self) -> str:
        """The rendition's name (playlists, segment files): ``plain_960x540_crf23``, ``bbmr_crf30``,
        ``plainsr_x2_crf30_hcd`` ..."""
        return FAMILIES[self.family].rung_name(self) + (f"_{REFINE_METHOD}" if self.refine else "")

    @property
    def text(self) -> str:
        """The ``--ladder`` item that gives this rung back."""
        return FAMILIES[self.family].rung_text(self) + (f":{REFINE_METHOD}" if self.refine else "")

    @property
    def family_label(self) -> str:
        """The family as rate-quality studies group rungs: ``plain-sr``, or ``plain-sr+hcd`` when refined."""
        return self.family + (f"+{REFINE_METHOD}" if self.refine else "")


REFINE_METHOD = "hcd"  # the one LR refinement (collaborative LR, models/hcd.py); a ladder item's last field


def rendition_label(rend) -> str:
    """The study label (:attr:`RungSpec.family_label`) of a manifest rendition: its kind, ``+hcd`` if refined."""
    return spec_of(rend).family_label


def base_family(label: str) -> str:
    """The family name of a study label (:attr:`RungSpec.family_label`): ``plain-sr+hcd`` -> ``plain-sr``."""
    return label.split("+", 1)[0]


def _crf(text: str, item: str) -> float:
    try:
        c = float(text)
    except ValueError:
        raise InputError(f"--ladder {item!r}: bad CRF {text!r}") from None
    if not 0 <= c <= 51:
        raise InputError(f"--ladder {item!r}: CRF must be in [0, 51]")
    return c


def parse_rung(item: str) -> RungSpec:
    """One ``--ladder`` item (``family:...``) -> RungSpec; the family parses its own fields."""
    parts = item.strip().split(":")
    if parts[0] not in FAMILIES:
        raise InputError(f"--ladder items are {', '.join(f + ':...' for f in FAMILIES)}, got {item!r}")
    fam = FAMILIES[parts[0]]
    if len(parts) > 2 and parts[-1] == REFINE_METHOD:
        if not fam.refinable:
            raise InputError(f"--ladder {item!r}: {REFINE_METHOD} refines the LR of "
                             f"{', '.join(n for n, c in FAMILIES.items() if c.refinable)} rungs only")
        return dataclasses.replace(fam.parse_item(parts[1:-1], item), refine=True)
    return fam.parse_item(parts[1:], item)


def even(v: float) -> int:
    """``v`` rounded to the nearest even integer, at least 2 (a 4:2:0 picture side)."""
    return max(2, int(round(v / 2)) * 2)


def parse_ladder(text: str) -> list[RungSpec]:
    specs = [parse_rung(i) for i in text.split(",") if i.strip()]
    if not specs:
        raise InputError("--ladder is empty")
    if len({s.name for s in specs}) != len(specs):
        raise InputError("--ladder has duplicate rungs")
    return specs


@dataclass(frozen=True)
class Geometry:
    """What every family of one stream shares: the block grid of the source, the BBMR scales, the overall
    factor and the BBMR layout."""

    grid: BlockGrid
    scales: tuple[int, ...]
    overall: int = 4
    layout: str = "planes"

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def width(self) -> int:
        return self.grid.width


class Family:
    """Base class; subclasses set the class attributes and implement the three methods."""

    name: ClassVar[str]
    carries_map: ClassVar[bool] = False  # scale map in an SEI of every frame
    allocates: ClassVar[bool] = False  # needs the scorer/allocator's per-block factors
    upscalers: ClassVar[tuple[str, ...]] = ("bicubic",)  # preference order for --upscaler auto
    client_sr: ClassVar[bool] = True  # the client super-resolves it (False: shown as decoded, bicubic up)
    client_rank: ClassVar[int]  # what a rung asks of the client, 0 = least (plays in any HLS player)
    fixed_layout: ClassVar[str | None] = None  # the manifest's layout of every rendition; None: one of LAYOUTS
    refinable: ClassVar[bool] = False  # its LR pictures can be refined through the client upscaler (models/hcd.py)
    auto_refine: ClassVar[bool] = True  # the auto ladder adds refined variants of its candidates (if refinable)

    # --- rung specs: a family names, prints and parses its own ladder items and reads its manifest entries ---
    @classmethod
    def rung_name(cls, spec: RungSpec) -> str:
        return f"{cls.name}_crf{spec.crf:g}"

    @classmethod
    def rung_text(cls, spec: RungSpec) -> str:
        return f"{cls.name}:{spec.crf:g}"

    @classmethod
    def parse_item(cls, fields: list[str], item: str) -> RungSpec:
        """The fields after ``family:`` of a ``--ladder`` item."""
        if len(fields) != 1:
            raise InputError(f"--ladder {item!r}: expected {cls.name}:CRF")
        return RungSpec(cls.name, _crf(fields[0], item))

    @classmethod
    def spec_from(cls, rend) -> RungSpec:
        """The RungSpec of a manifest rendition of this family."""
        return RungSpec(cls.name, rend.crf, refine=cls.refinable and rend.refine is not None)

    @classmethod
    def geometry_layout(cls, layout: str) -> str:
        """The layout a Geometry of this family's rendition gets from the manifest's ``layout``."""
        return "planes"

    @classmethod
    def candidates(cls, width: int, height: int, crfs, fractions, factors) -> list[RungSpec]:
        """The rungs the per-title ladder tries for a ``width`` x ``height`` title at ``crfs`` (plain: at
        ``fractions`` of the size; plain-sr: at the SR ``factors``)."""
        return [RungSpec(cls.name, c) for c in crfs]

    def manifest_scales(self, rend, man) -> tuple[list[int], int]:
        """(scales, overall) a manifest rendition of this family must declare."""
        return self.lr_scales(), man.overall

    def checks_pictures(self, rend) -> bool:
        """Whether the rendition's coded picture sizes follow from the source size (else: any smaller size)."""
        return True

    def __init__(self, spec: RungSpec, geo: Geometry) -> None:
        self.spec, self.geo = spec, geo

    @property
    def layout(self) -> str:
        return "plain"

    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each coded video stream."""
        raise NotImplementedError

    def pictures(self, x: torch.Tensor, factors: np.ndarray | None) -> list[np.ndarray]:
        """(1, 3, H, W) float source frame (+ block factors) -> RGB uint8 picture per coded stream."""
        raise NotImplementedError

    def refined_pictures(self, x: torch.Tensor, factors: np.ndarray | None, refiner) -> list[np.ndarray]:
        """:meth:`pictures` with the LR refined by ``refiner`` (a :class:`models.hcd.FrameRefiner` of this rung:
        (padded HR frame, the source's (height, width) in it) -> LR picture in [0, 1]); only for
        :attr:`refinable` families."""
        raise NotImplementedError

    def scale_map(self, factors: np.ndarray | None, index: int) -> bytes | None:
        return None

    def picture_key(self, factors: np.ndarray | None = None) -> tuple | None:
        """Rungs whose :meth:`pictures` of a frame (with these fitted block ``factors``) are equal share this
        key (a rung family at several CRFs): the packager makes their pictures once per frame."""
        return None

    def reconstruct_float(self, pictures: list[np.ndarray], smap: ScaleMap | None, upscaler) -> torch.Tensor:
        """Decoded RGB pictures (+ scale map) -> (1, 3, H, W) float frame in [0, 1] at the source size."""
        raise NotImplementedError

    def reconstruct(self, pictures: list[np.ndarray], smap: ScaleMap | None, upscaler) -> np.ndarray:
        """Decoded pictures (+ scale map) -> (H, W, 3) uint8 frame at the source size (what is shown)."""
        return to_uint8(self.reconstruct_float(pictures, smap, upscaler))

    def luma(self, frames: list, smap: ScaleMap | None, upscaler, matrix: str, full_range: bool,
             with_rgb: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded PyAV frames -> ((H, W) float64 luma of the reconstruction in the source's matrix, the
        distorted side of video PSNR-Y; the shown (H, W, 3) uint8 frame if ``with_rgb``, else None), from one
        reconstruction. The luma is that of the unrounded RGB output, clamped to the RGB gamut as any RGB
        picture is."""
        from bbmr_stream.colour import frame_to_rgb, luma

        pics = [frame_to_rgb(f, matrix, full_range)[0] for f in frames]
        x = self.reconstruct_float(pics, smap, upscaler)
        y = luma(x[0].permute(1, 2, 0).double().cpu().numpy() * 255.0, matrix, full_range)
        return y, (to_uint8(x) if with_rgb else None)

    def lr_scales(self) -> list[int]:
        return [1]

    def overall(self) -> int:
        return 1


class Plain(Family):
    """An ordinary rendition: the frame resized to W x H, shown bicubic-upscaled (what any HLS player does)."""

    name = "plain"
    client_sr = False
    client_rank = 0
    fixed_layout = "plain"

    @classmethod
    def rung_name(cls, spec):
        return f"plain_{spec.size[0]}x{spec.size[1]}_crf{spec.crf:g}" if spec.size else f"plain_crf{spec.crf:g}"

    @classmethod
    def rung_text(cls, spec):
        return f"plain:{spec.size[0]}x{spec.size[1]}:{spec.crf:g}" if spec.size else f"plain:{spec.crf:g}"

    @classmethod
    def parse_item(cls, fields, item):
        if len(fields) != 2:
            return super().parse_item(fields, item)
        m = re.fullmatch(r"(\d+)x(\d+)", fields[0])
        if not m or int(m.group(1)) < 2 or int(m.group(2)) < 2:
            raise InputError(f"--ladder {item!r}: size must be WIDTHxHEIGHT")
        w, h = int(m.group(1)), int(m.group(2))
        return RungSpec(cls.name, _crf(fields[1], item), size=(w + w % 2, h + h % 2))

    @classmethod
    def spec_from(cls, rend):
        return RungSpec(cls.name, rend.crf, size=(rend.lr_width, rend.lr_height))

    @classmethod
    def candidates(cls, width, height, crfs, fractions, factors):
        sizes = []
        for f in fractions:
            s = (even(width * f), even(height * f))
            if min(s) >= 32 and s not in sizes:
                sizes.append(s)
        full = (width + width % 2, height + height % 2)
        return [RungSpec(cls.name, c, size=None if s == full else s) for s in sizes for c in crfs]

    def manifest_scales(self, rend, man):
        return [1], 1

    def checks_pictures(self, rend):
        return (rend.lr_width, rend.lr_height) == self._full()

    def _full(self) -> tuple[int, int]:
        return self.geo.width + self.geo.width % 2, self.geo.height + self.geo.height % 2

    def _size(self) -> tuple[int, int]:
        return self.spec.size or self._full()

    def sizes(self) -> list[tuple[int, int]]:
        return [self._size()]

    def picture_key(self, factors=None):
        return (self.name, self._size())

    def pictures(self, x, factors):
        w, h = self._size()
        if (w, h) == self._full():
            x = torch.nn.functional.pad(x, (0, w - self.geo.width, 0, h - self.geo.height), mode="replicate")
        return [to_uint8(resize_to(x, h, w))]

    def reconstruct(self, pictures, smap, upscaler):
        pic = pictures[0]
        if pic.shape[1::-1] == self._full():
            return np.ascontiguousarray(pic[: self.geo.height, : self.geo.width])  # full size: as decoded
        return to_uint8(self.reconstruct_float(pictures, smap, upscaler))

    def reconstruct_float(self, pictures, smap, upscaler):
        return resize_to(to_tensor(pictures[0]), self.geo.height, self.geo.width)[..., : self.geo.height,
                                                                                 : self.geo.width]

    def luma(self, frames, smap, upscaler, matrix, full_range, with_rgb=False):
        """The decoded Y plane itself, bicubic-resized to the source size when smaller: for a full-size rung
        exactly what FFmpeg's psnr filter and libvmaf compare (an ordinary ladder is measured the usual way)."""
        from bbmr_stream.colour import frame_to_rgb, planes_of

        rgb = self.reconstruct([frame_to_rgb(frames[0], matrix, full_range)[0]], smap, upscaler) if with_rgb else None
        y = planes_of(frames[0], matrix, full_range)[0]
        h, w = self.geo.height, self.geo.width
        if y.shape[0] >= h and y.shape[1] >= w:
            return y[:h, :w].astype(np.float64), rgb
        t = torch.from_numpy(y.astype(np.float32))[None, None] / 255.0
        return (resize_to(t, h, w)[0, 0].double() * 255.0).numpy(), rgb


class PlainSR(Family):
    """The frame at 1/K as an ordinary rendition, super-resolved as a whole by the client (OmniSR xK)."""

    name = "plain-sr"
    upscalers = ("omnisr", "fast")  # fast: FastSR, for CPU clients (models/fastsr.py)
    client_rank = 1
    fixed_layout = "plain"
    FACTORS: ClassVar[tuple[int, ...]] = (2, 4, 8)

    @classmethod
    def rung_name(cls, spec):
        return f"plainsr_x{spec.factor}_crf{spec.crf:g}"

    @classmethod
    def rung_text(cls, spec):
        return f"plain-sr:{spec.factor}:{spec.crf:g}"

    @classmethod
    def parse_item(cls, fields, item):
        if len(fields) != 2 or fields[0] not in map(str, cls.FACTORS):
            raise InputError(f"--ladder {item!r}: plain-sr items are plain-sr:K:CRF with K in 2, 4, 8")
        return RungSpec(cls.name, _crf(fields[1], item), factor=int(fields[0]))

    refinable = True

    @classmethod
    def spec_from(cls, rend):
        return RungSpec(cls.name, rend.crf, factor=rend.overall, refine=rend.refine is not None)

    @classmethod
    def candidates(cls, width, height, crfs, fractions, factors):
        return [RungSpec(cls.name, c, factor=k) for k in factors for c in crfs if min(width, height) // k >= 32]

    def manifest_scales(self, rend, man):
        if rend.overall not in self.FACTORS:
            raise ValueError(f"rendition {rend.name}: plain-sr factor {rend.overall} is not 2, 4 or 8")
        return [rend.overall], rend.overall

    def _pad(self) -> tuple[int, int]:
        m = 2 * self.spec.factor  # the LR picture has an even size
        return -(-self.geo.height // m) * m, -(-self.geo.width // m) * m

    def sizes(self):
        h, w = self._pad()
        return [(w // self.spec.factor, h // self.spec.factor)]

    def picture_key(self, factors=None):
        return (self.name, self.spec.factor)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """The source frame padded (replicate) to a multiple of 2 K: what the LR picture is made from."""
        h, w = self._pad()
        return torch.nn.functional.pad(x, (0, w - self.geo.width, 0, h - self.geo.height), mode="replicate")

    def pictures(self, x, factors):
        return [to_uint8(downscale(self.padded(x), self.spec.factor))]

    def refined_pictures(self, x, factors, refiner):
        return [to_uint8(refiner(self.padded(x), valid=(self.geo.height, self.geo.width)))]

    def reconstruct_float(self, pictures, smap, upscaler):
        with torch.no_grad():
            hr = upscaler.sr_plane(to_tensor(pictures[0]), self.spec.factor)
        return hr[..., : self.geo.height, : self.geo.width].float().cpu().clamp_(0.0, 1.0)

    def lr_scales(self):
        return [self.spec.factor]

    def overall(self):
        return self.spec.factor


class _Blocks(Family):
    """Families whose pictures carry blocks at per-block factors in a layout (:data:`LAYOUTS`), with the scale
    map in an SEI. ``_pack_scales`` are the scales the layout is sized for."""

    carries_map = True

    def block_factors(self, factors):
        raise NotImplementedError

    @property
    def _layout(self):
        return LAYOUTS[self.layout]

    def _pack_scales(self) -> tuple[int, ...]:
        return self.geo.scales

    def scale_map(self, factors, index):
        g = self.geo.grid
        return ScaleMap(self.block_factors(factors).reshape(g.grid_h, g.grid_w), self.lr_scales(), index).to_bytes()

    def sizes(self):
        return self._layout.sizes(self.geo.grid, self._pack_scales(), self.geo.overall)

    def picture_key(self, factors=None):
        bf = self.block_factors(factors)
        return (self.name, self.layout, tuple(self._pack_scales()), self.geo.overall, np.asarray(bf).tobytes())

    def pictures(self, x, factors):
        return self._layout.pack(x, self.geo.grid, self.block_factors(factors), self._pack_scales(), self.geo.overall)

    def reconstruct_float(self, pictures, smap, upscaler):
        lr = self._layout.unpack(pictures, smap, self.geo.grid, self._pack_scales(), self.geo.overall)
        with torch.no_grad():
            hr = upscaler(lr)[..., : self.geo.height, : self.geo.width]
        return hr.float().cpu().clamp_(0.0, 1.0)

    def lr_scales(self):
        return list(self.geo.scales)

    def overall(self):
        return self.geo.overall


class Uniform(_Blocks):
    """Every block at 1/overall in one picture (the planes layout with the one scale: the frame at 1/overall,
    blocks at their natural positions): BBMR's uniform baseline (OmniSR-O)."""

    name = "uniform"
    upscalers = ("omnisr", "jointsr")
    client_rank = 2
    fixed_layout = "planes"

    @property
    def layout(self):
        return "planes"

    refinable = True

    def _pack_scales(self):
        return (self.geo.overall,)  # a uniform map: one plane, the block grid at 1/overall

    def refined_pictures(self, x, factors, refiner):
        from bbmr_stream.blocks import pad_tensor
        from bbmr_stream.planes import plane_sizes, stack_planes

        scales = self._pack_scales()
        ((w, h),) = plane_sizes(self.geo.grid, scales)
        plane = to_uint8(refiner(pad_tensor(x, self.geo.grid.block), valid=(self.geo.height, self.geo.width)))[:h, :w]
        return [stack_planes([np.ascontiguousarray(plane)], self.geo.grid, scales)]

    def block_factors(self, factors):
        return np.full(self.geo.grid.n_blocks, self.geo.overall, np.uint8)


class BBMR(_Blocks):
    """Blocks at their allocated scales (x2 hard .. x8 easy) at the LR pixel budget of uniform x``overall``."""

    name = "bbmr"
    allocates = True
    upscalers = ("jointsr", "omnisr")
    client_rank = 3

    @classmethod
    def geometry_layout(cls, layout):
        return layout

    @property
    def layout(self):
        return self.geo.layout

    def block_factors(self, factors):
        return np.asarray(factors, np.uint8)

    refinable = True  # in the planes layout, through a multi-scale model (models.hcd.PlanesRefiner)
    auto_refine = False  # JointSR forward + backward per frame (~10x a FastSR refinement): per rung or in the study

    def refined_pictures(self, x, factors, refiner):
        from bbmr_stream.blocks import pad_tensor

        if self.layout != "planes":
            raise InputError(f"--refine: BBMR rungs are refined in the planes layout only, not {self.layout}")
        s = refiner(pad_tensor(x, self.geo.grid.block), self.block_factors(factors),
                    valid=(self.geo.height, self.geo.width))
        return [to_uint8(s)]

    @classmethod
    def atlas(cls, grid: BlockGrid, scales, overall: int) -> BBMR:
        """The live demo's rung: blocks in one atlas picture per frame (the CRF is the live encoder's)."""
        return cls(RungSpec(cls.name, 23.0), Geometry(grid, tuple(scales), overall, "atlas"))

    def fit(self, factors: np.ndarray) -> np.ndarray:
        """Factors made to fit this rendition's picture(s) (atlas: a fixed number of rows)."""
        return self._layout.fit(factors, self.geo.grid, self.geo.scales, self.geo.overall)


FAMILIES: Registry[type[Family]] = Registry("rung family", ValueError, "known:")
FAMILIES.register(Plain)
FAMILIES.register(PlainSR)
FAMILIES.register(Uniform)
FAMILIES.register(BBMR)


def make_family(spec: RungSpec, geo: Geometry) -> Family:
    return FAMILIES[spec.family](spec, geo)


def spec_of(rend) -> RungSpec:
    """The RungSpec of a manifest rendition (its ``kind`` is the family name)."""
    return FAMILIES.lookup(rend.kind, f" in rendition {rend.name}").spec_from(rend)


def check_rendition(rend, man) -> Family:
    """The Family of ``rend`` after checking the rendition against it and the manifest: family and layout
    known, scales and overall those the family uses, coded picture sizes those the family makes from the
    source size. Raises ValueError with the reason."""
    want_layout = FAMILIES.lookup(rend.kind, f" in rendition {rend.name}").fixed_layout
    if (want_layout and rend.layout != want_layout) or (not want_layout and rend.layout not in LAYOUTS):
        raise ValueError(f"rendition {rend.name}: layout {rend.layout!r} is not one of the {rend.kind} family's")
    if getattr(rend, "refine", None) is not None and not FAMILIES[rend.kind].refinable:
        raise ValueError(f"rendition {rend.name}: refine {rend.refine!r} on a {rend.kind} rendition")
    fam = family_of(rend, man)
    want = fam.manifest_scales(rend, man)
    if (list(rend.scales), rend.overall) != (list(want[0]), want[1]):
        raise ValueError(f"rendition {rend.name}: scales {rend.scales} / overall {rend.overall}, the {rend.kind} "
                         f"family uses {want[0]} / {want[1]}")
    if fam.checks_pictures(rend):
        sizes = [list(s) for s in fam.sizes()]
        if [list(p) for p in rend.pictures] != sizes:
            raise ValueError(f"rendition {rend.name}: pictures {rend.pictures}, a {man.source['width']}x"
                             f"{man.source['height']} source gives {sizes}")
    elif rend.lr_width > fam.geo.width + 1 or rend.lr_height > fam.geo.height + 1:
        raise ValueError(f"rendition {rend.name}: a plain {rend.lr_width}x{rend.lr_height} rendition is larger "
                         f"than the source")
    return fam


def family_of(rend, man) -> Family:
    """The Family object that plays rendition ``rend`` of manifest ``man``."""
    cls = FAMILIES.lookup(rend.kind, f" in rendition {rend.name}")
    grid = BlockGrid(int(man.source["height"]), int(man.source["width"]), man.block)
    geo = Geometry(grid, tuple(man.scales), man.overall, cls.geometry_layout(rend.layout))
    return make_family(spec_of(rend), geo)


def by_client_needs(names) -> list[str]:
    """Family names ordered by what their rungs ask of the client, least first (:attr:`Family.client_rank`)."""
    return sorted(names, key=lambda n: (FAMILIES[base_family(n)].client_rank, n))
