"""Per-title model files: an SR model fine-tuned on one title, shipped in its stream directory.

A title model is a safetensors file (``models/<rendition>.safetensors`` in a stream directory) holding the
weights of a per-scale architecture (models/archs.py: ``fastsr``, ``omnisr``) in fp16, with JSON-encoded
metadata (safetensors ``__metadata__``, every value a JSON string):

- ``format``: ``"bbmr-title-model-1"``
- ``arch``, ``config``: the architecture and its config dict (``scale`` included)
- ``input_range``: ``"0,1"`` or ``"-1,1"`` (as the base weights)
- ``base``: ``{"id", "sha256"}`` of the shipped weights it was fine-tuned from
- ``adapt``: how it was made (steps, seed, learning rate, frames, seconds; informative)

Reading is for untrusted input: the file is size-checked before it is read, its sha256 checked against the
manifest's, the safetensors header parsed here with bounds (no unpickling anywhere), the architecture must be
a registered per-scale one at the expected scale, its parameter count is bounded (counted on the meta device,
before any allocation) and every tensor must match the network's names and shapes exactly and be finite.
Every failure is a :class:`~bbmr_stream.errors.WeightsError` whose ``cause`` says which check failed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import torch

from bbmr_stream.errors import WeightsError
from models.archs import get_arch
from models.registry import SRModel

FORMAT = "bbmr-title-model-1"
MAX_MODEL_BYTES = 16 << 20  # a title model's file, bytes (FastSR x4 in fp16: 63 KB; OmniSR-light: 0.4 MB)
MAX_PARAMS = 4_000_000  # parameters of a title model's network
MAX_HEADER = 1 << 20  # safetensors JSON header, bytes
DTYPES = {"F16": (torch.float16, 2), "F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2)}
CAUSES = ("missing", "oversized", "size", "sha256", "format", "arch", "scale", "shape", "values")


class TitleModelError(WeightsError):
    """A title model that cannot be used; ``cause`` is one of :data:`CAUSES`."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


def save(model: SRModel, path: str | os.PathLike, arch: str, config: dict, base: dict, adapt: dict) -> tuple[int, str]:
    """Write ``model`` (an :class:`SRModel` around a per-scale network) as a title model file in fp16 (atomic
    rename); returns (bytes, sha256 hex). The bytes are a function of the weights and the metadata alone
    (:func:`serialize`)."""
    path = Path(path)
    meta = {"format": FORMAT, "arch": arch, "config": config, "input_range": model.input_range, "base": base,
            "adapt": adapt}
    data = serialize({k: v.detach().to(torch.float16).cpu() for k, v in model.net.state_dict().items()}, meta)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data), hashlib.sha256(data).hexdigest()


def serialize(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """The safetensors bytes of fp16/fp32 ``tensors`` with ``meta`` (values JSON-encoded), tensors and keys in
    sorted order and the header space-padded to 8 bytes (the safetensors library writes its metadata in hash
    order: the same model would not always give the same bytes)."""
    names = {torch.float16: "F16", torch.float32: "F32"}
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
    """The file's bytes, refused unread when larger than ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise TitleModelError("missing", f"{p.name}: no such model file") from None
    if size > max_bytes:
        raise TitleModelError("oversized", f"{p.name}: {size} bytes, more than the {max_bytes} allowed")
    return p.read_bytes()


def parse(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata with JSON values decoded, tensors) of safetensors bytes, every offset and length checked."""
    if len(data) < 8:
        raise TitleModelError("format", "not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise TitleModelError("format", f"safetensors header of {n} bytes does not fit the file")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TitleModelError("format", f"safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise TitleModelError("format", "safetensors header is not a JSON object")
    raw = header.pop("__metadata__", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise TitleModelError("format", "safetensors metadata is not a map of strings")
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except json.JSONDecodeError as e:
        raise TitleModelError("format", f"metadata value is not JSON ({e})") from None
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, t in header.items():
        tensors[name] = _tensor(name, t, body)
    return meta, tensors


def _tensor(name: str, t, body: memoryview) -> torch.Tensor:
    if not isinstance(t, dict) or t.get("dtype") not in DTYPES:
        raise TitleModelError("format", f"tensor {name!r}: dtype must be one of {', '.join(DTYPES)}")
    shape, off = t.get("shape"), t.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(isinstance(d, int) and 0 <= d <= 1 << 24
                                                                 for d in shape)):
        raise TitleModelError("format", f"tensor {name!r}: bad shape {shape!r}")
    if not (isinstance(off, list) and len(off) == 2 and all(isinstance(v, int) for v in off)
            and 0 <= off[0] <= off[1] <= len(body)):
        raise TitleModelError("format", f"tensor {name!r}: data offsets {off!r} outside the file")
    dtype, size = DTYPES[t["dtype"]]
    if off[1] - off[0] != math.prod(shape) * size:
        raise TitleModelError("format", f"tensor {name!r}: {off[1] - off[0]} bytes for shape {shape}")
    buf = bytearray(body[off[0]:off[1]])
    x = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
    return x.reshape(shape).float()


def check(meta: dict, tensors: dict[str, torch.Tensor], scale: int, arch: str | None = None) -> SRModel:
    """The :class:`SRModel` described by a parsed title model, every field and tensor checked."""
    if meta.get("format") != FORMAT:
        raise TitleModelError("format", f"not a title model (format {meta.get('format')!r}, expected {FORMAT!r})")
    name, config = meta.get("arch"), meta.get("config")
    try:
        spec = get_arch(str(name))
    except WeightsError as e:
        raise TitleModelError("arch", str(e)) from None
    if not spec.per_scale or (arch is not None and spec.name != arch):
        raise TitleModelError("arch", f"a {name} model cannot serve this rendition (expects {arch or 'per-scale'})")
    if not isinstance(config, dict):
        raise TitleModelError("arch", "config is not an object")
    try:
        if spec.scales(config) != (scale,):
            raise TitleModelError("scale", f"model is x{config.get('scale')}, the rendition x{scale}")
        with torch.device("meta"):
            skeleton = spec.build(config)
    except TitleModelError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise TitleModelError("arch", f"{name} config {config!r} is not valid ({e.__class__.__name__}: {e})") from None
    want = skeleton.state_dict()
    n = sum(v.numel() for v in want.values())
    if n > MAX_PARAMS:
        raise TitleModelError("arch", f"{n} parameters, more than the {MAX_PARAMS} allowed")
    if set(want) != set(tensors) or any(tuple(want[k].shape) != tuple(tensors[k].shape) for k in want):
        raise TitleModelError("shape", f"tensors do not match a {name} {config}")
    if not all(bool(torch.isfinite(v).all()) for v in tensors.values()):
        raise TitleModelError("values", "non-finite weights")
    rng = meta.get("input_range", "0,1")
    if rng not in ("0,1", "-1,1"):
        raise TitleModelError("format", f"input range {rng!r}")
    net = spec.load(config, tensors)
    return SRModel(net, scale, rng).eval()


def load(path: str | os.PathLike, scale: int, *, nbytes: int | None = None, sha256: str | None = None,
         arch: str | None = None, max_bytes: int = MAX_MODEL_BYTES) -> tuple[SRModel, dict]:
    """A title model file, verified against the manifest's ``nbytes`` and ``sha256`` (when given), for a
    rendition at ``scale`` (and of architecture ``arch`` when given): (model on the CPU in eval mode,
    metadata)."""
    data = read_bytes(path, max_bytes)
    if nbytes is not None and len(data) != nbytes:
        raise TitleModelError("size", f"{Path(path).name}: {len(data)} bytes, the manifest says {nbytes}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise TitleModelError("sha256", f"{Path(path).name}: sha256 does not match the manifest")
    meta, tensors = parse(data)
    return check(meta, tensors, scale, arch), meta
