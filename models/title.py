"""Per-title model files: an SR model fine-tuned on one title, shipped in its stream directory.

A title model is a safetensors file (``models/<rendition>.safetensors`` in a stream directory) holding the
weights of a per-scale architecture (models/archs.py: ``fastsr``, ``omnisr``), with JSON-encoded metadata
(safetensors ``__metadata__``, every value a JSON string). Three encodings (``encoding``):

- ``fp16``: every tensor of the network in fp16;
- ``delta-int8`` (half the bytes of fp16): every tensor as its difference to the base weights,
  int8 (``NAME``) times a float32 scale per output channel (``NAME.scale``: shape ``[shape[0]]``; ``[1]`` for a
  1-D tensor; absmax / 127); the client adds it to the base weights it ships (their sha256 must be the file's
  ``base``);
- ``delta-int4`` (the packager's default, a quarter of fp16; docs/title_sr.md): the same difference in 4 bits,
  values -7..7 two's complement, two per byte, low nibble first, the tensor flattened row-major (``NAME``: U8,
  shape ``[ceil(numel / 2)]``, the last high nibble 0 when numel is odd); each output channel's scale is the
  clip (absmax x r / 7, r in :data:`INT4_CLIPS`) with the least squared error.

Metadata:

- ``format``: ``"bbmr-title-model-1"``
- ``arch``, ``config``: the architecture and its config dict (``scale`` included)
- ``input_range``: ``"0,1"`` or ``"-1,1"`` (as the base weights)
- ``base``: ``{"id", "sha256"}`` of the shipped weights it was fine-tuned from
- ``encoding``: ``"fp16"`` (when absent), ``"delta-int8"`` or ``"delta-int4"``
- ``adapt``: how it was made (steps, seed, learning rate, frames, seconds; informative)

Reading is for untrusted input: at most the declared size is read, the sha256 checked against the manifest's,
the safetensors header parsed here with bounds (no unpickling anywhere; the tensors' byte ranges must tile the
body in order), the architecture must be the declared per-scale one at the rendition's scale and its config
exactly the base weights' (a fine-tune never changes the network, so a file cannot make the client build
another one), the parameter count is bounded (counted on the meta device), and only then are the tensors
copied out, each matching the network's names and shapes, and the weights (after adding a delta) finite and
within +-:data:`MAX_WEIGHT`. Every failure is a
:class:`TitleModelError` (a :class:`~bbmr_stream.errors.WeightsError`) whose ``cause`` says which check failed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from bbmr_stream.errors import WeightsError
from models.archs import ARCHS
from models.registry import SRModel

FORMAT = "bbmr-title-model-1"
MAX_MODEL_BYTES = 16 << 20  # a title model's file, bytes (FastSR x4 in fp16: 63 KB; OmniSR-light: 0.4 MB)
MAX_PARAMS = 4_000_000  # parameters of a title model's network
MAX_HEADER = 1 << 20  # safetensors JSON header, bytes
MAX_TENSORS = 1024
MAX_WEIGHT = 1e4  # |weight| of a usable SR network (trained ones stay below 10): beyond it the output overflows
DTYPES = {"F16": (torch.float16, 2), "F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2), "I8": (torch.int8, 1),
          "U8": (torch.uint8, 1)}
ENCODINGS = ("fp16", "delta-int8", "delta-int4")
DELTA_BITS = {"delta-int8": 8, "delta-int4": 4}
INT4_CLIPS = tuple(round(0.3 + 0.05 * i, 2) for i in range(15))  # 0.3 .. 1.0 of a channel's absmax


@dataclass(frozen=True)
class Base:
    """The shipped weights a title model is a fine-tune of: registry id, config, sha256 of their file, and their
    state dict (needed to read a delta model)."""

    id: str
    config: dict
    sha256: str
    state: dict | None = None
CAUSES = ("missing", "oversized", "size", "sha256", "format", "arch", "scale", "shape", "values")


class TitleModelError(WeightsError):
    """A title model that cannot be used; ``cause`` is one of :data:`CAUSES`."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


def save(model: SRModel, path: str | os.PathLike, arch: str, config: dict, base: Base, adapt: dict,
         encoding: str = "delta-int4") -> tuple[int, str]:
    """Write ``model`` (an :class:`SRModel` around a per-scale network, fine-tuned from ``base``) as a title model
    file in ``encoding`` (atomic rename); returns (bytes, sha256 hex). The bytes are a function of the weights
    and the metadata alone (:func:`serialize`)."""
    path = Path(path)
    meta = {"format": FORMAT, "arch": arch, "config": config, "input_range": model.input_range,
            "base": {"id": base.id, "sha256": base.sha256}, "adapt": adapt, "encoding": encoding}
    sd = {k: v.detach().float().cpu() for k, v in model.net.state_dict().items()}
    if encoding == "fp16":
        tensors = {k: v.half() for k, v in sd.items()}
    elif encoding in DELTA_BITS:
        if base.state is None:
            raise ValueError(f"{encoding} needs the base weights' state dict")
        tensors = {}
        for k, v in sd.items():
            q, scale = quantize_delta(v - base.state[k].float().cpu(), DELTA_BITS[encoding])
            tensors[k], tensors[k + ".scale"] = (q if encoding == "delta-int8" else pack_int4(q)), scale
    else:
        raise ValueError(f"unknown encoding {encoding!r} ({', '.join(ENCODINGS)})")
    data = serialize(tensors, meta)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data), hashlib.sha256(data).hexdigest()


def scale_shape(shape: tuple[int, ...]) -> tuple[int]:
    """The shape of a delta tensor's scales: one per output channel, one for a 1-D tensor."""
    return (shape[0],) if len(shape) > 1 else (1,)


def quantize_delta(d: torch.Tensor, bits: int = 8,
                   clips: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values in +-(2^(bits-1) - 1), float32 scales per output channel) with d ~ values * scale, rounded
    to nearest; the scale is the clip (absmax x r / (2^(bits-1) - 1), r in ``clips``) with the least squared
    error per channel (ties: the first). ``clips`` None: absmax (1.0) at 8 bits, :data:`INT4_CLIPS` below."""
    lim = 2 ** (bits - 1) - 1
    rows = d.reshape(scale_shape(tuple(d.shape))[0], -1).float()
    amax = rows.abs().amax(dim=1).clamp_min(1e-12)
    best_q = best_s = best_err = None
    for r in clips or ((1.0,) if bits == 8 else INT4_CLIPS):
        s = (amax * r / lim).clamp_min(1e-12)
        q = torch.round(rows / s[:, None]).clamp_(-lim, lim)
        err = ((q * s[:, None] - rows) ** 2).sum(dim=1)
        if best_err is None:
            best_q, best_s, best_err = q, s, err
        else:
            better = err < best_err
            best_q[better], best_s[better], best_err[better] = q[better], s[better], err[better]
    return best_q.to(torch.int8).reshape(d.shape), best_s.float()


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 values in -8..7 -> uint8, two per byte (low nibble first), flattened; a zero nibble pads odd counts."""
    u = (q.flatten().to(torch.int16) & 0x0F).to(torch.uint8)
    if u.numel() % 2:
        u = torch.cat([u, torch.zeros(1, dtype=torch.uint8)])
    return u[0::2] | (u[1::2] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of :func:`pack_int4`: ``numel`` float32 values in -8..7."""
    p = packed.to(torch.int16)
    v = torch.stack([p & 0x0F, p >> 4], dim=1).flatten()[:numel]
    return torch.where(v >= 8, v - 16, v).float()


def serialize(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """The safetensors bytes of fp16/fp32 ``tensors`` with ``meta`` (values JSON-encoded), tensors and keys in
    sorted order and the header space-padded to 8 bytes (the safetensors library writes its metadata in hash
    order: the same model would not always give the same bytes)."""
    names = {torch.float16: "F16", torch.float32: "F32", torch.int8: "I8", torch.uint8: "U8"}
    header: dict = {"__metadata__": {k: json.dumps(v, sort_keys=True) for k, v in sorted(meta.items())}}
    body, off = [], 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        body.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(body)


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_MODEL_BYTES) -> bytes:
    """The file's bytes; at most ``max_bytes`` are read (a larger file, or a special file, is refused)."""
    p = Path(path)
    if not p.exists():
        raise TitleModelError("missing", f"{p.name}: no such model file")
    if not p.is_file():
        raise TitleModelError("format", f"{p.name}: not a regular file")
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TitleModelError("oversized", f"{p.name}: more than the {max_bytes} bytes allowed")
    return data


def _json(text: bytes | str, what: str):
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError, digit limits, nesting
        raise TitleModelError("format", f"{what} is not JSON ({e.__class__.__name__})") from None


@dataclass(frozen=True)
class TensorSpec:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # byte offsets in the body
    end: int


def parse(data: bytes) -> tuple[dict, dict[str, TensorSpec], memoryview]:
    """(metadata with JSON values decoded, tensor specs, body) of safetensors bytes. Nothing is allocated for
    tensors here: the header is checked (at most :data:`MAX_TENSORS` tensors, byte ranges that tile the body in
    order, sizes that match dtype x shape) and the data stays in ``data``."""
    if len(data) < 8:
        raise TitleModelError("format", "not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise TitleModelError("format", f"safetensors header of {n} bytes does not fit the file")
    header = _json(data[8:8 + n], "safetensors header")
    if not isinstance(header, dict):
        raise TitleModelError("format", "safetensors header is not a JSON object")
    raw = header.pop("__metadata__", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise TitleModelError("format", "safetensors metadata is not a map of strings")
    meta = {k: _json(v, f"metadata {k!r}") for k, v in raw.items()}
    if len(header) > MAX_TENSORS:
        raise TitleModelError("format", f"{len(header)} tensors, more than {MAX_TENSORS}")
    body = memoryview(data)[8 + n:]
    specs = {name: _spec(name, t, len(body)) for name, t in header.items()}
    pos = 0
    for sp in sorted(specs.values(), key=lambda sp: sp.start):
        if sp.start != pos:
            raise TitleModelError("format", "tensor data ranges overlap or leave gaps")
        pos = sp.end
    if pos != len(body):
        raise TitleModelError("format", f"tensor data covers {pos} of the body's {len(body)} bytes")
    return meta, specs, body


def _spec(name: str, t, body_len: int) -> TensorSpec:
    dtype = t.get("dtype") if isinstance(t, dict) else None
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise TitleModelError("format", f"tensor {name!r}: dtype must be one of {', '.join(DTYPES)}")
    shape, off = t.get("shape"), t.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(type(d) is int and 0 <= d <= 1 << 24 for d in shape)):
        raise TitleModelError("format", f"tensor {name!r}: bad shape")
    if not (isinstance(off, list) and len(off) == 2 and all(type(v) is int for v in off)
            and 0 <= off[0] <= off[1] <= body_len):
        raise TitleModelError("format", f"tensor {name!r}: data offsets outside the file")
    torch_dtype, size = DTYPES[dtype]
    if off[1] - off[0] != math.prod(shape) * size:
        raise TitleModelError("format", f"tensor {name!r}: {off[1] - off[0]} bytes for shape {shape}")
    return TensorSpec(torch_dtype, tuple(shape), off[0], off[1])


def check(meta: dict, specs: dict[str, TensorSpec], body: memoryview, scale: int, arch: str | None = None,
          base: Base | None = None) -> SRModel:
    """The :class:`SRModel` described by a parsed title model, every field and tensor checked. ``base``: the
    shipped weights the model must be a fine-tune of: its ``base.id`` and ``config`` must be those (a fine-tune
    never changes the network's shape), so a file cannot make the client build another network; a
    delta model also needs their sha256 to match and their state dict. Without ``base`` the config is
    only bounded by :data:`MAX_PARAMS` (and a delta model cannot be read)."""
    if meta.get("format") != FORMAT:
        raise TitleModelError("format", f"not a title model (format {str(meta.get('format'))[:40]!r})")
    encoding = meta.get("encoding", "fp16")
    if encoding not in ENCODINGS:
        raise TitleModelError("format", f"unknown encoding {str(encoding)[:40]!r}")
    name, config = meta.get("arch"), meta.get("config")
    if not isinstance(name, str) or name not in ARCHS or not ARCHS[name].per_scale or \
            (arch is not None and name != arch):
        raise TitleModelError("arch", f"a {str(name)[:40]} model cannot serve this rendition "
                                      f"(expects {arch or 'a per-scale architecture'})")
    spec = ARCHS[name]
    if not isinstance(config, dict):
        raise TitleModelError("arch", "config is not an object")
    b = meta.get("base")
    if base is not None and (not isinstance(b, dict) or b.get("id") != base.id or config != base.config):
        raise TitleModelError("arch", f"not a fine-tune of {base.id} (another base or config)")
    if encoding in DELTA_BITS and (base is None or base.state is None or b.get("sha256") != base.sha256):
        raise TitleModelError("arch", "a delta model of other base weights than this client's")
    try:
        if spec.scales(config) != (scale,):
            raise TitleModelError("scale", f"model is x{config.get('scale')}, the rendition x{scale}")
        with torch.device("meta"):
            skeleton = spec.build(config)
    except TitleModelError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError, ZeroDivisionError, RuntimeError) as e:
        raise TitleModelError("arch", f"{name} config is not valid ({e.__class__.__name__})") from None
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    n = sum(math.prod(v) for v in want.values())
    if n > MAX_PARAMS:
        raise TitleModelError("arch", f"{n} parameters, more than the {MAX_PARAMS} allowed")
    shapes = dict(want)
    if encoding in DELTA_BITS:
        packed = {k: (-(-math.prod(v) // 2),) for k, v in want.items()} if encoding == "delta-int4" else want
        want = {**packed, **{k + ".scale": scale_shape(v) for k, v in want.items()}}
        qtype = torch.int8 if encoding == "delta-int8" else torch.uint8
    if set(want) != set(specs) or any(want[k] != specs[k].shape for k in want) or (
            encoding in DELTA_BITS and any(specs[k].dtype != (torch.float32 if k.endswith(".scale") else qtype)
                                           for k in want)):
        raise TitleModelError("shape", f"tensors do not match a {name} {config} ({encoding})")
    tensors = {k: _materialise(sp, body) for k, sp in specs.items()}
    if not all(bool(torch.isfinite(v).all()) for v in tensors.values()):
        raise TitleModelError("values", "non-finite weights")
    if encoding in DELTA_BITS:
        if encoding == "delta-int4" and not all(_int4_ok(tensors[k], math.prod(v)) for k, v in shapes.items()):
            raise TitleModelError("values", "int4 values outside -7..7 or a non-zero pad nibble")
        tensors = {k: base.state[k].float().cpu() + _delta(tensors, k, shapes[k], encoding)
                   for k in shapes}
    if not all(bool(v.abs().le(MAX_WEIGHT).all()) for v in tensors.values()):  # also: finite scales overflowing
        raise TitleModelError("values", f"weights beyond +-{MAX_WEIGHT:g} (or not finite)")
    rng = meta.get("input_range", "0,1")
    if rng not in ("0,1", "-1,1"):
        raise TitleModelError("format", "bad input range")
    net = spec.load(config, tensors)
    return SRModel(net, scale, rng).eval()


def _int4_ok(packed: torch.Tensor, numel: int) -> bool:
    """Every nibble a value in -7..7 (never 8 = -8), and the pad nibble of an odd count 0."""
    p = packed.to(torch.int16)
    nib = torch.stack([p & 0x0F, p >> 4], dim=1).flatten()
    return not bool((nib == 8).any()) and (numel % 2 == 0 or int(nib[-1]) == 0)


def _delta(tensors: dict[str, torch.Tensor], k: str, shape: tuple[int, ...], encoding: str) -> torch.Tensor:
    """The float32 difference to the base weights that delta tensor ``k`` (and ``k.scale``) encode."""
    q = tensors[k] if encoding == "delta-int8" else unpack_int4(tensors[k], math.prod(shape))
    scale = tensors[k + ".scale"]
    return (q.reshape(scale.shape[0], -1) * scale[:, None]).reshape(shape)


def _materialise(sp: TensorSpec, body: memoryview) -> torch.Tensor:
    """The tensor's values: floating and int8 as float32, uint8 (packed int4) as it is."""
    buf = bytearray(body[sp.start:sp.end])
    x = torch.frombuffer(buf, dtype=sp.dtype) if buf else torch.empty(0, dtype=sp.dtype)
    return x.reshape(sp.shape) if sp.dtype == torch.uint8 else x.reshape(sp.shape).float()


def load(path: str | os.PathLike, scale: int, *, nbytes: int | None = None, sha256: str | None = None,
         arch: str | None = None, base: Base | None = None,
         max_bytes: int = MAX_MODEL_BYTES) -> tuple[SRModel, dict]:
    """A title model file, verified against the manifest's ``nbytes`` and ``sha256`` (when given), for a
    rendition at ``scale`` (of architecture ``arch`` and a fine-tune of ``base`` when given): (model on the CPU
    in eval mode, metadata)."""
    data = read_bytes(path, max_bytes if nbytes is None else min(max_bytes, nbytes))
    if nbytes is not None and len(data) != nbytes:
        raise TitleModelError("size", f"{Path(path).name}: {len(data)} bytes, the manifest says {nbytes}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise TitleModelError("sha256", f"{Path(path).name}: sha256 does not match the manifest")
    meta, specs, body = parse(data)
    return check(meta, specs, body, scale, arch, base), meta
