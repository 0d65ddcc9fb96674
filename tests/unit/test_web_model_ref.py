"""The manifest's ``web_model`` (bbmr_stream.manifest.WebModelRef): what a loader accepts and refuses, and the
packager's ONNX export (packager/web_models.py): the same bytes every time, the same numbers as torch."""

import copy

import numpy as np
import pytest
import torch

from bbmr_stream.errors import ManifestError
from bbmr_stream.manifest import from_dict
from bench.fuzz import minimal_manifest


def test_the_seed_loads_with_its_web_model():
    m = from_dict(minimal_manifest())
    ref = m.renditions[1].web_model
    assert (ref.file, ref.arch, ref.scale, ref.input) == ("web/fastsr-x2.onnx", "fastsr", 2, None)
    assert m.renditions[0].web_model is None


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(kind="plain"), "plain-sr"),
    (lambda r: r["web_model"].update(file="../m.onnx"), "leaves the stream"),
    (lambda r: r["web_model"].update(file="/m.onnx"), "leaves the stream"),
    (lambda r: r["web_model"].update(bytes=(64 << 20) + 1), "web_model bytes"),
    (lambda r: r["web_model"].update(sha256="A" * 64), "sha256"),
    (lambda r: r["web_model"].update(arch="jointsr"), "arch"),
    (lambda r: r["web_model"].update(scale=4), "factor"),
    (lambda r: r["web_model"].update(input=[64]), "input"),
    (lambda r: r["web_model"].update(input=[0, 64]), "web_model input"),
    (lambda r: r.update(web_model="web/m.onnx"), "map"),
])
def test_bad_web_models_are_refused(edit, match):
    d = minimal_manifest()
    edit(d["renditions"][1])
    with pytest.raises(ManifestError, match=match):
        from_dict(copy.deepcopy(d))


def test_export_is_repeatable_and_matches_torch():
    import onnxruntime as ort

    from models.registry import load_model
    from packager.web_models import export_graph, web_network

    assert web_network("fast", 2) == ("fastsr-x2", "fastsr") and web_network("bicubic", 2) is None
    assert web_network("fast", 8) is None  # no FastSR x8 ships
    a, b = export_graph("fastsr-x2", None), export_graph("fastsr-x2", None)
    assert a == b
    x = np.random.default_rng(0).random((1, 3, 37, 53), dtype=np.float32)  # any size: dynamic axes
    y = ort.InferenceSession(a, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        t = load_model("fastsr-x2").float()(torch.from_numpy(x)).numpy()
    assert y.shape == (1, 3, 74, 106) and np.abs(y - t).max() < 1e-4
