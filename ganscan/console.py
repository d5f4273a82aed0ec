"""Progress and messages, all on stderr. Data goes to stdout only, through the report writers.

The library reports progress through :class:`Progress` objects created here, so that commands decide
once (``--quiet``, not a terminal, ``NO_COLOR``) how chatty a run is.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from rich.console import Console

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def stderr_console() -> Console:
    return Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    no_color = "NO_COLOR" in os.environ
    console = Console(file=sys.stdout, no_color=no_color, highlight=False)
    if not console.is_terminal:  # a table redirected to a file: do not fold at 80 columns
        console = Console(file=sys.stdout, no_color=no_color, highlight=False, width=240)
    return console


def info(message: str) -> None:
    if not is_quiet():
        stderr_console().print(message, markup=False)


def warn(message: str) -> None:
    """Warnings are shown even with --quiet: they change how results must be read."""
    stderr_console().print(f"warning: {message}", style="yellow", markup=False)


class Progress:
    """A rich progress bar on stderr, silent when quiet or when stderr is not a terminal.

    ``update(advance=n, **fields)`` adds to the count and sets live fields (shown after the bar).
    """

    def __init__(self, description: str, total: int | None = None, fields: tuple[str, ...] = ()):
        self.description = description
        self.total = total
        self.fields = fields
        self._progress = None
        self._task = None

    def __enter__(self) -> "Progress":
        console = stderr_console()
        if is_quiet() or not console.is_terminal:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress as RichProgress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        if self.fields:
            columns.append(TextColumn("{task.fields[live]}"))
        self._progress = RichProgress(*columns, console=console, transient=False)
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=self.total, live="")
        return self

    def update(self, advance: int = 0, total: int | None = None, **fields) -> None:
        if self._progress is None:
            return
        kwargs = {"advance": advance}
        if total is not None:
            kwargs["total"] = total
        if fields:
            kwargs["live"] = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in fields.items())
        self._progress.update(self._task, **kwargs)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@contextmanager
def status(message: str):
    """A spinner for work of unknown length (loading a model, listing files)."""
    console = stderr_console()
    if is_quiet() or not console.is_terminal:
        yield
        return
    with console.status(message):
        yield
