"""The checkpoint scenario on a real Temporal server: a worker killed mid-activity, and a zombie attempt.

A ``Harness`` runs one workflow at a time: the workflow on an in-process
worker of the caller's event loop (it only schedules), the activity
(``checkpoint_activities``) on two worker PROCESSES with one slot each, so the
process busy with attempt 1 never takes the retry. The caller gives the store
as a ``Store`` (to watch the state) and as ``STATESTORE_*`` variables (for the
worker processes). The tests (``test_temporal_checkpoints.py``) and
``scripts/temporal_checkpoints.py`` both run it.

- ``crash_run``: SIGKILL the process running attempt 1 after ``kill_after``
  items; the other process runs the retry from the stored checkpoint.
- ``zombie_run``: SIGSTOP the process running attempt 1 (a GC pause, a blocked
  thread) past its heartbeat timeout; the retry runs on the other process;
  once the retry has saved ``resume_at - 1``, SIGCONT. The stopped attempt is
  a zombie: it ignores the cancellation it is then given, saves its position
  in the cancel handler and carries on. A poller reads the stored
  ``last_processed_index`` every few milliseconds all along.
- ``clean_run``: no fault; for request counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from statestore import StateType, Store

from .checkpoint_log import LogReader, RunLog
from .checkpoint_workflows import CheckpointWorkflow

TESTS_DIR = Path(__file__).resolve().parent.parent  # where the package ``temporal`` (this folder) is importable
WORKER_MODULE = f"{__package__}.checkpoint_worker"
INDEX = "last_processed_index"


@dataclass(frozen=True)
class Timing:
    """Sizes and timeouts of one run: 1000 items of 3 ms (a checkpoint every 0.3 s), a 2 s heartbeat timeout.

    The workers heartbeat every 0.5 s, so a healthy attempt on a loaded machine has 1.5 s to spare.
    """

    items: int = 1000
    item_seconds: float = 0.003
    heartbeat_timeout_seconds: float = 2.0
    start_to_close_seconds: float = 120.0
    max_attempts: int = 5
    wait_seconds: float = 60.0  # for any one thing the scenario waits for (a worker, an item, the result)


def final_state(timing: Timing) -> dict[str, Any]:
    """The exact state every run must end with."""
    return {INDEX: timing.items - 1, "status": "completed"}


class StatePoller:
    """Reads the stored ``last_processed_index`` of one state every ``interval`` seconds while it runs."""

    def __init__(self, store: Store, workflow_id: str, interval: float = 0.01) -> None:
        self.store = store
        self.workflow_id = workflow_id
        self.interval = interval
        self.values: list[int] = []  # -1: not stored yet
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> int:
        state = await self.store.get_state(self.workflow_id, StateType.WORKFLOWS)
        value: int = state.get(INDEX, -1)
        self.values.append(value)
        return value

    async def _loop(self) -> None:
        while True:
            await self.read()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def cancel(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def stop(self) -> None:
        """Stop reading, then read once more."""
        await self.cancel()
        await self.read()

    @property
    def latest(self) -> int:
        return self.values[-1] if self.values else -1

    def regressions(self) -> list[tuple[int, int]]:
        """Each change of the stored index to a smaller value: ``(before, after)``."""
        return [(a, b) for a, b in itertools.pairwise(self.values) if b < a]

    def steps_back(self) -> list[int]:
        """For each read below the highest value read before it: how far below (items)."""
        steps: list[int] = []
        high = -1
        for value in self.values:
            if value < high:
                steps.append(high - value)
            high = max(high, value)
        return steps


@dataclass
class Run:
    """One workflow run: its id, run log, worker processes and what the poller saw."""

    workflow_id: str
    log: LogReader
    marker: RunLog
    poller: StatePoller
    handle: WorkflowHandle[Any, Any]
    workers: dict[int, subprocess.Popen[bytes]]
    result: dict[str, Any] = field(default_factory=dict)
    final_state: dict[str, Any] = field(default_factory=dict)

    def events(self, ev: str | None = None, pid: int | None = None, attempt: int | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.log.refresh()
            if (ev is None or e["ev"] == ev)
            and (pid is None or e["pid"] == pid)
            and (attempt is None or e["attempt"] == attempt)
        ]

    def after(self, marker: str) -> list[dict[str, Any]]:
        """The events logged after the test's ``marker`` line."""
        events = self.log.refresh()
        at = next(i for i, e in enumerate(events) if e["ev"] == marker and e["attempt"] == 0)
        return events[at + 1 :]

    def between(self, first: str, second: str) -> list[dict[str, Any]]:
        """The events logged between the test's ``first`` and ``second`` marker lines."""
        events = self.log.refresh()
        at = [next(i for i, e in enumerate(events) if e["ev"] == m and e["attempt"] == 0) for m in (first, second)]
        return events[at[0] + 1 : at[1]]

    def items(self, pid: int | None = None, attempt: int | None = None) -> list[int]:
        return [e["i"] for e in self.events("item", pid=pid, attempt=attempt)]


@dataclass
class CrashRun:
    run: Run = field(repr=False)
    victim: int
    killed_after: int  # the last item the killed attempt logged
    stored_at_kill: int  # the checkpoint stored when it died
    redone: int  # items processed more than once


@dataclass
class ZombieRun:
    run: Run = field(repr=False)
    victim: int
    steps_back: list[int]  # each read below the highest value read before it: by how much
    regressions: list[tuple[int, int]]  # each change of the stored index to a smaller value
    zombie_saved: int  # saves of the zombie that landed after it resumed
    zombie_refused: int  # saves of the zombie refused (FencedError) after it resumed
    zombie_cancelled: bool  # the SDK told the resumed attempt it was cancelled (it may finish before it hears)
    retry_took_over: bool  # a later attempt started while the zombie was stopped
    zombie_items: int  # items the zombie processed after it resumed
    lowest_after_result: int  # the lowest index read after the workflow had completed (the retry's result)


class Harness:
    """Runs scenario workflows on the server at ``address``, against the store ``store`` / ``env`` describe."""

    def __init__(
        self,
        address: str,
        store: Store,
        env: Mapping[str, str],
        workdir: Path,
        timing: Timing | None = None,
        request_log: Path | None = None,
    ) -> None:
        self.address = address
        self.client: Client | None = None
        self.store = store
        self.env = dict(env)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), self.env.get("PYTHONPATH")]))
        self.workdir = workdir
        self.timing = timing or Timing()
        self.request_log = request_log
        self.workflow_queue = f"checkpoint-workflows-{uuid.uuid4().hex[:8]}"
        self._workflow_worker: Worker | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._pollers: list[StatePoller] = []
        self._serial = itertools.count()

    async def __aenter__(self) -> Harness:
        self.client = await Client.connect(self.address)
        self._workflow_worker = Worker(self.client, task_queue=self.workflow_queue, workflows=[CheckpointWorkflow])
        await self._workflow_worker.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for poller in self._pollers:
            await poller.cancel()
        self.stop_workers()
        if self._workflow_worker is not None:
            await self._workflow_worker.__aexit__(exc_type, exc, tb)

    def stop_workers(self) -> None:
        """Stop every worker process started so far (a stopped one is continued first)."""
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()

    async def _start_workers(self, queue: str, count: int) -> dict[int, subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            n = next(self._serial)
            ready = self.workdir / f"worker-{n}.ready"
            command = [sys.executable, "-m", WORKER_MODULE, "--address", self.address]
            command += ["--task-queue", queue, "--ready-file", str(ready)]
            if self.request_log is not None:
                command += ["--request-log", str(self.request_log)]
            with (self.workdir / f"worker-{n}.log").open("wb") as out:
                process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self._processes.append(process)
            started.append((process, ready, n))
        for process, ready, n in started:
            await until(
                ready.exists,
                self.timing.wait_seconds,
                f"worker {n} ready",
                functools.partial(self._worker_trouble, process, n),
            )
        return {process.pid: process for process, _, _ in started}

    def _worker_trouble(self, process: subprocess.Popen[bytes], n: int) -> str | None:
        if process.poll() is None:
            return None
        tail = (self.workdir / f"worker-{n}.log").read_text(errors="replace")[-3000:]
        return f"worker {n} exited with {process.returncode}:\n{tail}"

    async def start(self, *, fenced: bool, zombie: bool) -> Run:
        """Two fresh worker processes, a poller, and a started workflow."""
        queue = f"checkpoint-activities-{uuid.uuid4().hex[:8]}"
        workers = await self._start_workers(queue, 2)
        workflow_id = f"wf-{uuid.uuid4().hex[:12]}"
        log_path = self.workdir / f"{workflow_id}.jsonl"
        poller = StatePoller(self.store, workflow_id)
        poller.start()
        self._pollers.append(poller)
        t = self.timing
        args = {
            "workflow_id": workflow_id,
            "items": t.items,
            "item_seconds": t.item_seconds,
            "fenced": fenced,
            "zombie": zombie,
            "log": str(log_path),
            "activity_queue": queue,
            "heartbeat_timeout_seconds": t.heartbeat_timeout_seconds,
            "start_to_close_seconds": t.start_to_close_seconds,
            "max_attempts": t.max_attempts,
        }
        assert self.client is not None, "use the harness in 'async with'"
        handle = await self.client.start_workflow(
            CheckpointWorkflow.run,
            args,
            id=workflow_id,
            task_queue=self.workflow_queue,
            execution_timeout=timedelta(seconds=t.start_to_close_seconds + 30),
        )
        return Run(workflow_id, LogReader(log_path), RunLog(log_path), poller, handle, workers)

    async def wait_item(self, run: Run, at_least: int) -> int:
        """Wait until attempt 1 has processed item ``at_least``; the PID of its process."""
        await until(lambda: any(i >= at_least for i in run.items(attempt=1)), self.timing.wait_seconds, "attempt 1")
        return int(run.events("item", attempt=1)[0]["pid"])

    async def finish(self, run: Run, *, stop_poller: bool = True) -> None:
        """Wait for the workflow's result; then (unless told not to) stop the poller; read the final state."""
        try:
            run.result = await asyncio.wait_for(run.handle.result(), self.timing.wait_seconds)
        finally:
            if stop_poller:
                await run.poller.stop()
        run.final_state = await self.store.get_state(run.workflow_id, StateType.WORKFLOWS)


async def until(
    condition: Callable[[], bool], within: float, what: str, trouble: Callable[[], str | None] | None = None
) -> None:
    """Poll ``condition`` every 10 ms; after ``within`` seconds, ``TimeoutError`` naming ``what``.

    ``trouble`` reports a reason to stop waiting early (a worker that exited), raised as ``RuntimeError``.
    """
    deadline = time.monotonic() + within
    while not condition():
        problem = trouble() if trouble is not None else None
        if problem is not None:
            raise RuntimeError(f"waiting for {what}: {problem}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {what}: nothing after {within} s")
        await asyncio.sleep(0.01)


async def clean_run(h: Harness, *, fenced: bool = False) -> Run:
    """A run without faults."""
    run = await h.start(fenced=fenced, zombie=False)
    await h.finish(run)
    return run


async def crash_run(h: Harness, kill_after: int = 350) -> CrashRun:
    """SIGKILL the process of attempt 1 once it has processed item ``kill_after``; the retry finishes."""
    run = await h.start(fenced=False, zombie=False)
    victim = await h.wait_item(run, kill_after)
    run.workers[victim].kill()
    run.workers[victim].wait()
    run.marker.write("killed", victim=victim)
    stored_at_kill = await run.poller.read()
    await h.finish(run)
    items = run.items()
    killed_items = run.items(pid=victim)
    return CrashRun(run, victim, max(killed_items), stored_at_kill, len(items) - len(set(items)))


async def zombie_run(h: Harness, *, fenced: bool, stop_after: int = 250, resume_at: int = 600) -> ZombieRun:
    """SIGSTOP attempt 1's process after item ``stop_after``; SIGCONT once the retry saved ``resume_at - 1``."""
    run = await h.start(fenced=fenced, zombie=True)
    victim = await h.wait_item(run, stop_after)
    os.kill(victim, signal.SIGSTOP)
    run.marker.write("stopped", victim=victim)
    try:
        await until(
            lambda: any(
                e["attempt"] > 1 and e["key"] == INDEX and e["value"] >= resume_at - 1 for e in run.events("saved")
            ),
            h.timing.wait_seconds,
            f"the retry to save {resume_at - 1}",
        )
    finally:
        os.kill(victim, signal.SIGCONT)
        run.marker.write("resumed", victim=victim)
    zombie = run.workers[victim]
    try:
        await h.finish(run, stop_poller=False)
        at_result = len(run.poller.values)
        await until(  # the zombie may still be writing: keep watching until it is done
            lambda: bool(run.events("done", pid=victim)) or zombie.poll() is not None,
            h.timing.wait_seconds,
            "the zombie attempt to finish",
        )
    finally:
        await run.poller.stop()
    run.final_state = await h.store.get_state(run.workflow_id, StateType.WORKFLOWS)
    late = [e for e in run.after("resumed") if e["pid"] == victim]
    while_stopped = run.between("stopped", "resumed")
    return ZombieRun(
        run,
        victim,
        run.poller.steps_back(),
        run.poller.regressions(),
        zombie_saved=sum(e["ev"] == "saved" for e in late),
        zombie_refused=sum(e["ev"] == "refused" for e in late),
        zombie_cancelled=any(e["ev"] == "cancelled" for e in late),
        retry_took_over=any(e["ev"] == "start" and e["attempt"] > 1 for e in while_stopped),
        zombie_items=sum(e["ev"] == "item" for e in late),
        lowest_after_result=min(run.poller.values[at_result:]),
    )
