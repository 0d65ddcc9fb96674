"""Short fuzz runs of the parsers that read untrusted bytes (the long runs: bench/fuzz.py). Each input gives a
result or the parser's own exception, never another exception."""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbmr_stream.errors import ManifestError, ScaleMapError, SEIError
from bbmr_stream.manifest import from_dict
from bbmr_stream.scalemap import ScaleMap
from bbmr_stream.sei import BBMR_UUID, build_sei_nal, find_bbmr_payloads, unescape
from bench.fuzz import minimal_manifest

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_MAP = ScaleMap(np.array([[2, 4, 8], [8, 4, 2]], np.uint8)).to_bytes()


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


@FAST
@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6).map(
                     lambda e: mutate(GOOD_MAP, e))))
def test_scalemap_parser(data):
    try:
        m = ScaleMap.from_bytes(data)
    except ScaleMapError:
        return
    assert ScaleMap.from_bytes(m.to_bytes()).to_bytes() == m.to_bytes()


@FAST
@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6).map(
                     lambda e: mutate(build_sei_nal(GOOD_MAP) + b"\x00\x00\x00\x01\x65\x88", e))),
       st.sampled_from(["h264", "hevc"]))
def test_sei_extraction(data, codec):
    try:
        out = find_bbmr_payloads(data, codec)
    except SEIError:
        return
    assert all(isinstance(p, bytes) for p in out)
    unescape(data)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                       max_leaves=12)


def _set_path(d, path, value):
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


PATHS = [("version",), ("source", "width"), ("source", "fps"), ("source", "frames"), ("source", "matrix"),
         ("block",), ("overall",), ("scales",), ("renditions",), ("renditions", 0, "segments"),
         ("renditions", 0, "segments", 0, "frames"), ("renditions", 0, "segments", 0, "file"),
         ("renditions", 0, "crf"), ("renditions", 0, "scales"), ("renditions", 0, "name"),
         ("renditions", 0, "pictures"), ("renditions", 0, "codecs"), ("renditions", 0, "es_kbps"), ("audio",),
         ("audio", 0, "playlist"), ("audio", 0, "name"), ("audio", 0, "language"), ("audio", 0, "channels"),
         ("audio", 0, "codecs"), ("audio", 0, "default"), ("renditions", 0, "video_range"),
         ("renditions", 0, "bit_depth"), ("source", "max_fps"),
         ("container",), ("renditions", 0, "init"), ("renditions", 0, "init", "file"),
         ("renditions", 0, "init", "bytes"), ("renditions", 1, "web_model"), ("renditions", 1, "web_model", "file"),
         ("renditions", 1, "web_model", "bytes"), ("renditions", 1, "web_model", "sha256"),
         ("renditions", 1, "web_model", "arch"), ("renditions", 1, "web_model", "scale"),
         ("renditions", 1, "web_model", "input"), ("renditions", 1, "kind")]


def test_seed_loads():
    m = from_dict(json.loads(json.dumps(minimal_manifest())))
    assert m.audio[0].name == "English" and m.renditions[0].video_range == "SDR" and m.source["max_fps"] == 12.0


@FAST
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSONISH), max_size=3))
def test_manifest_loader(edits):
    d = minimal_manifest()
    for path, value in edits:
        try:
            _set_path(d, path, value)
        except (KeyError, IndexError, TypeError):
            pass
    try:
        from_dict(json.loads(json.dumps(d)))
    except ManifestError:
        pass


@FAST
@given(JSONISH)
def test_manifest_loader_any_json(value):
    try:
        from_dict(value)
    except ManifestError:
        pass


def test_uuid_is_fixed():
    assert BBMR_UUID.hex() == "ae77f864b39859fd9842bb2b72d61740"
