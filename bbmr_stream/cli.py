"""What every command-line tool of the project shares: the error contract and the options declared by several
tools (``--device``, ``--backend``, ``WxH`` sizes, ``HOST:PORT``), each defined here once.

Bad input raises :class:`~bbmr_stream.errors.InputError`; :func:`run_cli` turns it into one line on stderr
and exit code 2, never a traceback. An output that does not fit (ENOSPC, EDQUOT, EFBIG:
:class:`~bbmr_stream.errors.DiskFullError` or a bare ``OSError`` with that errno) is one line and exit code 4
(:data:`DISK_FULL_EXIT`); the writers have removed their partial output by then. SIGINT and SIGTERM unwind the
stack like Ctrl-C (every ``finally`` and ``except BaseException`` cleanup runs: temporary directories and
half-written outputs are removed) and exit 130 / 143. Any other exception (a bug, out of memory) surfaces as
itself.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from bbmr_stream.device import DEVICES
from bbmr_stream.errors import InputError, disk_full_line, is_disk_full

DISK_FULL_EXIT = 4  # an output did not fit (2: bad input; bbmr-play --strict: 3; signals: 130 / 143)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def run_cli(prog: str, fn: Callable[[], int]) -> int:
    """``fn()``'s exit code, under the error contract: InputError -> exit 2, disk full -> exit 4, each one line
    ``PROG: error: ...`` on stderr; SIGINT / SIGTERM -> 130 / 143 after cleanup."""
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn()
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not is_disk_full(e):
            raise
        print(f"{prog}: error: {disk_full_line(e)}", file=sys.stderr)
        return DISK_FULL_EXIT
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); partial output removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; partial output removed", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def add_device(ap, default: str = "auto") -> None:
    """``--device auto|cpu|cuda`` (bbmr_stream.device.pick_device)."""
    ap.add_argument("--device", default=default, help=f"{' | '.join(DEVICES)}: auto takes cuda when available "
                    "(default %(default)s)")


def add_backend(ap) -> None:
    """``--backend``: the SR inference runtime on a CPU (models/backend.py)."""
    ap.add_argument("--backend", default=None,
                    help="SR inference on a CPU: auto (OpenVINO if installed, else ONNX Runtime, else torch) | torch | "
                         "openvino | onnxruntime; every exported graph is checked against eager fp32 before use "
                         "(models/backend.py; default $BBMR_BACKEND or auto)")


def parse_size(text: str, option: str = "--size", minimum: int = 1, even: bool = False) -> tuple[int, int]:
    """``WxH`` -> (width, height), each at least ``minimum`` (and even with ``even``); else InputError."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{option} must be WxH, got {text!r}") from None
    if w < minimum or h < minimum or (even and (w % 2 or h % 2)):
        raise InputError(f"{option} {text}: {'even and ' if even else ''}at least {minimum}x{minimum}")
    return w, h


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``) -> (host, port); else InputError."""
    host, _, port = text.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise InputError(f"expected HOST:PORT, got {text!r}") from None
