"""The ``statestore`` console script on a pseudo-terminal of a given size, and the screen it leaves.

rich and click decide from the stream whether they write to a terminal and how wide it is, so the
command runs as a user's shell runs it: stdout and stderr on a pty (or stdout on a pipe, ``| cat``).
``Screen`` replays what was written the way a terminal shows it, so a test can say what the user
sees at the end (a progress bar erased, lines not broken) rather than which bytes were sent.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from test_cli import EXE

# What changes how rich and click see a terminal: removed, so the size set on the pty is the one used.
_TERMINAL_VARIABLES = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
_CONTROL = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|([\r\n\b])")


@dataclass
class TerminalRun:
    """One run: exit code, what the terminal received (``raw``, ``\\r\\n`` line ends), the stdout pipe if asked."""

    code: int
    raw: str
    columns: int
    piped_stdout: str | None = None

    @property
    def screen(self) -> list[str]:
        """The terminal's lines once the command ended, trailing spaces and empty last lines dropped."""
        return Screen(self.columns).feed(self.raw).lines()

    @property
    def raw_lines(self) -> list[str]:
        """What was written, split where a line was ended (not where the terminal wrapped a long one), plain text."""
        plain = _CONTROL.sub(lambda m: m.group(3) or "", self.raw)
        return plain.replace("\r\n", "\n").split("\n")


@dataclass
class Screen:
    """A terminal's text: printable characters, ``\\r``, ``\\n``, cursor up/down/column, erase line; wraps at the width.

    Styles, cursor visibility and titles are ignored. One cell per character (the tests print ASCII).
    """

    columns: int
    rows: list[list[str]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0
    wrap_pending: bool = False

    def feed(self, text: str) -> Screen:
        position = 0
        for match in _CONTROL.finditer(text):
            self._write(text[position : match.start()])
            position = match.end()
            if match.group(3):
                self._control(match.group(3))
            elif match.group(2):
                self._csi(match.group(1), match.group(2))
        self._write(text[position:])
        return self

    def lines(self) -> list[str]:
        shown = ["".join(row).rstrip() for row in self.rows]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        line = self.rows[self.row]
        if len(line) < self.col:
            line.extend(" " * (self.col - len(line)))
        return line

    def _write(self, text: str) -> None:
        for char in text:
            if self.wrap_pending:  # the last column was written: the next character starts the next row
                self.row, self.col, self.wrap_pending = self.row + 1, 0, False
            line = self._line()
            if self.col < len(line):
                line[self.col] = char
            else:
                line.append(char)
            if self.col == self.columns - 1:
                self.wrap_pending = True
            else:
                self.col += 1

    def _control(self, char: str) -> None:
        self.wrap_pending = False
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self.row += 1
        elif char == "\b":
            self.col = max(self.col - 1, 0)

    def _csi(self, params: str, final: str) -> None:
        self.wrap_pending = False
        count = int(params) if params.isdigit() else 1
        if final == "A":
            self.row = max(self.row - count, 0)
        elif final == "B":
            self.row += count
        elif final == "G":
            self.col = count - 1
        elif final == "K":
            line = self._line()
            if params == "2":
                line.clear()
            elif params in ("", "0"):
                del line[self.col :]


def run_on_terminal(
    *args: str, cwd: Path, env: dict[str, str], columns: int = 80, pipe_stdout: bool = False, timeout: float = 60
) -> TerminalRun:
    """Run ``statestore ARGS`` with stdin, stderr (and stdout unless ``pipe_stdout``) on a pty ``columns`` wide."""
    assert EXE is not None
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in _TERMINAL_VARIABLES} | {"TERM": "xterm-256color"}
    try:
        process = subprocess.Popen(
            [EXE, *args],
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE if pipe_stdout else slave,
            stderr=slave,
        )
    finally:
        os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the pty closed it
                    break
                if not chunk:
                    break
                received += chunk
        piped = process.stdout.read().decode() if process.stdout is not None else None
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    return TerminalRun(code, received.decode(), columns, piped)
