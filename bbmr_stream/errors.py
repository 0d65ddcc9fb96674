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

Anything else is a bug or a resource failure (out of memory) and surfaces as itself.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (missing/unreadable/empty file ...): CLIs print the message and exit 2."""


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
