"""Every error class of the project, in one place.

- :class:`InputError`: bad user input (a missing or unreadable file, an option out of range, a stream that is
  not ours). The command-line tools print its message on one line and exit 2 (``bbmr_stream.cli.run_cli``);
  library callers catch it the same way.
- Format errors (:class:`ManifestError`, :class:`ScaleMapError`, :class:`SEIError`) are ``ValueError``\\ s
  raised by the parsers of our formats; the player conceals what they cover and counts it.
- :class:`WeightsError` (missing, corrupt or mismatching weights) and :class:`BackendError` (an inference
  runtime that is unknown or not installed): the factories turn them into InputError for the CLIs.
- :class:`SegmentError`: a segment that cannot be played as declared; the player conceals it and counts it by
  cause.
- :class:`DiskFullError`: an output did not fit (:data:`DISK_FULL`: the filesystem, the user's quota, the file
  size limit). Writers remove what they had written and raise it through :func:`disk_full`, naming the output
  and what was kept; the CLIs print it on one line and exit 4. A bare disk-full ``OSError`` (PyAV's
  ``av.error.OSError`` included, :func:`is_disk_full`) gets the same exit code.

Anything else is a bug or a resource failure (out of memory) and surfaces as itself.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, quota exceeded, file size limit


class InputError(Exception):
    """Bad user input (missing/unreadable/empty file ...): CLIs print the message and exit 2."""


class ClusterError(InputError):
    """The packager's Ray cluster cannot be reached, went away or keeps losing workers (``--cluster``,
    ``--workers``): one line, exit code 2, the run's partial output removed."""


class ManifestError(ValueError):
    """A manifest.json that cannot be parsed or is inconsistent."""


class ScaleMapError(ValueError):
    """A scale map that cannot be parsed or is inconsistent."""


class SEIError(ValueError):
    """An SEI NAL unit that cannot be parsed."""


class WeightsError(Exception):
    """Missing, corrupt or mismatching weights."""


class BackendError(Exception):
    """An unknown or unavailable inference backend was asked for."""


class SegmentError(Exception):
    """A segment that cannot be played as declared (cause in :data:`player.playback.CAUSES`)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


class DiskFullError(OSError):
    """An output did not fit (``errno`` in :data:`DISK_FULL`); ``str()`` is the whole one-line message: what was
    being written and what is left (``no space left on device writing stream/ (ENOSPC); nothing was written,
    the previous stream is unchanged``)."""

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(e: BaseException) -> bool:
    """An ``OSError`` (``av.error.OSError`` is one) whose errno is in :data:`DISK_FULL`."""
    return isinstance(e, OSError) and e.errno in DISK_FULL


def disk_full_line(e: OSError) -> str:
    """The one-line message of a disk-full error: a :class:`DiskFullError`'s own, else the error and the file."""
    if isinstance(e, DiskFullError):
        return str(e)
    where = f" writing {e.filename}" if e.filename else ""
    return f"{os.strerror(e.errno).lower()}{where} ({errno.errorcode[e.errno]}); partial output removed"


@contextmanager
def disk_full(target: str, outcome: str) -> Iterator[None]:
    """Inside: a disk-full ``OSError`` becomes :class:`DiskFullError` ``"<strerror> writing <target> (<ENAME>);
    <outcome>"``. An inner DiskFullError is renamed too: the outermost writer knows the output the user named.
    The writer's own cleanup (``finally`` / ``except BaseException``) runs before the error gets here."""
    try:
        yield
    except OSError as e:
        if not is_disk_full(e):
            raise
        code = e.errno
        raise DiskFullError(code, f"{os.strerror(code).lower()} writing {target} ({errno.errorcode[code]}); "
                                  f"{outcome}") from e
