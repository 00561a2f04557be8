"""A workflow module as Atlan-style projects write it: the state store imported at the top, next to the workflow.

The default workflow sandbox re-imports this module, so ``import statestore``
must work inside it (issue 25): no native extension may be loaded at import.
Workflow code itself does no I/O; the activity reads and writes the state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

from statestore import StateStore, StateType


@activity.defn(name="record_greeting")
async def record_greeting(workflow_id: str, state_type: str) -> dict[str, Any]:
    """Save one key and return the stored state."""
    await StateStore.save_state("greeting", "hello", workflow_id, state_type)
    return await StateStore.get_state(workflow_id, state_type)


@workflow.defn(name="SandboxedStateWorkflow")
class SandboxedStateWorkflow:
    """Uses ``StateType`` from the top-level import in workflow code, and the store through an activity."""

    @workflow.run
    async def run(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            record_greeting,
            args=[workflow_id, StateType.WORKFLOWS.value],
            start_to_close_timeout=timedelta(seconds=30),
        )
        return result
