"""`python -m bench.bytes`: where a stream's bytes go (bench/bytes.py)."""

import json

from bbmr_stream.demux import init_path, segment_frames
from bbmr_stream.manifest import load
from bbmr_stream.sei import build_sei_nal


def test_bytes_split_into_video_sei_and_container(stream, tmp_path, capsys):
    from bench.bytes import main as bytes_main

    _, out = stream
    assert bytes_main([str(out), "--json", str(tmp_path / "b.json")]) == 0
    rows = {r["rendition"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    man = load(out)
    maps_sent = {}
    for rend in man.renditions:
        r = rows[rend.name]
        files = [out / s.file for s in rend.segments]
        assert rend.init is not None and man.container == "fmp4"  # the default
        assert r["shipped_bytes"] == sum(f.stat().st_size for f in files) + rend.init.bytes
        assert r["shipped_bytes"] == sum(r["video_bytes_per_stream"]) + r["container_bytes"]
        sent = []  # the maps the segments carry: each SEI NAL is as long as the packager builds it
        for f in files:
            maps = [m for _, m in segment_frames(f, len(rend.pictures), init_path(out, rend))]
            sent += [m for m, prev in zip(maps, [None] + maps) if m is not None and m is not prev]
        assert len(rend.segments) <= len(sent)
        assert r["sei_bytes"] == sum(len(build_sei_nal(m.to_bytes())) for m in sent)
        maps_sent[rend.kind] = (len(sent), len(rend.segments))
    assert maps_sent["uniform"][0] == maps_sent["uniform"][1]  # a uniform map never changes: one per segment
    assert "| bbmr_crf20 |" in capsys.readouterr().out


def test_bytes_refuses_a_directory_without_a_stream(tmp_path):
    from bench.bytes import main as bytes_main

    assert bytes_main([str(tmp_path)]) == 2
