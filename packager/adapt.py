"""The adapt stage of the packager (``--adapt``): each client-SR rendition gets its own SR model, fine-tuned on
the title (models/adapt.py) and shipped in the stream directory (models/title.py), before it is measured.

LR = the rendition's own segments decoded back (the pictures the client will decode), HR = the source frames
(padded as the family pads them); the training frames are evenly spaced over the title
(:func:`models.adapt.frames_to_keep`). The model file (``models/<rendition>.safetensors``, fp16) is listed in
the rendition's ``models`` and its bytes are counted in the rendition's rate, spread over the segments it
serves (``parts_kbps["model"]``).

Families adapted: ``plain-sr`` (one per-scale network over the whole LR picture). Block families (uniform,
BBMR) are not adapted yet: their renditions keep the generic weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bbmr_stream.family import Geometry, make_family, spec_of
from bbmr_stream.manifest import ModelRef, Rendition
from bbmr_stream.progress import Progress
from models.adapt import AdaptConfig, PatchPool, adapt, frames_to_keep
from models.upscalers import base_weights

ADAPTED_FAMILIES = ("plain-sr",)
MODELS_DIR = "models"


def adapt_stage(renditions: list[Rendition], cfg: AdaptConfig, upscaler_of, info, geo: Geometry, n_frames: int,
                tmp: Path, source, device, progress: Progress) -> dict:
    """Fine-tune a model for every rendition of :data:`ADAPTED_FAMILIES` whose upscaler (``upscaler_of(family)``
    -> name) has per-scale weights; writes ``tmp/models/<name>.safetensors`` and sets ``rend.models``. ``source()``
    iterates the packaged source frames. Returns {rendition: the run's facts} for the manifest's conventions."""
    todo = []
    for rend in renditions:
        if rend.kind not in ADAPTED_FAMILIES:
            continue
        fam = make_family(spec_of(rend), geo)
        base = base_weights(upscaler_of(fam), rend.overall)
        if base is not None:
            todo.append((rend, fam, base))
    if not todo:
        return {}
    # per kept frame at the peak: the source frame, one rendition's padded HR copy and its LR picture (x2 at most)
    keep = frames_to_keep(n_frames, cfg, info.width * info.height * 3 * 9 // 4)
    src = source_rgb(source, keep)
    budget_s = 60.0 * cfg.budget_minutes(n_frames / float(info.fps), info.width, info.height)
    (tmp / MODELS_DIR).mkdir(exist_ok=True)
    facts = {}
    for rend, fam, (arch, wid) in todo:
        lr = lr_pictures(tmp, rend, keep, info)
        pool = PatchPool(lr, padded_hr(src, keep, rend.overall, lr.shape[1:3]), rend.overall,
                         (info.height // rend.overall, info.width // rend.overall))  # HR inside the source
        facts[rend.name] = adapt_one(rend, pool, cfg, arch, wid, budget_s, tmp, device, progress, len(keep))
        del lr, pool
    return facts


def adapt_one(rend: Rendition, pool: PatchPool, cfg: AdaptConfig, arch: str, wid: str, budget_s: float, tmp: Path,
              device, progress: Progress, n_keep: int) -> dict:
    """One rendition's model: fine-tuned, written, listed in ``rend.models``; returns its facts."""
    from models import title
    from models.registry import get_entry, load_model

    model = load_model(wid, "cpu")
    total = cfg.steps if cfg.steps is not None else max(1, int(budget_s))
    with progress.task(f"adapting {rend.name} ({wid}, {n_keep} frames)", total, rate=True) as task:
        done = [0]

        def tick(step: int, elapsed: float) -> None:
            now = step if cfg.steps is not None else min(total, int(elapsed))
            if now > done[0]:
                task.advance(now - done[0])
                done[0] = now

        res = adapt(model, pool, cfg, arch, budget_s, tick, device)
    model = model.cpu()
    entry = get_entry(wid)
    file = f"{MODELS_DIR}/{rend.name}.safetensors"
    run = res.to_dict() | {"seed": cfg.seed, "frames": n_keep, "warmup": cfg.warmup, "encoding": cfg.encoding}
    made = {k: v for k, v in run.items() if k not in ("seconds", "cpu_seconds")}  # the file: no timings, so that
    # the same seed and steps give the same bytes
    base = title.Base(wid, dict(entry.config), entry.sha256, load_model(wid, "cpu").net.state_dict())
    nbytes, sha = title.save(model, tmp / file, arch, dict(entry.config), base, made, cfg.encoding)
    rend.models = [ModelRef(file, nbytes, sha, arch, rend.overall, 0, len(rend.segments), wid)]
    return {"base": wid, **run, "bytes": nbytes}


def source_rgb(source, keep: list[int]) -> dict[int, np.ndarray]:
    """{frame index: (H, W, 3) uint8 RGB} of the source frames ``keep``."""
    want, out = set(keep), {}
    last = max(keep)
    for fr in source():
        if fr.index in want:
            out[fr.index] = fr.rgb
        if fr.index >= last:
            break
    if len(out) != len(want):
        raise RuntimeError(f"the source gave {len(out)} of the {len(want)} training frames")
    return out


def lr_pictures(tmp: Path, rend: Rendition, keep: list[int], info) -> np.ndarray:
    """(len(keep), h, w, 3) uint8 RGB: the rendition's decoded pictures of frames ``keep`` (its segments in
    ``tmp``), converted as the player converts them."""
    from bbmr_stream.colour import frame_to_rgb
    from bbmr_stream.demux import init_path, segment_frames

    want = {f: i for i, f in enumerate(keep)}
    out: list = [None] * len(keep)
    for seg in rend.segments:
        if not any(seg.first_frame <= f < seg.first_frame + seg.frames for f in keep):
            continue
        for i, (frs, _) in enumerate(segment_frames(tmp / seg.file, len(rend.pictures),
                                                             init_path(tmp, rend))):
            j = want.get(seg.first_frame + i)
            if j is not None:
                out[j] = frame_to_rgb(frs[0], info.matrix, info.full_range)[0]
    if any(o is None for o in out):
        raise RuntimeError(f"{rend.name}: {sum(o is None for o in out)} training frames not decoded")
    return np.stack(out)


def padded_hr(src: dict[int, np.ndarray], keep: list[int], k: int, lr_hw: tuple[int, int]) -> np.ndarray:
    """(N, k*h, k*w, 3) uint8: the source frames replicate-padded to k x the LR size (as PlainSR.pictures)."""
    h, w = lr_hw[0] * k, lr_hw[1] * k
    out = np.empty((len(keep), h, w, 3), np.uint8)
    for i, f in enumerate(keep):
        x = src[f]
        H, W = x.shape[:2]
        out[i, :H, :W] = x
        out[i, H:, :W] = x[-1:]
        out[i, :, W:] = out[i, :, W - 1:W]
    return out
