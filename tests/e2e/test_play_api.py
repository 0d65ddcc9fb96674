"""The player as a library: ``play(PlayConfig) -> Report`` prints nothing, the config is plain picklable data,
and the CLI maps its flags onto it."""

import pickle
from contextlib import contextmanager

import pytest

from bbmr_stream.errors import InputError
from bbmr_stream.progress import Progress, Task
from player import PlayConfig, Report, play
from player.cli import build_parser, config_from


class Counting(Progress):
    """Records each task as [description, total, units advanced]."""

    def __init__(self) -> None:
        self.tasks: list[list] = []

    @contextmanager
    def task(self, description, total, rate=False):
        row = [description, total, 0]
        self.tasks.append(row)

        class Counted(Task):
            def advance(self, n=1):
                row[2] += n

        yield Counted()


def test_play_returns_a_report_and_prints_nothing(stream, tmp_path, capsys):
    _, out = stream
    prog = Counting()
    report = play(PlayConfig(str(out), headless=True, upscaler="bicubic", niqe_every=0, max_frames=5), prog)
    assert isinstance(report, Report) and len(report.frames) == 5
    assert report.concealed_total() == 0 and report.to_dict()["concealed_frames"] == 0
    assert prog.tasks == [["playing", 5, 5]]  # the headless bar goes through the progress object
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""
    assert not list(tmp_path.iterdir())  # no report, no video unless asked


def test_play_config_pickles_and_is_frozen():
    c = PlayConfig("s", rendition="bbmr_crf20", window_size=(640, 360), compare=("bicubic", "uniform"),
                   max_frames=3, trace="t.txt", strict=True)
    assert pickle.loads(pickle.dumps(c)) == c
    with pytest.raises(AttributeError):
        c.headless = True


@pytest.mark.parametrize("kw,msg", [({"window_size": (8, 720)}, "--window-size"),
                                    ({"compare": ("bilinear",)}, "--compare")])
def test_play_config_check(kw, msg):
    with pytest.raises(InputError, match=msg):
        PlayConfig("s", **kw).check()
    if "window_size" in kw:
        PlayConfig("s", headless=True, **kw).check()  # no window: the size is not used


def test_cli_flags_map_onto_the_config():
    args = build_parser().parse_args(["s", "--rendition", "r", "--upscaler", "fast", "--device", "cpu", "--backend",
                                      "torch", "--start", "1.5", "--window-size", "640x360", "--linger", "2",
                                      "--out", "o.mp4", "--out-crf", "0", "--frames-dir", "f", "--reference", "in.mp4",
                                      "--niqe-every", "3", "--compare", " bicubic, uniform,", "--report", "r.json",
                                      "--trace", "t", "--max-frames", "7", "--strict"])
    assert config_from(args) == PlayConfig(
        "s", rendition="r", upscaler="fast", device="cpu", backend="torch", start=1.5, window_size=(640, 360),
        linger=2.0, out="o.mp4", out_crf=0.0, frames_dir="f", reference="in.mp4", niqe_every=3,
        compare=("bicubic", "uniform"), report="r.json", trace="t", max_frames=7, strict=True)
    assert config_from(build_parser().parse_args(["s"])) == PlayConfig("s")
    with pytest.raises(InputError, match="--window-size"):
        config_from(build_parser().parse_args(["s", "--window-size", "big"]))
    assert config_from(build_parser().parse_args(["s", "--headless", "--window-size", "big"])).headless

