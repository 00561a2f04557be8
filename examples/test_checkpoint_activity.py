"""Resume after a crash, on each of statestore's test stores."""

from __future__ import annotations

from typing import Any

import pytest
from checkpoint_activity import CheckpointingActivity

from statestore import StateStore, StateType, Store


class Crash(Exception):
    pass


class CrashingActivity(CheckpointingActivity):
    """Dies while processing item ``crash_at``, like a worker that is killed."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at

    async def _process_item(self, item: Any) -> None:
        if item == self.crash_at:
            raise Crash(item)
        await super()._process_item(item)


@pytest.fixture(params=["statestore_memory", "statestore_local", "statestore_s3"])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on an in-memory store, a temp directory and a moto S3 bucket."""
    installed: Store = request.getfixturevalue(request.param)
    return installed


@pytest.mark.asyncio
async def test_resumes_from_last_checkpoint_after_crash(store: Store) -> None:
    args = {"workflow_id": "wf-123", "items": list(range(350))}

    with pytest.raises(Crash):
        await CrashingActivity(crash_at=250).process_with_checkpoint(args)
    assert await StateStore.get_state("wf-123", StateType.WORKFLOWS) == {"last_processed_index": 199}

    rerun = CheckpointingActivity()
    await rerun.process_with_checkpoint(args)
    assert rerun.processed == list(range(200, 350))  # items 0-199 are not processed again
    assert await store.get_state("wf-123", StateType.WORKFLOWS) == {"last_processed_index": 299, "status": "completed"}


@pytest.mark.asyncio
async def test_each_test_starts_empty(store: Store) -> None:
    assert await StateStore.get_state("wf-123", StateType.WORKFLOWS) == {}
