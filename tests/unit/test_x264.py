"""The same frames and options give the same bytes: x264 through the project's encoder (bbmr_stream.x264 keeps
it off its AVX-512 paths, which are not repeatable) encodes noise identically every time."""

import hashlib
from fractions import Fraction

import av
import numpy as np

from bbmr_stream.x264 import asm_params, with_asm
from packager.encode import LREncoder
from packager.pipeline import es_bytes


def test_with_asm_adds_to_the_x264_params():
    extra = asm_params()
    assert with_asm({"crf": "20"}) == ({"crf": "20", "x264-params": extra} if extra else {"crf": "20"})
    got = with_asm({"x264-params": "scenecut=0"})["x264-params"]
    assert got == ("scenecut=0:" + extra if extra else "scenecut=0")


def test_the_encoder_is_repeatable(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(128, 50, (100, 160, 3)) + i, 0, 255).astype(np.uint8) for i in range(36)]
    digests = set()
    for run in range(6):
        ts = tmp_path / f"r{run}.ts"
        enc = LREncoder(ts, [(160, 100)], Fraction(1, 90000), Fraction(30), "h264", 30, "medium", 12)
        for i, f in enumerate(frames):
            enc.encode(enc.planes([f]), i * 3000, None)
        enc.close()
        assert es_bytes(ts) > 0
        with av.open(str(ts)) as c:
            digests.add(hashlib.sha256(b"".join(bytes(p) for p in c.demux(video=0))).hexdigest())
    assert len(digests) == 1
