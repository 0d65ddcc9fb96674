"""``python -m bench.fuzz [--n 100000] [--json out.json]``: long fuzz runs of the parsers that read untrusted
bytes: the scale-map parser, SEI extraction, the manifest loader, the per-title model reader (models/title.py).
Inputs are random bytes / JSON values and random mutations (byte flips, truncations, splices; for model files
also header values replaced) of valid ones; every input must give a result or the parser's own exception
(ScaleMapError, SEIError, ManifestError, TitleModelError) within a time bound. Prints (and writes) inputs per
target, seconds, and any failure with its input. The short run in CI: tests/unit/test_fuzz.py and
tests/unit/test_title.py (hypothesis).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import struct
import sys
import time
import zlib

import numpy as np

from bbmr_stream.errors import ManifestError, ScaleMapError, SEIError
from bbmr_stream.manifest import from_dict
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.sei import build_sei_nal, find_bbmr_payloads
from models.title import TitleModelError

SLOW_S = 1.0  # one input taking longer than this counts as a hang


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.7:
            b = b[: rng.randint(0, len(b))]
        elif op < 0.85 and b:
            i = rng.randrange(len(b))
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(b)


def scalemap_inputs(rng: random.Random):
    grids = [np.array(rng.choices([2, 4, 8], k=gh * gw), np.uint8).reshape(gh, gw)
             for gh, gw in ((1, 1), (2, 3), (9, 16), (17, 30))]
    goods = [ScaleMap(g).to_bytes() for g in grids]
    while True:
        r = rng.random()
        if r < 0.2:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            continue
        b = mutate(rng, rng.choice(goods))
        if r < 0.6 and len(b) > 4:  # a valid CRC over the mutated body: the parser's field checks are reached
            b = b[:-4] + struct.pack(">I", zlib.crc32(b[:-4]))
        yield b


def sei_inputs(rng: random.Random):
    good = ScaleMap(np.full((9, 16), 4, np.uint8)).to_bytes()
    goods = [build_sei_nal(good, c) + (b"\x00\x00\x00\x01\x65\x88\x84" if c == "h264" else b"\x00\x00\x00\x01\x26\x01")
             for c in ("h264", "hevc")]
    while True:
        yield (rng.choice(["h264", "hevc"]),
               bytes(rng.randrange(256) for _ in range(rng.randint(0, 128))) if rng.random() < 0.2
               else mutate(rng, rng.choice(goods)))


def minimal_manifest() -> dict:
    """A valid two-rendition manifest (plain and plain-sr x2 with its web model, 64x64, 4 frames, one audio
    rendition): the seed both fuzzers mutate."""
    seg = {"file": "a_00000.m4s", "duration_s": 0.4, "bytes": 100, "first_frame": 0, "frames": 4}
    r = {"name": "a", "kind": "plain", "codec": "h264", "crf": 23, "layout": "plain", "scales": [1], "overall": 1,
         "lr_width": 64, "lr_height": 64, "bitrate_kbps": 2.0, "playlist": "a.m3u8", "segments": [seg],
         "init": {"file": "a_init.mp4", "bytes": 700}, "video_range": "SDR", "bit_depth": 8}
    sr = {**copy.deepcopy(r), "name": "b", "kind": "plain-sr", "scales": [2], "overall": 2, "lr_width": 32,
          "lr_height": 32, "playlist": "b.m3u8", "segments": [{**seg, "file": "b_00000.m4s"}],
          "init": {"file": "b_init.mp4", "bytes": 700},
          "web_model": {"file": "web/fastsr-x2.onnx", "bytes": 90000, "sha256": "0" * 64, "arch": "fastsr",
                        "scale": 2, "input": None}}
    return {"version": 1, "source": {"file": "x", "width": 64, "height": 64, "fps": [10, 1], "frames": 4,
                                     "duration_s": 0.4, "matrix": "bt709", "full_range": False, "max_fps": 12.0},
            "block": 128, "overall": 4, "scales": [2, 4, 8], "resize": "r", "container": "fmp4",
            "segment_s": 0.4, "realloc": "gop", "scorer": "none", "allocator": "optimal", "renditions": [r, sr],
            "audio": [{"playlist": "audio_0.m3u8", "name": "English", "language": "eng", "codecs": "mp4a.40.2",
                       "channels": 2, "kbps": 130.0, "peak_kbps": 140.0, "default": True, "source_stream": 0,
                       "copied": True}]}


def _value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 2 and r < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.3:
        return {rng.choice(["a", "file", "frames", ""]): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice([None, True, False, 0, -1, 1, 2**31, 2**70, 1e308, float("nan"), float("inf"), -0.5, "",
                       "../x", "/etc/passwd", "~", "a" * 300, "h264", "bbmr", "atlas", [1], [0, 1], [10, 1]])


def manifest_inputs(rng: random.Random):
    base = minimal_manifest()
    while True:
        d = copy.deepcopy(base)
        for _ in range(rng.randint(1, 4)):
            parent, key = d, rng.choice(list(d))
            for _ in range(rng.randint(0, 4)):  # walk down to a random node
                child = parent[key]
                if isinstance(child, dict) and child:
                    parent, key = child, rng.choice(list(child))
                elif isinstance(child, list) and child:
                    parent, key = child, rng.randrange(len(child))
                else:
                    break
            if rng.random() < 0.15 and isinstance(parent, dict):
                del parent[key]
            else:
                parent[key] = _value(rng)
            if not d:
                break
        text = json.dumps(d)
        if rng.random() < 0.1:
            text = mutate(rng, text.encode()).decode("latin-1")
        yield text


def run_manifest(text: str):
    try:
        d = json.loads(text)
    except ValueError:
        return
    from_dict(d)


def _title_net():
    import torch

    from models.fastsr import FastSR, FastSRConfig

    torch.manual_seed(0)
    cfg = FastSRConfig(scale=2, feat=8, feat2=4)
    return FastSR(cfg), cfg.to_dict()


def title_base():
    """The base weights the fuzzed delta models are differences to (random FastSR x2)."""
    from models import title

    net, cfg = _title_net()
    return title.Base("fastsr-x2", cfg, "0" * 64, net.state_dict())


def title_model(encoding: str = "fp16") -> bytes:
    """A valid FastSR x2 title model file (random weights; a delta encoding: the base plus noise)."""
    import tempfile
    from pathlib import Path

    import torch

    from models import title
    from models.registry import SRModel

    net, cfg = _title_net()
    if encoding == "fp16":
        sd = {k: v.half() for k, v in net.state_dict().items()}
        return title.serialize(sd, {"format": title.FORMAT, "arch": "fastsr", "config": cfg,
                                    "input_range": SRModel(net, 2).input_range,
                                    "base": {"id": "fastsr-x2", "sha256": "0" * 64}, "adapt": {}})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.safetensors"
        title.save(SRModel(net, 2), path, "fastsr", cfg, title_base(), {}, encoding)
        return path.read_bytes()


def title_inputs(rng: random.Random):
    """Mutated model files (fp16 and delta-int4, the latter read with its base weights): byte-level, and
    header-level (a JSON value of the header or metadata replaced)."""
    goods = [title_model(e) for e in ("fp16", "delta-int4")]
    while True:
        good = rng.choice(goods)
        (n,) = struct.unpack("<Q", good[:8])
        head = json.loads(good[8:8 + n])
        if rng.random() < 0.5:
            yield mutate(rng, good)
            continue
        h = copy.deepcopy(head)
        if rng.random() < 0.5:
            k = rng.choice(list(h["__metadata__"]))
            h["__metadata__"][k] = json.dumps(_value(rng)) if rng.random() < 0.7 else str(_value(rng))
        else:
            k = rng.choice([k for k in h if k != "__metadata__"])
            f = rng.choice(["dtype", "shape", "data_offsets"])
            h[k][f] = _value(rng)
        text = json.dumps(h).encode()
        yield struct.pack("<Q", len(text)) + text + good[8 + n:]


_BASE = []


def run_title(data: bytes):
    from models import title

    if not _BASE:
        _BASE.append(title_base())
    title.check(*title.parse(data), 2, base=_BASE[0])


TARGETS = {
    "scalemap": (scalemap_inputs, ScaleMap.from_bytes, ScaleMapError),
    "sei": (sei_inputs, lambda a: find_bbmr_payloads(a[1], a[0]), SEIError),
    "manifest": (manifest_inputs, run_manifest, ManifestError),
    "title": (title_inputs, run_title, TitleModelError),
}


def fuzz(name: str, n: int, seed: int = 0) -> dict:
    gen, fn, own = TARGETS[name]
    rng = random.Random(seed)
    it = gen(rng)
    t0 = time.time()
    counts = {"ok": 0, "own_error": 0}
    failures, slow = [], 0
    for _ in range(n):
        x = next(it)
        t = time.time()
        try:
            fn(x)
            counts["ok"] += 1
        except own:
            counts["own_error"] += 1
        except Exception as e:  # noqa: BLE001 - the point: anything else is a bug
            failures.append({"input": repr(x)[:300], "error": f"{e.__class__.__name__}: {e}"[:300]})
        if time.time() - t > SLOW_S:
            slow += 1
    return {"target": name, "inputs": n, "seconds": round(time.time() - t0, 2), **counts, "slow": slow,
            "failures": len(failures), "first_failures": failures[:5]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs per target (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    results = [fuzz(t, a.n, a.seed) for t in a.targets.split(",")]
    for r in results:
        print(f"{r['target']:9s} {r['inputs']} inputs in {r['seconds']} s: ok {r['ok']}, own error "
              f"{r['own_error']}, other error {r['failures']}, slow {r['slow']}")
        for f in r["first_failures"]:
            print(f"  {f['error']}  <- {f['input']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any(r["failures"] or r["slow"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
