"""``CallActivity``: a workflow that runs one activity, by name, on another task queue, and returns its result.

It imports nothing but temporalio, so the default sandbox loads it. The recipe tests use it to reach an
activity served by a worker process of their own (docs/temporal.md's ``sync_worker.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy


@workflow.defn(name="CallActivity")
class CallActivity:
    """Runs ``activity`` on ``task_queue`` with ``args``: one attempt, a 10 s heartbeat timeout."""

    @workflow.run
    async def run(self, activity: str, task_queue: str, args: dict[str, Any]) -> Any:
        return await workflow.execute_activity(
            activity,
            args,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
