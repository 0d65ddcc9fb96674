"""The packager's library API: ``package(PackageConfig, ladder) -> Manifest`` with frozen, picklable configs; it
prints nothing (notes and progress go through the Progress object passed in) and checks its input before any
output exists."""

import dataclasses
import pickle
from contextlib import contextmanager

import pytest

from bbmr_stream.errors import InputError
from bbmr_stream.family import parse_ladder
from bbmr_stream.manifest import Manifest, load
from bbmr_stream.progress import Progress, Task
from packager import AutoLadder, PackageConfig, package
from tests.media import _clip


class Recorder(Progress):
    """Keeps what a run reports: notes, tables and each task's description and units done."""

    def __init__(self) -> None:
        self.notes, self.tables, self.tasks = [], [], []

    def note(self, text):
        self.notes.append(text)

    def table(self, table):
        self.tables.append(table)

    @contextmanager
    def task(self, description, total, rate=False):
        rec = {"description": description, "total": total, "done": 0, "labels": []}
        self.tasks.append(rec)

        class T(Task):
            def advance(self, n=1):
                rec["done"] += n

            def describe(self, text):
                rec["labels"].append(text)

        yield T()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("api") / "in.mp4"
    _clip(p)
    return p


def test_configs_are_plain_picklable_data():
    cfg = PackageConfig("in.mp4", "out", scales=(2, 4, 8), sample=(0, 2))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(AutoLadder(fast=True))) == AutoLadder(fast=True)
    ladder = tuple(parse_ladder("plain:30,plain-sr:2:30,bbmr:30"))
    assert pickle.loads(pickle.dumps(ladder)) == ladder
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.out = "elsewhere"


def test_package_returns_the_manifest_and_prints_nothing(clip, tmp_path, capsys):
    out = tmp_path / "s"
    rec = Recorder()
    man = package(PackageConfig(str(clip), str(out), segment=0.4, device="cpu", measure_frames=3),
                  tuple(parse_ladder("plain:30,plain:160x100:30")), rec)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert isinstance(man, Manifest) and man.to_json() == load(out).to_json()
    assert [r.name for r in man.renditions] == ["plain_crf30", "plain_160x100_crf30"]
    assert all(r.psnr_y is not None for r in man.renditions)
    by = {t["description"]: t for t in rec.tasks}
    # one bar per stage over its tasks: 3 segments (12 frames, GOPs of 4) x one group of rungs; a task per rendition
    # and segment holding measured frames (0, 6, 11: one per segment)
    assert by["encoding 2 renditions (3 segments, 3 tasks)"]["done"] == 3
    assert by["measuring"]["done"] == by["measuring"]["total"] == 2 * 3


def test_auto_ladder_measures_through_the_library(clip, tmp_path, capsys):
    """The default search (the hull, packager.hull) and the fixed grid both measure through the packager, on the
    sample, and leave no candidate stream behind."""
    rec = Recorder()
    cfg = PackageConfig(str(clip), str(tmp_path / "s"), segment=0.4, device="cpu", measure_frames=2,
                        upscaler="bicubic")
    man = package(cfg, AutoLadder(fast=True, max_rungs=3, sample_segments=1, measure_frames=2), rec)
    assert capsys.readouterr().out == ""
    assert any(n.startswith("--ladder auto: searching the rate-quality hull of 5 lines") for n in rec.notes)
    rounds = next(n for n in rec.notes if " points measured in " in n)
    assert len(rec.tables) == 1 and 1 <= len(man.renditions) <= 3, rounds
    assert not list(tmp_path.glob("bbmr-candidates-*"))  # the candidates' streams are gone
    rec = Recorder()
    man = package(dataclasses.replace(cfg, force=True),
                  AutoLadder(fast=True, max_rungs=3, sample_segments=1, measure_frames=2, search="grid"), rec)
    assert any(n.startswith("--ladder auto: measuring 13 candidates on 1 segment(s)") for n in rec.notes)
    assert 1 <= len(man.renditions) <= 3 and not list(tmp_path.glob("bbmr-candidates-*"))


@pytest.mark.parametrize("change, message", [
    ({"segment": 0.0}, "--segment"), ({"overall": 3}, "--overall"), ({"allocator": "best"}, "--allocator"),
    ({"scales": (2, 3)}, "--scales"), ({"block": 40}, "--block"), ({"input": "/nonexistent.mp4"}, "no such file"),
])
def test_bad_config_is_an_input_error_before_any_output(clip, tmp_path, change, message):
    cfg = dataclasses.replace(PackageConfig(str(clip), str(tmp_path / "s"), device="cpu"), **change)
    with pytest.raises(InputError, match=message):
        package(cfg, tuple(parse_ladder("plain:30")))
    assert list(tmp_path.iterdir()) == []


def test_empty_ladder_and_bad_auto_settings(clip, tmp_path):
    cfg = PackageConfig(str(clip), str(tmp_path / "s"), device="cpu")
    with pytest.raises(InputError, match="empty"):
        package(cfg, ())
    with pytest.raises(InputError, match="auto-max-rungs"):
        package(cfg, AutoLadder(max_rungs=0))
    with pytest.raises(InputError, match="auto-search"):
        package(cfg, AutoLadder(search="dense"))
    with pytest.raises(InputError, match="auto-min-kbps"):
        package(cfg, AutoLadder(min_kbps=-1.0))
