import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# the suite runs the SR models in eager torch (fast start on tiny pictures); tests/unit/test_backend.py checks the
# exported runtimes (OpenVINO, ONNX Runtime) against it
os.environ.setdefault("BBMR_BACKEND", "torch")
os.environ.setdefault("BBMR_WORKERS", "1")  # bbmr-package in tests: this process (tests of workers say so)

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """tests/unit/* are marked ``unit``, tests/e2e/* ``e2e`` (``pytest -m unit`` runs the quick half)."""
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind in ("unit", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """A packaged 12-frame clip (bicubic scorer, one BBMR and one uniform rung, 0.4 s segments)."""
    from bbmr_stream.family import parse_ladder
    from packager import PackageConfig, package
    from tests.media import _clip

    d = tmp_path_factory.mktemp("play")
    src = d / "in.mp4"
    _clip(src)
    out = d / "stream"
    package(PackageConfig(str(src), str(out), scorer="bicubic", segment=0.4, upscaler="bicubic", device="cpu",
                          measure_frames=0), tuple(parse_ladder("bbmr:20,uniform:20")))
    return src, out
