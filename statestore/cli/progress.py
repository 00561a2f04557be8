"""Progress of the commands that walk many states: a bar on stderr, erased before the command prints its result."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from .options import Options
from .render import echo


@contextlib.contextmanager
def progress_reporter(
    opts: Options, label: str, force: bool, *, prints_meanwhile: bool = False
) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback reporting on stderr, or None for no progress.

    On a terminal a bar, erased when the block ends (so before anything printed after it); elsewhere
    nothing, or lines with ``force``. Nothing with --json unless ``force``. ``prints_meanwhile``: the
    command writes to stdout during the block (``list`` streams), so no bar is drawn while stdout is a
    terminal too: the bar would share its lines. A total of 0 is unknown (a listing's, until its last
    call, ``done == total``).
    """
    tty = sys.stderr.isatty()
    if (not force and (opts.json or not tty)) or (prints_meanwhile and tty and sys.stdout.isatty()):
        yield None
        return
    if not tty:
        step = [0]

        def lines(done: int, total: int) -> None:
            if done == total:
                echo(f"{label}: {done}/{total} done", err=True)
                return
            mark = done * 100 // total if total else done // 1000
            if mark >= step[0]:
                step[0] = mark + (10 if total else 1)
                echo(f"{label}: {done}/{total or '?'}", err=True)

        yield lines
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield advance
