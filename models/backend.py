"""Inference backends for the SR networks on a CPU: eager torch, OpenVINO or ONNX Runtime, each checked
against eager fp32 before it is used.

An :class:`AcceleratedSR` wraps an :class:`~models.registry.SRModel` and is called like it ((N, 3, h, w) RGB in
[0, 1] -> (N, 3, s*h, s*w)). Per input shape it exports the network once to ONNX (static shape: OmniSR's
padding and window partition are constants of the shape), runs it in the chosen runtime, and compares that
first output with eager fp32 on the same input. The variant is used only if its output is within
:data:`VERIFY_MIN_PSNR` of eager (PSNR-Y, BT.601 Y of the clamped outputs, peak 255); otherwise the next
variant is tried and, last, eager torch (channels_last). Exported graphs and the check's verdict are cached on
disk (:func:`cache_dir`), keyed by the weights' sha256, the shape, the runtime's version and the variant, so a
second run starts in a fraction of a second without re-checking.

Variants tried, in order, for ``backend``:

- ``openvino``: bf16 inference precision when the CPU has native bf16 (AVX512-BF16/AMX), then f32;
- ``onnxruntime``: f32;
- ``torch``: eager with channels_last memory format (always exact to ~1e-6, never checked);
- ``auto``: ``openvino`` when installed, else ``onnxruntime``, else ``torch``.

CUDA tensors (and tensors that need grad) always go through the eager model: the runtimes here are CPU ones;
on CUDA the models run in torch with fp16 autocast (models/inference.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bbmr_stream.errors import BackendError

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
# A variant's output must be within this PSNR-Y of eager fp32 (BT.601 Y, peak 255): its error power is then
# below 0.065 (8-bit units squared), which moves the PSNR-Y of SR output at <= 40 dB by <= 0.04 dB when the
# errors are independent (bench/speed.py measures the actual change against the HR frames).
VERIFY_MIN_PSNR = 60.0



def cache_dir() -> Path:
    """Where exported graphs live: ``$BBMR_CACHE`` or ``~/.cache/bbmr-stream`` (``$XDG_CACHE_HOME``)."""
    if os.environ.get("BBMR_CACHE"):
        return Path(os.environ["BBMR_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bbmr-stream"


def available(backend: str) -> bool:
    if backend == "torch":
        return True
    mod = {"openvino": "openvino", "onnxruntime": "onnxruntime"}.get(backend)
    if mod is None:
        return False
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


_default: str | None = None


def set_default_backend(backend: str) -> str:
    """The process-wide backend of models loaded without one (the CLIs' ``--backend``, like
    ``torch.set_num_threads``); returns the runtime it resolves to (BackendError if unknown/not installed)."""
    global _default
    name = resolve(backend)
    _default = backend
    return name


def default_backend() -> str:
    """:func:`set_default_backend`'s choice, else ``$BBMR_BACKEND`` (the test suite sets ``torch``), else ``auto``."""
    return _default or os.environ.get("BBMR_BACKEND") or "auto"


def resolve(backend: str | None) -> str:
    """``auto`` -> the fastest installed runtime; an explicit name must be installed; None -> the default."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return next(b for b in ("openvino", "onnxruntime", "torch") if available(b))
    if not available(backend):
        raise BackendError(f"backend {backend!r} is not installed (pip install {backend})")
    return backend


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); emulated bf16 is 5-6x slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def psnr_y_between(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-Y (BT.601 Y of RGB in [0, 1] clamped, peak 255) between two (N, 3, H, W) arrays; inf if equal."""
    w = np.array([65.481, 128.553, 24.966], dtype=np.float64).reshape(1, 3, 1, 1)
    ya = (np.clip(a, 0, 1) * w).sum(1)
    yb = (np.clip(b, 0, 1) * w).sum(1)
    mse = float(np.mean((ya - yb) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


@dataclass(frozen=True)
class Variant:
    backend: str  # "openvino" | "onnxruntime" | "torch"
    precision: str  # "f32" | "bf16"

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"


def variants_for(backend: str | None) -> list[Variant]:
    b = resolve(backend)
    if b == "openvino":
        return ([Variant("openvino", "bf16")] if cpu_has_native_bf16() else []) + [Variant("openvino", "f32")]
    if b == "onnxruntime":
        return [Variant("onnxruntime", "f32")]
    return []


@dataclass
class Verdict:
    """The check of one variant at one shape against eager fp32."""

    variant: str
    shape: tuple
    max_abs_diff: float
    psnr_y_vs_eager: float
    used: bool


def runtime_version(backend: str) -> str:
    if backend == "openvino":
        import openvino

        return openvino.__version__
    if backend == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    return torch.__version__


def export_onnx(model: nn.Module, x: torch.Tensor, dynamic: bool = False) -> bytes:
    """The model as an ONNX graph (TorchScript exporter, opset 17, input ``x``, output ``y``) for ``x``'s static
    shape, or with ``dynamic`` for any height and width (a network whose shape-dependent code is shape-free)."""
    buf = io.BytesIO()
    axes = {"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}} if dynamic else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes=axes)
    return buf.getvalue()


class _Runner:
    """One compiled graph: numpy (N, 3, h, w) float32 in, numpy out."""

    def __init__(self, variant: Variant, onnx_path: Path, threads: int) -> None:
        self.variant = variant
        if variant.backend == "openvino":
            import openvino as ov

            core = ov.Core()
            cfg = {"INFERENCE_PRECISION_HINT": variant.precision, "INFERENCE_NUM_THREADS": threads}
            self._ov = core.compile_model(core.read_model(str(onnx_path)), "CPU", cfg)
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            self._ort = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.variant.backend == "openvino":
            return self._ov(x)[0]
        return self._ort.run(None, {"x": x})[0]


class AcceleratedSR(nn.Module):
    """An SR model run through a CPU runtime per input shape, checked against eager fp32 (module docstring).

    ``key`` identifies the weights (their sha256): graphs and verdicts are cached under it. ``verdicts`` lists
    every check made or read from the cache in this process (the reports state the precision used)."""

    def __init__(self, model: nn.Module, key: str, backend: str | None = None, threads: int | None = None,
                 variants: list[Variant] | None = None, enforce_check: bool = True) -> None:
        super().__init__()
        self.model = model.eval()
        self.scale = getattr(model, "scale", None)
        self.key, self.backend = key, resolve(backend)
        self.threads = threads
        self._variants = variants_for(backend) if variants is None else variants  # bench/speed.py picks one
        # False (bench/speed.py only): no check here, the variant is used whatever its output; the bench
        # compares the whole frame with eager itself
        self.enforce_check = enforce_check
        self._runners: dict[tuple, _Runner | None] = {}
        self._lock = threading.Lock()
        self.verdicts: list[Verdict] = []
        if self.backend == "torch":
            self.model.to(memory_format=torch.channels_last)

    @property
    def description(self) -> str:
        used = sorted({v.variant for v in self.verdicts if v.used})
        return ", ".join(used) if used else ("torch-f32 (channels_last)" if self.backend == "torch" else "pending")

    def eager(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x.contiguous(memory_format=torch.channels_last)).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.requires_grad:
            return self.model(x)
        if not self._variants or x.dtype != torch.float32:
            return self.eager(x)
        shape = tuple(x.shape)
        with self._lock:
            if shape not in self._runners:
                self._runners[shape] = self._build(x)
        runner = self._runners[shape]
        if runner is None:
            return self.eager(x)
        with self._lock:  # one compiled graph runs one request at a time
            return torch.from_numpy(runner(np.ascontiguousarray(x.numpy())))

    # -- building and checking ------------------------------------------------------------------------------
    def _stem(self, variant: Variant, shape: tuple) -> str:
        tag = f"{self.key}|{'x'.join(map(str, shape))}|{variant.name}|{runtime_version(variant.backend)}|" \
              f"{torch.__version__}|{self.threads}|{cpu_has_native_bf16()}"
        return hashlib.sha256(tag.encode()).hexdigest()[:24]

    def _onnx(self, x: torch.Tensor) -> Path:
        shape = "x".join(map(str, x.shape))
        path = cache_dir() / "onnx" / f"{self.key[:16]}-{shape}-torch{torch.__version__}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_bytes(export_onnx(self.model, x))
            os.replace(tmp, path)
        return path

    def _build(self, x: torch.Tensor) -> _Runner | None:
        threads = self.threads or torch.get_num_threads()
        ref = None
        for variant in self._variants:
            verdict_file = cache_dir() / "verdicts" / f"{self._stem(variant, tuple(x.shape))}.json"
            try:
                runner = _Runner(variant, self._onnx(x), threads)
            except Exception as e:  # a runtime that cannot compile this graph: say so, try the next
                warnings.warn(f"{variant.name} failed to build for {tuple(x.shape)}: {e}; trying the next backend")
                continue
            if not self.enforce_check:
                return runner
            if verdict_file.exists():
                v = Verdict(**{**json.loads(verdict_file.read_text()), "shape": tuple(x.shape)})
            else:
                ref = self.eager(x).detach().numpy() if ref is None else ref
                out = runner(np.ascontiguousarray(x.numpy()))
                psnr = psnr_y_between(out, ref) if out.shape == ref.shape else float("-inf")
                diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
                v = Verdict(variant.name, tuple(x.shape), float(diff), float(psnr), bool(psnr >= VERIFY_MIN_PSNR))
                verdict_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = verdict_file.with_name(f".{verdict_file.name}.tmp-{os.getpid()}")
                tmp.write_text(json.dumps(asdict(v)))
                os.replace(tmp, verdict_file)
            self.verdicts.append(v)
            if v.used:  # a refused precision before it (bf16) is expected, not news: the verdicts record it
                return runner
        refused = [v for v in self.verdicts if v.shape == tuple(x.shape)]
        if refused:  # every exported variant differs from eager: something is off, and it will be slow
            warnings.warn("; ".join(f"{v.variant} differs from eager fp32 ({v.psnr_y_vs_eager:.1f} dB PSNR-Y, max "
                                    f"|diff| {v.max_abs_diff:.2g})" for v in refused)
                          + f" at {tuple(x.shape)}: running eager torch")
        return None


def accelerate(model: nn.Module, key: str, backend: str | None = None, device: torch.device | None = None
               ) -> nn.Module:
    """``model`` wrapped for ``backend`` on a CPU (unchanged on CUDA, where torch runs it in fp16)."""
    if device is not None and device.type != "cpu":
        return model
    return AcceleratedSR(model, key, backend)
