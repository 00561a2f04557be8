"""docs/temporal.md's files on a real Temporal server, on the local backend and on moto.

- ``checkpoint_activities.py`` and ``checkpoint_workflow.py`` on a worker in this process (default sandbox): an
  attempt resumes after the stored checkpoint; an attempt whose state a newer fence took over stops with a
  non-retryable ``ApplicationError`` and writes nothing more.
- ``checkpoint_worker.py`` and ``sync_worker.py`` run as the doc says (``python FILE``): they serve the workflow,
  and on SIGTERM they stop, close their store and exit 0 with nothing on stderr.

The files are taken from the doc as they are (``test_temporal_docs.doc_files``); only ``process_item`` is
replaced in-process, to watch the items or to let a newer attempt take the state over mid-run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

pytest.importorskip("temporalio", reason="the Temporal tier needs temporalio: pip install -e '.[dev]'")

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.worker import Worker
from test_temporal_docs import doc_files

from statestore import StateType, Store

from .call_activity_workflow import CallActivity
from .temporal_server import TemporalServer

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(180)]

W = StateType.WORKFLOWS
WAIT = 60.0
T = TypeVar("T")


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    """A folder holding the doc's files."""
    folder = tmp_path / "recipe"
    folder.mkdir()
    for name, source in doc_files().items():
        (folder / name).write_text(source, encoding="utf-8")
    return folder


@pytest.fixture
def recipe(recipe_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The doc's ``checkpoint_activities`` and ``checkpoint_workflow``, imported in this process."""
    monkeypatch.syspath_prepend(str(recipe_dir))
    names = ("checkpoint_activities", "checkpoint_workflow")
    try:
        yield importlib.import_module(names[0]), importlib.import_module(names[1])
    finally:
        for name in names:
            sys.modules.pop(name, None)


def new_id() -> str:
    return f"wf-{uuid.uuid4().hex[:12]}"


async def run_recipe(address: str, recipe: tuple[ModuleType, ModuleType], workflow_id: str, items: int) -> Any:
    """Run the doc's workflow on a worker of this process (default sandbox) until its result."""
    activities, workflows = recipe
    client = await Client.connect(address)
    queue = f"recipe-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[workflows.CheckpointWorkflow],
        activities=[activities.process_with_checkpoint],
    )
    async with worker:
        return await client.execute_workflow(
            workflows.CheckpointWorkflow.run,
            {"workflow_id": workflow_id, "items": list(range(items))},
            id=workflow_id,
            task_queue=queue,
            execution_timeout=timedelta(seconds=WAIT),
        )


async def test_the_recipe_resumes_after_the_stored_checkpoint(
    temporal_server: TemporalServer,
    checkpoint_store: Store,
    recipe: tuple[ModuleType, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    activities, _ = recipe
    processed: list[int] = []

    async def record(item: int) -> None:
        processed.append(item)

    monkeypatch.setattr(activities, "process_item", record)
    workflow_id = new_id()
    await checkpoint_store.save_state("last_processed_index", 199, workflow_id, W)  # an earlier attempt's checkpoint

    result = await run_recipe(temporal_server.address, recipe, workflow_id, items=350)

    assert processed == list(range(200, 350))
    assert await checkpoint_store.get_state(workflow_id, W) == {"last_processed_index": 299, "status": "completed"}
    assert result["resumed_after"] == 199
    assert result["fence_epoch"] == await checkpoint_store.get_fence_epoch(workflow_id, W) > 0


async def test_the_recipe_stops_when_a_newer_attempt_takes_the_state_over(
    temporal_server: TemporalServer,
    checkpoint_store: Store,
    recipe: tuple[ModuleType, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    activities, _ = recipe
    workflow_id = new_id()
    newer = Store(checkpoint_store.backend, app_name=checkpoint_store.app_name)  # another attempt's store
    epochs: list[int] = []

    async def taken_over_at_250(item: int) -> None:
        if item == 250:
            epochs.append((await newer.acquire_fence(workflow_id, W)).epoch)

    monkeypatch.setattr(activities, "process_item", taken_over_at_250)

    with pytest.raises(WorkflowFailureError) as info:
        await run_recipe(temporal_server.address, recipe, workflow_id, items=350)

    failure = info.value.cause
    assert isinstance(failure, ActivityError)
    assert failure.retry_state == RetryState.NON_RETRYABLE_FAILURE  # one attempt: not retried
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.type == "FencedError" and failure.cause.non_retryable
    # The checkpoint of 199 landed before the takeover; the save of 299 and the status were refused.
    assert await checkpoint_store.get_state(workflow_id, W) == {"last_processed_index": 199}
    assert await checkpoint_store.get_fence_epoch(workflow_id, W) == epochs[0]


# -- the worker scripts, as processes ----------------------------------------------------------------


def start_script(recipe_dir: Path, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python script`` in the doc's folder, with this environment (the store's ``STATESTORE_*``) and ``env``."""
    with (recipe_dir / f"{script}.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, script],
            cwd=recipe_dir,
            env=os.environ | env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stderr_of(recipe_dir: Path, script: str) -> str:
    return (recipe_dir / f"{script}.err").read_text(errors="replace")


async def served(process: subprocess.Popen[bytes], recipe_dir: Path, script: str, call: Coroutine[Any, Any, T]) -> T:
    """Await ``call`` (a workflow the script's worker serves); fail at once, with its stderr, if the script exits."""
    task = asyncio.ensure_future(asyncio.wait_for(call, WAIT))
    while not task.done():
        if process.poll() is not None:
            task.cancel()
            pytest.fail(f"{script} exited with {process.returncode}:\n{stderr_of(recipe_dir, script)[-3000:]}")
        await asyncio.wait({task}, timeout=0.1)
    return task.result()


def stop_script(process: subprocess.Popen[bytes], recipe_dir: Path, script: str) -> None:
    """SIGTERM, as a process manager stops a worker: it must exit 0, with nothing on stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{script} did not stop within 30 s of SIGTERM:\n{stderr_of(recipe_dir, script)[-3000:]}")
    errors = stderr_of(recipe_dir, script)
    assert returncode == 0, errors
    assert errors == "", errors  # no traceback, no "Unclosed client session"


async def test_the_worker_script_serves_the_workflow_and_stops_cleanly(
    temporal_server: TemporalServer, checkpoint_store: Store, recipe_dir: Path
) -> None:
    script = "checkpoint_worker.py"
    queue = f"checkpoints-{uuid.uuid4().hex[:8]}"
    process = start_script(
        recipe_dir, script, {"TEMPORAL_ADDRESS": temporal_server.address, "CHECKPOINT_TASK_QUEUE": queue}
    )
    try:
        client = await Client.connect(temporal_server.address)
        workflow_id = new_id()
        result = await served(
            process,
            recipe_dir,
            script,
            client.execute_workflow(
                "CheckpointWorkflow",
                {"workflow_id": workflow_id, "items": list(range(250))},
                id=workflow_id,
                task_queue=queue,
                execution_timeout=timedelta(seconds=WAIT),
            ),
        )
        stop_script(process, recipe_dir, script)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert result["resumed_after"] == -1
    assert await checkpoint_store.get_state(workflow_id, W) == {"last_processed_index": 199, "status": "completed"}
    assert result["fence_epoch"] == await checkpoint_store.get_fence_epoch(workflow_id, W)


async def test_the_sync_worker_script_serves_the_activity_and_stops_cleanly(
    temporal_server: TemporalServer, checkpoint_store: Store, recipe_dir: Path
) -> None:
    script = "sync_worker.py"
    activity_queue = f"sync-checkpoints-{uuid.uuid4().hex[:8]}"
    process = start_script(
        recipe_dir, script, {"TEMPORAL_ADDRESS": temporal_server.address, "SYNC_TASK_QUEUE": activity_queue}
    )
    try:
        client = await Client.connect(temporal_server.address)
        workflow_queue = f"call-activity-{uuid.uuid4().hex[:8]}"
        workflow_id = new_id()
        await checkpoint_store.save_state("last_processed_index", 99, workflow_id, W)
        async with Worker(client, task_queue=workflow_queue, workflows=[CallActivity]):
            result = await served(
                process,
                recipe_dir,
                script,
                client.execute_workflow(
                    CallActivity.run,
                    args=[
                        "process_with_checkpoint_sync",
                        activity_queue,
                        {"workflow_id": workflow_id, "items": list(range(250))},
                    ],
                    id=workflow_id,
                    task_queue=workflow_queue,
                    execution_timeout=timedelta(seconds=WAIT),
                ),
            )
        stop_script(process, recipe_dir, script)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert result["resumed_after"] == 99
    assert await checkpoint_store.get_state(workflow_id, W) == {"last_processed_index": 199, "status": "completed"}
    assert result["fence_epoch"] == await checkpoint_store.get_fence_epoch(workflow_id, W)
