"""The browser player's client models: every plain-sr rendition's SR network exported to ONNX into the stream
directory (``web/``), its sha256 in the manifest (``rendition.web_model``), for onnxruntime-web in the page of
``bbmr-play --web`` (player/web).

- What is exported: the generic weights the rendition is measured with (``fast``: FastSR, ``omnisr``:
  OmniSR-light, at the rendition's factor), wrapped with their input range (RGB in [0, 1] in, RGB out,
  unclamped: the page clamps and rounds as the Python player does). A rendition with per-title models is
  played in the page with these generic weights (its ``base``, the Python player's fallback too).
- Shapes: FastSR (convolutions and a pixel shuffle) takes any LR size (dynamic height and width); OmniSR's
  window partition and padding are constants of the shape, so its graph is exported for the rendition's LR
  picture size (``web_model.input``).
- Files: ``web/<weights id>[-<w>x<h>].onnx``, one per network and shape, shared by the renditions that use it;
  opset 17 (TorchScript exporter), the same bytes for the same weights and shape.
- Rate: not in ``bitrate_kbps`` (see :class:`bbmr_stream.manifest.WebModelRef`): the ONNX copy of the weights
  the Python player installs, the same file for every title.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bbmr_stream.manifest import WebModelRef
from bbmr_stream.progress import Progress

WEB_DIR = "web"
OPSET = 17  # models.backend.export_onnx's
DYNAMIC = {"fastsr"}  # architectures exported with dynamic height and width


def web_network(upscaler: str, scale: int) -> tuple[str, str] | None:
    """``(weights id, arch)`` of the network the page runs for a plain-sr rendition measured with ``upscaler`` at
    ``scale`` (the generic weights a title model of it is fine-tuned from: models.upscalers.base_weights), None
    when there is none to export (bicubic, or no shipped weights at that scale)."""
    from models.upscalers import base_weights

    net = base_weights(upscaler, scale)
    return None if net is None else (net[1], net[0])


def export_graph(weights_id: str, input_wh: tuple[int, int] | None) -> bytes:
    """The shipped weights ``weights_id`` (an SRModel: RGB [0, 1] in and out) as ONNX bytes
    (models.backend.export_onnx): for any LR size (``input_wh`` None) or for ``(width, height)``."""
    from models.backend import export_onnx
    from models.registry import load_model

    model = load_model(weights_id, "cpu").float().eval()
    w, h = input_wh or (64, 48)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    return export_onnx(model, x, dynamic=input_wh is None)


def export_web_models(renditions, root: Path, progress: Progress | None = None) -> dict:
    """Export the ONNX model of every measured plain-sr rendition of ``renditions`` (the network of its
    ``psnr_y_upscaler``) into ``root/web/`` and set ``rendition.web_model``. Returns ``{file: bytes}`` written.
    Renditions without a network (unmeasured ones play bicubic in every player) keep ``web_model`` None."""
    made: dict[tuple, WebModelRef] = {}
    written: dict[str, int] = {}
    for r in renditions:
        if r.kind != "plain-sr" or r.psnr_y_upscaler is None:
            continue
        net = web_network(r.psnr_y_upscaler, r.overall)
        if net is None:
            continue
        wid, arch = net
        shape = None if arch in DYNAMIC else (r.lr_width, r.lr_height)
        key = (wid, shape)
        if key not in made:
            data = export_graph(wid, shape)
            name = f"{WEB_DIR}/{wid}{'' if shape is None else f'-{shape[0]}x{shape[1]}'}.onnx"
            (root / WEB_DIR).mkdir(exist_ok=True)
            (root / name).write_bytes(data)
            written[name] = len(data)
            made[key] = WebModelRef(name, len(data), hashlib.sha256(data).hexdigest(), arch, r.overall,
                                    None if shape is None else list(shape))
            if progress is not None:
                progress.note(f"web model {name}: {len(data) / 1024:.0f} KB (ONNX opset {OPSET}, {wid})")
        r.web_model = made[key]
    return written
