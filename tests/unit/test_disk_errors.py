"""The disk-full half of the error contract, in isolation: which errors are a full disk, the one line and exit
code ``run_cli`` gives them, the staged outputs that are renamed together, and the check that finds what
FFmpeg's HLS muxer cut short without saying so."""

from __future__ import annotations

import errno
import os

import av
import pytest

from bbmr_stream.cli import DISK_FULL_EXIT, run_cli
from bbmr_stream.errors import DiskFullError, disk_full, is_disk_full
from bbmr_stream.imageio import Staged
from packager.segment import is_whole


def _raise(e: BaseException):
    def fn() -> int:
        raise e
    return fn


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_disk_full_errors(code):
    assert is_disk_full(OSError(code, os.strerror(code)))
    assert is_disk_full(av.error.OSError(code, os.strerror(code), "x.mp4"))  # PyAV's is an OSError
    assert not is_disk_full(OSError(errno.EIO, "I/O error")) and not is_disk_full(MemoryError())


def test_disk_full_names_the_output_the_user_gave():
    with pytest.raises(DiskFullError) as e:
        with disk_full("stream/", "nothing was written"):
            with disk_full("/tmp/candidates/stream/", "inner"):  # an inner writer's name gives way
                raise av.error.OSError(errno.ENOSPC, "No space left on device", "/tmp/x/seg.ts")
    assert str(e.value) == "no space left on device writing stream/ (ENOSPC); nothing was written"
    assert e.value.errno == errno.ENOSPC and isinstance(e.value.__cause__, DiskFullError)
    with pytest.raises(PermissionError):  # any other OSError passes through as itself
        with disk_full("stream/", "-"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_run_cli_disk_full_is_one_line_and_exit_4(capsys):
    assert run_cli("tool", _raise(DiskFullError(errno.ENOSPC, "no space left on device writing o.mp4 (ENOSPC); "
                                                                "nothing was written"))) == DISK_FULL_EXIT == 4
    assert capsys.readouterr().err == "tool: error: no space left on device writing o.mp4 (ENOSPC); nothing was " \
                                      "written\n"
    assert run_cli("tool", _raise(OSError(errno.EDQUOT, "Disk quota exceeded", "/x/y.json"))) == 4
    assert capsys.readouterr().err == "tool: error: disk quota exceeded writing /x/y.json (EDQUOT); partial output " \
                                      "removed\n"
    for e in (OSError(errno.EIO, "I/O error"), MemoryError(), RuntimeError("a bug")):  # surface as themselves
        with pytest.raises(type(e)):
            run_cli("tool", _raise(e))


def test_staged_files_are_renamed_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "r.json", tmp_path / "r.png"
    a.write_text("old")
    with Staged() as st:
        st.path(a).write_text("new")
        with pytest.raises(OSError):
            with open(st.path(b), "w"):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert a.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["r.json"]  # no temporary file left
    with Staged() as st:
        p = st.path(b)
        assert p.parent == tmp_path and p.suffix == ".png"  # beside it (same filesystem), the suffix kept
        p.write_text("png")
        st.path(a).write_text("new")
        st.commit()
    assert a.read_text() == "new" and b.read_text() == "png" and sorted(os.listdir(tmp_path)) == ["r.json", "r.png"]


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_is_whole_finds_segments_cut_short(tmp_path):
    fmp4 = _box(b"styp", b"msdh") + _box(b"moof", b"\0" * 40) + _box(b"mdat", b"\1" * 5000)
    ts = b"".join(b"\x47" + bytes([i]) * 187 for i in range(30))
    for name, data in (("a.m4s", fmp4), ("a_init.mp4", _box(b"ftyp", b"isom") + _box(b"moov", b"\0" * 99)),
                       ("a.ts", ts)):
        p = tmp_path / name
        p.write_bytes(data)
        assert is_whole(p)
        for cut in (len(data) - 1, len(data) // 2 + 3, 0):
            p.write_bytes(data[:cut])
            assert not is_whole(p), (name, cut)
    p.write_bytes(ts[:188 * 10])  # a TS cut at a packet boundary looks whole: the playlist check catches that
    assert is_whole(p)
