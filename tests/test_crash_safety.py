"""Crash safety of the local backend: writers killed with SIGKILL never leave a torn or foreign state.

Each writer logs ``S <seq>`` before and ``C <seq>`` after each save (``os.write`` survives SIGKILL); a state's
content is a function of (writer, seq). After the kill a state is exactly one seq its writer started, no older than
the last committed; temp files never show, the next write cleans them, and the lock is free.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from statestore import LocalBackend, StateType, Store

ROUNDS, WRITERS = 12, 5  # 60 kills
pytestmark = pytest.mark.slow  # a crash loop: about 10 s

MAX_BYTES = 1 << 20
WF = StateType.WORKFLOWS

WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from statestore import LocalBackend, StateType, Store
    from test_crash_safety import content

    async def main(root, state_id, writer, log):
        store = Store(LocalBackend(root), app_name="crash")
        os.write(log, b"R\\n")
        seq = 0
        while True:
            seq += 1
            os.write(log, f"S {seq}\\n".encode())
            await store.save_state_object(state_id, content(writer, seq), StateType.WORKFLOWS)
            os.write(log, f"C {seq}\\n".encode())

    log = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], log))
    """
)


def content(writer: str, seq: int) -> dict[str, Any]:
    """What writer ``writer`` saves as ``seq`` (``WRITER`` imports it)."""
    size = random.Random(f"{writer}-{seq}").randint(0, MAX_BYTES)
    unit = hashlib.sha256(f"{writer}-{seq}".encode()).hexdigest()
    return {"writer": writer, "seq": seq, "blob": (unit * (size // 64 + 1))[:size]}


def read_log(path: Path) -> tuple[int, int]:
    """(last seq started, last seq committed) from a writer's log."""
    started = committed = 0
    for line in path.read_text().splitlines():
        kind, _, seq = line.partition(" ")
        if kind == "S":
            started = int(seq)
        elif kind == "C":
            committed = int(seq)
    return started, committed


def wait_ready(logs: list[Path], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text().startswith("R") for p in logs):
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.01)


def lock_is_free(slot: Path) -> bool:
    """Whether nobody holds the slot's lock (a writer killed before making the lock file left none)."""
    try:
        fd = os.open(slot / ".config.json.lock", os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_sigkilled_writers_leave_a_committed_state(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rng = random.Random(20261128)
    outcomes: Counter[str] = Counter()
    kills = 0
    writes_seen = 0
    store = Store(LocalBackend(root), app_name="crash")
    for rnd in range(ROUNDS):
        shared = rnd % 3 == 2  # every third round all writers of the round write one id
        ids = [f"r{rnd}" if shared else f"r{rnd}w{w}" for w in range(WRITERS)]
        names = [f"r{rnd}w{w}" for w in range(WRITERS)]
        logs = [tmp_path / f"{name}.log" for name in names]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(root), state_id, name, str(log)],
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
            )
            for state_id, name, log in zip(ids, names, logs, strict=True)
        ]
        try:
            wait_ready(logs)
            # kill each writer at its own random moment, 0-400 ms into its writing
            started = time.monotonic()
            for at, proc in sorted(((rng.uniform(0.0, 0.4), p) for p in procs), key=lambda x: x[0]):
                time.sleep(max(0.0, started + at - time.monotonic()))
                proc.send_signal(signal.SIGKILL)
        finally:
            for proc in procs:
                proc.kill()
                _, err = proc.communicate(timeout=30)
                assert proc.returncode == -signal.SIGKILL, err.decode()
        kills += len(procs)

        logs_by_name = {name: read_log(log) for name, log in zip(names, logs, strict=True)}
        writes_seen += sum(committed for _, committed in logs_by_name.values())
        for state_id in sorted(set(ids)):
            slot = root / "persistent-artifacts/apps/crash/workflows" / state_id
            path = slot / "config.json"
            writers = [n for n, i in zip(names, ids, strict=True) if i == state_id]
            if not path.exists():
                assert all(logs_by_name[n][1] == 0 for n in writers), f"{state_id}: committed state lost"
                outcomes["no state yet"] += 1
            else:
                state = asyncio.run(store.get_state(state_id, WF))  # raises if torn
                name, seq = state["writer"], state["seq"]
                assert name in writers
                started_seq, committed_seq = logs_by_name[name]
                assert committed_seq <= seq <= started_seq, (state_id, name, seq, started_seq, committed_seq)
                assert state == content(name, seq), f"{state_id}: content of seq {seq} differs"
                outcomes["last committed" if seq == committed_seq else "in-flight write landed"] += 1
            temps = [p.name for p in slot.glob(".config.json.*.tmp")] if slot.exists() else []
            if temps:
                outcomes["temp file left"] += 1
            if slot.exists():
                assert lock_is_free(slot), f"{state_id}: lock still held after its writers died"

            async def next_write(state_id: str = state_id) -> list[str]:
                await asyncio.wait_for(store.save_state("after", True, state_id, WF), timeout=10)
                assert (await store.get_state(state_id, WF))["after"] is True
                return await store.list_states(WF)

            listed = asyncio.run(next_write())
            assert all(not i.startswith(".") and not i.endswith(".tmp") for i in listed)
            assert state_id in listed
            assert not list(slot.glob(".config.json.*.tmp")), "the next write left the dead writer's temp file"
    print(
        f"\n[reliability] crash: {kills} SIGKILLs, {writes_seen} writes committed before the kills, "
        f"outcomes {dict(outcomes)}"
    )
    assert kills >= 50
    assert writes_seen > kills, "writers were killed before they wrote anything: the test proved little"
