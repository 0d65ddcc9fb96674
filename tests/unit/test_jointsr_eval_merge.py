"""bench.jointsr_eval --merge: results of runs over disjoint image subsets combine into one."""

import json
import subprocess
import sys

import pytest

from bench.jointsr_eval import merge, summarize


def _row(name, base):
    return {k: {"omnisr_o": base + i, "jointsr": base + i + 1.0} for i, k in
            enumerate(("psnr_y", "edge_mse", "interior_mse"))} | {"name": name}


def test_merge_means_over_all_images():
    a = summarize([_row("a.png", 30.0), _row("b.png", 32.0)], "light", "shipped", "shipped")
    b = summarize([_row("c.png", 36.0)], "light", "shipped", "shipped")
    m = merge([a, b])
    assert [r["name"] for r in m["images"]] == ["a.png", "b.png", "c.png"]
    assert m["mean"]["psnr_y"]["omnisr_o"] == pytest.approx(98.0 / 3)
    assert m["mean"]["edge_mse"]["jointsr"] == pytest.approx((32.0 + 34.0 + 38.0) / 3)
    assert m["mean"] != a["mean"]


def test_merge_refuses_other_models_and_repeated_images():
    a = summarize([_row("a.png", 30.0)], "light", "shipped", "shipped")
    with pytest.raises(ValueError, match="jointsr"):
        merge([a, summarize([_row("b.png", 30.0)], "light", "runs/x", "shipped")])
    with pytest.raises(ValueError, match="more than one"):
        merge([a, a])


def test_merge_cli_writes_json_and_bad_input_exits(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(summarize([_row("a.png", 30.0)], "light", "shipped", "shipped")))
    b.write_text(json.dumps(summarize([_row("b.png", 34.0)], "light", "shipped", "shipped")))
    out = tmp_path / "all.json"
    cmd = [sys.executable, "-m", "bench.jointsr_eval", "--merge", str(a), str(b), "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert json.loads(out.read_text())["mean"]["psnr_y"]["omnisr_o"] == pytest.approx(32.0)
    r = subprocess.run(cmd[:4] + [str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode != 0 and "error:" in r.stderr and "Traceback" not in r.stderr
