"""The workflow of the checkpoint scenario: one activity, ``process_with_checkpoint``, run on another task queue.

It imports nothing but temporalio, so the default sandbox loads it; the
activity (``checkpoint_activities``) runs on worker processes and is called by
name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

ACTIVITY = "process_with_checkpoint"


@workflow.defn(name="CheckpointWorkflow")
class CheckpointWorkflow:
    """Runs the checkpoint activity with a heartbeat timeout; the server retries an attempt that stops beating."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            ACTIVITY,
            args,
            task_queue=args["activity_queue"],
            start_to_close_timeout=timedelta(seconds=args["start_to_close_seconds"]),
            heartbeat_timeout=timedelta(seconds=args["heartbeat_timeout_seconds"]),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                backoff_coefficient=1.0,
                maximum_attempts=args["max_attempts"],
            ),
        )
        return result
