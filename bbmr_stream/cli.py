"""What every command-line tool of the project shares: the error contract and the device choice.

Bad input raises :class:`~bbmr_stream.imageio.InputError`; :func:`run_cli` turns it into one line on stderr
and exit code 2 (130 on Ctrl-C), never a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from bbmr_stream.imageio import InputError


def run_cli(prog: str, fn: Callable[[], int]) -> int:
    try:
        return fn()
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device(name)
