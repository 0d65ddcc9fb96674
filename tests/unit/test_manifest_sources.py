"""The manifest fields of real sources (docs/formats.md): HDR renditions, audio renditions, a variable-rate source's
frame-rate bound. What a player must not trust is a one-line ManifestError."""

import copy
import json

import pytest

from bbmr_stream.errors import ManifestError
from bbmr_stream.manifest import from_dict
from bench.fuzz import minimal_manifest


def _load(edit) -> object:
    d = copy.deepcopy(minimal_manifest())
    edit(d)
    return from_dict(json.loads(json.dumps(d)))


def test_hdr_rendition_fields():
    def hdr(d):
        d["renditions"][0] |= {"video_range": "PQ", "bit_depth": 10, "codec": "hevc"}

    r = _load(hdr).renditions[0]
    assert (r.video_range, r.bit_depth) == ("PQ", 10)
    r = _load(lambda d: [d["renditions"][0].pop(k) for k in ("video_range", "bit_depth")]).renditions[0]
    assert (r.video_range, r.bit_depth) == ("SDR", 8)  # a manifest written before them


@pytest.mark.parametrize("edit", [
    lambda d: d["renditions"][0].update(video_range="DolbyVision"),
    lambda d: d["renditions"][1].update(video_range="HLG"),  # an HDR plain-sr rendition: never made
    lambda d: d["renditions"][0].update(bit_depth=4),
    lambda d: d["audio"][0].update(name='a"b'),  # would break the EXT-X-MEDIA line
    lambda d: d["audio"][0].update(name="x" * 65),
    lambda d: d["audio"][0].update(language="english!"),
    lambda d: d["audio"][0].update(playlist="../a.m3u8"),
    lambda d: d["audio"][0].update(channels=0),
    lambda d: d.update(audio=[d["audio"][0]] * 17),
    lambda d: d.update(audio={"playlist": "a.m3u8"}),
    lambda d: d["source"].update(max_fps=5.0),  # under the average rate
    lambda d: d["source"].update(max_fps=float("inf")),
])
def test_rejected(edit):
    with pytest.raises(ManifestError):
        _load(edit)


def test_audio_and_the_variable_rate_bound():
    m = _load(lambda d: d.update(audio="audio.ts"))  # the old side file: no audio renditions
    assert m.audio == []
    m = _load(lambda d: None)
    assert [(a.language, a.default, a.copied) for a in m.audio] == [("eng", True, True)]

    def fast(d):  # 8 frames in 0.4 s: 20 fps, within a 25 fps source's bound, not a 10 fps one's
        d["source"] |= {"frames": 8, "max_fps": 25.0}
        for r in d["renditions"]:
            r["segments"][0]["frames"] = 8

    assert _load(fast).source["frames"] == 8
    with pytest.raises(ManifestError, match="declares 8 frames"):
        _load(lambda d: (fast(d), d["source"].pop("max_fps")))
