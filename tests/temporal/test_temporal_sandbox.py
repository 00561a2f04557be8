"""A workflow module that imports statestore at the top runs on a Temporal worker with the default sandbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

pytest.importorskip("temporalio", reason="the Temporal tier needs temporalio: pip install -e '.[dev]'")

from temporalio.client import Client
from temporalio.worker import Worker

from statestore import StateType, Store

from .sandbox_workflows import SandboxedStateWorkflow, record_greeting
from .temporal_server import TemporalServer

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(120)]


async def test_workflow_module_importing_statestore_runs_in_default_sandbox(
    temporal_server: TemporalServer, checkpoint_store: Store
) -> None:
    client = await Client.connect(temporal_server.address)
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    workflow_id = f"wf-{uuid.uuid4().hex[:12]}"
    # Registering validates the workflow in the sandbox, which re-imports sandbox_workflows and so statestore.
    async with Worker(client, task_queue=queue, workflows=[SandboxedStateWorkflow], activities=[record_greeting]):
        result = await client.execute_workflow(
            SandboxedStateWorkflow.run, workflow_id, id=workflow_id, task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )  # fmt: skip
    assert result == {"greeting": "hello"}
    assert await checkpoint_store.get_state(workflow_id, StateType.WORKFLOWS) == {"greeting": "hello"}
