"""The CPU inference backends end to end: the shipped FastSR plays a plain-sr rung through OpenVINO."""

import pytest


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BBMR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_player_plays_plain_sr_with_fastsr_through_openvino(tmp_path, monkeypatch):
    """The shipped FastSR x2 plays a plain-sr rung through the OpenVINO backend; the report names the variant
    and the frames equal eager FastSR's within the check."""
    import json

    from packager.cli import main as package
    from player.cli import main as play
    from tests.media import _clip

    src = tmp_path / "in.mp4"
    _clip(src)
    out = tmp_path / "s"
    assert package([str(src), "--out", str(out), "--ladder", "plain-sr:2:20", "--segment", "0.4", "--device", "cpu",
                    "--measure-frames", "0", "--upscaler", "fast"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["renditions"][0]["psnr_y_upscaler"] == "fast"
    reports = {}
    for backend in ("openvino", "torch"):
        rep = tmp_path / f"{backend}.json"
        assert play([str(out), "--headless", "--backend", backend, "--max-frames", "4", "--niqe-every", "0",
                     "--reference", str(src), "--report", str(rep)]) == 0
        reports[backend] = json.loads(rep.read_text())
    assert reports["openvino"]["stream"]["upscaler"] == "fast"
    assert reports["openvino"]["stream"]["backend"].startswith("openvino")
    assert reports["torch"]["stream"]["backend"].startswith("torch")
    a = [f["metrics"]["psnr_y"] for f in reports["openvino"]["frames"]]
    b = [f["metrics"]["psnr_y"] for f in reports["torch"]["frames"]]
    assert len(a) == 4 and max(abs(x - y) for x, y in zip(a, b)) < 0.05
