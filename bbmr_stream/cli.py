"""What every command-line tool of the project shares: the error contract and the device choice.

Bad input raises :class:`~bbmr_stream.imageio.InputError`; :func:`run_cli` turns it into one line on stderr
and exit code 2, never a traceback. SIGINT and SIGTERM unwind the stack like Ctrl-C (every ``finally`` and
``except BaseException`` cleanup runs: temporary directories and half-written outputs are removed) and exit
130 / 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import torch

from bbmr_stream.imageio import InputError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def run_cli(prog: str, fn: Callable[[], int]) -> int:
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn()
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); partial output removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; partial output removed", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device(name)
