"""The run log: a side channel in which every process of a scenario run appends one JSON line per event.

Activities write what they did (each item processed, each save and whether it
was refused, each cancellation), the test writes its markers (``stopped``,
``resumed``); each line names the process and the attempt. A line is one
``O_APPEND`` write, so lines from several processes never interleave inside a
line, and a process killed with SIGKILL loses nothing it wrote.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class RunLog:
    """Appends events to ``path``; ``attempt`` tags the lines of one activity attempt (0: the test itself)."""

    def __init__(self, path: str | os.PathLike[str], attempt: int = 0) -> None:
        self.path = Path(path)
        self.attempt = attempt
        self.pid = os.getpid()

    def write(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"ev": ev, "attempt": self.attempt, "pid": self.pid, "t": time.time(), **fields}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class LogReader:
    """Reads a run log as it grows: ``events`` holds every complete line read so far, in file order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.events: list[dict[str, Any]] = []
        self._offset = 0

    def refresh(self) -> list[dict[str, Any]]:
        """Read the lines appended since the last call; returns all events."""
        if not self.path.exists():
            return self.events
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            self.events.append(json.loads(line))
        self._offset += end
        return self.events
