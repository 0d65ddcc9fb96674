"""The browser player's pure JavaScript stages (ABR rule, SR speed, SHA-256, manifest checks, scale maps,
planes geometry) under node's own test runner: tests/unit/web/page.test.mjs. The scale-map and planes vectors
come from the Python modules the packager and the Python player use (bbmr_stream.scalemap, bbmr_stream.planes),
so the page reads exactly what they write."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from bbmr_stream.blocks import BlockGrid
from bbmr_stream.planes import stack
from bbmr_stream.scalemap import ScaleMap


def vectors() -> dict:
    rng = np.random.default_rng(0)
    maps = []
    for gh, gw, ss in [(1, 1, (2, 4, 8)), (9, 15, (2, 4, 8)), (17, 30, (2, 4, 8)), (3, 5, (4,)), (2, 7, (2, 8)),
                       (4, 4, (1, 2, 4, 8, 16))]:
        f = rng.choice(np.array(ss, np.uint8), size=(gh, gw))
        data = ScaleMap(f, ss, int(rng.integers(0, 2**32)), 128).to_bytes()
        maps.append({"hex": data.hex(), "frame": None, "grid": [gh, gw], "scales": list(ss),
                     "factors": f.reshape(-1).tolist()})
        maps[-1]["frame"] = ScaleMap.from_bytes(data).frame_index
    planes = []
    for w, h, scales in [(1920, 1080, (2, 4, 8)), (640, 360, (2, 4, 8)), (2560, 1440, (2, 4, 8)), (1920, 1080, (4,)),
                         (191, 108, (2, 4, 8)), (500, 300, (2, 8))]:
        (pw, ph), boxes = stack(BlockGrid(h, w, 128), scales)
        planes.append({"width": w, "height": h, "scales": list(scales), "pic": [pw, ph],
                       "boxes": [list(b) for b in boxes]})
    # float32 values at, just under and just over every half level, and random ones: levels8's output for each
    half = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255)
    vals = np.concatenate([half, np.nextafter(half, np.float32(0)), np.nextafter(half, np.float32(1)),
                           rng.random(4000, dtype=np.float32) * np.float32(1.2) - np.float32(0.1)]).astype(np.float32)
    import torch

    from bbmr_stream.resize import levels8

    levels = levels8(torch.from_numpy(vals)).to(torch.int64).tolist()
    return {"maps": maps, "planes": planes, "levels": {"values": [float(v) for v in vals], "levels": levels}}


def test_page_stages_under_node(tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (apt-get install nodejs; make web needs npm too)"
    vec = tmp_path / "vectors.json"
    vec.write_text(json.dumps(vectors()))
    here = Path(__file__).parent / "web"
    r = subprocess.run([node, "--test", *sorted(str(p) for p in here.glob("*.test.mjs"))], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "BBMR_WEB_VECTORS": str(vec)})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and "# pass 13" in r.stdout, r.stdout[-2000:]
