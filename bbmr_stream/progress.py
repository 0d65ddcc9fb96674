"""How library functions report progress without printing: a :class:`Progress` object passed in.

A library function (``packager.package``, ``player.play``, the study) calls ``progress.note(text)`` for a
one-line remark (a conversion the source needed, a ladder choice) and opens counted tasks with
``with progress.task("encoding", total=n, rate=True) as t: ... t.advance()``. The base class reports nothing
(library use, tests); :class:`RichProgress` draws the project's one progress bar on a console (the CLIs pass
one writing to stderr, so results on stdout stay clean).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Task:
    """One counted piece of work; ``advance`` after each unit, ``describe`` to change its label."""

    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class Progress:
    """Reports nothing: the default of every library function."""

    def note(self, text: str) -> None:
        """A one-line remark for the user (``note:`` lines of the CLIs)."""

    def table(self, table) -> None:
        """A rich Table for the user (the auto ladder's choice); ignored here."""

    @contextmanager
    def task(self, description: str, total: int | None, rate: bool = False) -> Iterator[Task]:
        """A counted task of ``total`` units (None: unknown); ``rate`` shows units per second (fps)."""
        yield Task()


class _RichTask(Task):
    def __init__(self, prog, task_id, rate: bool) -> None:
        self.prog, self.id, self.rate, self.done, self.t0 = prog, task_id, rate, 0, time.time()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.prog.update(self.id, advance=n, fps=self.done / max(time.time() - self.t0, 1e-9))

    def describe(self, text: str) -> None:
        self.prog.update(self.id, description=text)


class RichProgress(Progress):
    """Progress bars (label, bar, done/total, fps when ``rate``, time remaining) and notes on a rich Console."""

    def __init__(self, console) -> None:
        self.console = console

    def note(self, text: str) -> None:
        """The line as given; a leading ``note:`` / ``warning:`` in yellow."""
        from rich.text import Text

        head, sep, rest = text.partition(": ")
        line = Text(head + sep, style="yellow") + rest if sep and head in ("note", "warning") else Text(text)
        self.console.print(line, highlight=False)

    def table(self, table) -> None:
        self.console.print(table)

    @contextmanager
    def task(self, description: str, total: int | None, rate: bool = False) -> Iterator[Task]:
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}")]
        if rate:
            cols.append(TextColumn("{task.fields[fps]:.2f} fps"))
        with Bar(*cols, TimeRemainingColumn(), console=self.console) as prog:
            yield _RichTask(prog, prog.add_task(description, total=total, fps=0.0), rate)


def console_progress(quiet: bool = False) -> Progress:
    """What the CLIs pass: bars and notes on stderr (nothing when ``quiet``)."""
    if quiet:
        return Progress()
    from rich.console import Console

    return RichProgress(Console(stderr=True, emoji=False))
