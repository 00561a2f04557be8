"""The spec's checkpoint activity on a real Temporal server, on worker processes, on the local backend and moto.

- A worker SIGKILLed mid-activity: the retry, on another process, resumes
  from the stored checkpoint; at most one interval (100 items) is redone and
  the final state is exact.
- A zombie attempt (stopped past its heartbeat timeout, then resumed; it
  ignores the cancellation and saves its position in the cancel handler):
  unfenced, the stored index goes backwards (the hazard is real and this test
  sees it); fenced, it never does, the final state is exact and every write of
  the zombie is refused with ``FencedError``.

See ``checkpoint_scenario.py`` for how each run is driven.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("temporalio", reason="the Temporal tier needs temporalio: pip install -e '.[dev]'")

from statestore import StateType, Store

from .checkpoint_activities import CHECKPOINT_EVERY
from .checkpoint_scenario import Harness, Timing, crash_run, final_state, zombie_run
from .temporal_server import TemporalServer

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(180)]

TIMING = Timing()


@pytest.fixture
async def harness(temporal_server: TemporalServer, checkpoint_store: Store, tmp_path: Path) -> AsyncIterator[Harness]:
    """Scenario runs against ``checkpoint_store``; the worker processes get it through this environment."""
    async with Harness(temporal_server.address, checkpoint_store, os.environ, tmp_path, TIMING) as h:
        yield h


async def test_worker_killed_mid_activity_resumes_from_checkpoint(harness: Harness) -> None:
    crash = await crash_run(harness, kill_after=350)
    run = crash.run

    assert run.final_state == final_state(TIMING)
    # The killed attempt processed 0..k in order and stored the checkpoints up to its last multiple of 100.
    assert run.items(pid=crash.victim) == list(range(crash.killed_after + 1))
    assert (crash.stored_at_kill + 1) % CHECKPOINT_EVERY == 0
    assert 0 <= crash.killed_after - crash.stored_at_kill <= CHECKPOINT_EVERY
    # The retry ran on the other process and started right after the stored checkpoint.
    retry = [e for e in run.events("start") if e["attempt"] > 1]
    assert [e["pid"] for e in retry] == [pid for pid in run.workers if pid != crash.victim]
    assert retry[0]["last"] == crash.stored_at_kill
    assert run.items(attempt=retry[0]["attempt"]) == list(range(crash.stored_at_kill + 1, TIMING.items))
    # Every item was processed; the ones processed twice are those after the last checkpoint: at most 100.
    assert set(run.items()) == set(range(TIMING.items))
    assert crash.redone == crash.killed_after - crash.stored_at_kill
    assert 0 <= crash.redone <= CHECKPOINT_EVERY


async def test_unfenced_zombie_attempt_rolls_checkpoint_back(harness: Harness) -> None:
    zombie = await zombie_run(harness, fenced=False)

    # The retry took over while the zombie was stopped, and the zombie wrote again after it resumed (whether or
    # not its cancellation reached it before it finished: its heartbeat may go unanswered for a while) ...
    assert zombie.retry_took_over, f"no later attempt started while attempt 1 was stopped: no zombie: {zombie}"
    assert zombie.zombie_saved >= 1, f"the zombie wrote nothing after it resumed: {zombie}"
    # ... so the stored index went backwards: compare-and-swap loses no update, but it does not stop a stale writer.
    assert zombie.steps_back, f"the stored index never went backwards: {zombie.run.poller.values}"
    assert max(zombie.steps_back) >= CHECKPOINT_EVERY


async def test_fenced_zombie_attempt_cannot_roll_checkpoint_back(harness: Harness) -> None:
    from statestore import Fence, FencedError, StateStoreError  # the fenced API of issue 25

    assert issubclass(FencedError, StateStoreError)
    probe = await harness.store.acquire_fence("fence-probe", StateType.WORKFLOWS)
    assert isinstance(probe, Fence) and type(probe.epoch) is int

    zombie = await zombie_run(harness, fenced=True)
    run = zombie.run

    # The zombie was resumed (and cancelled, if the SDK got to tell it), carried on and tried to write: every write
    # was refused.
    assert zombie.retry_took_over, f"no later attempt started while attempt 1 was stopped: no zombie: {zombie}"
    assert zombie.zombie_items > 0
    assert zombie.zombie_saved == 0, f"writes of the zombie landed: {zombie}"
    assert zombie.zombie_refused >= 2, zombie  # a checkpoint (or the cancel handler's save) and the final status
    assert {e["pid"] for e in run.events("refused")} == {zombie.victim}  # the retry's own writes all landed
    # Each attempt acquired a newer fence than the one before it.
    epochs = [e["epoch"] for e in run.events("fence")]
    assert all(type(epoch) is int for epoch in epochs)
    assert epochs == sorted(set(epochs)) and len(epochs) >= 2
    # The stored index never went backwards, and the final state is exact.
    assert zombie.steps_back == [], f"the stored index went backwards: {run.poller.values}"
    assert run.final_state == final_state(TIMING)
