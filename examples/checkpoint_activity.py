"""An activity that checkpoints every 100 items, so a restarted run resumes where it stopped."""

from __future__ import annotations

from typing import Any

from statestore import StateStore, StateType


class CheckpointingActivity:
    """Processes ``items`` in order; after every 100th item the position is saved."""

    def __init__(self) -> None:
        self.processed: list[Any] = []

    async def _process_item(self, item: Any) -> None:
        self.processed.append(item)

    async def process_with_checkpoint(self, workflow_args: dict[str, Any]) -> None:
        workflow_id = workflow_args["workflow_id"]
        items = workflow_args["items"]
        state = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
        last_processed = state.get("last_processed_index", -1)
        for i, item in enumerate(items):
            if i <= last_processed:
                continue  # done before the crash
            await self._process_item(item)
            if (i + 1) % 100 == 0:
                await StateStore.save_state(
                    key="last_processed_index", value=i, id=workflow_id, type=StateType.WORKFLOWS
                )
        await StateStore.save_state(key="status", value="completed", id=workflow_id, type=StateType.WORKFLOWS)
