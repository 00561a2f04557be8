"""The usage examples statestore was specified with, run as written (only the import line differs), on every backend."""

from __future__ import annotations

import pytest

from statestore import PathTraversalError, StateStore, StateType, Store, build_state_store_path


async def test_storing_workflow_state(store: Store) -> None:
    workflow_config = {
        "source": "database",
        "database": "analytics",
        "schema": "public",
        "tables": ["users", "orders"],
        "metadata": {"batch_size": 1000, "parallel_tasks": 5},
    }
    await StateStore.save_state_object(id="workflow-abc-123", value=workflow_config, type=StateType.WORKFLOWS)
    state = await StateStore.get_state(id="workflow-abc-123", type=StateType.WORKFLOWS)
    assert f"Processing {state['database']}.{state['schema']}" == "Processing analytics.public"
    assert state == workflow_config


async def test_updating_workflow_progress(store: Store) -> None:
    await StateStore.save_state(key="progress", value=50, id="workflow-abc-123", type=StateType.WORKFLOWS)
    await StateStore.save_state(key="status", value="processing", id="workflow-abc-123", type=StateType.WORKFLOWS)
    await StateStore.save_state(key="current_table", value="users", id="workflow-abc-123", type=StateType.WORKFLOWS)
    state = await StateStore.get_state("workflow-abc-123", StateType.WORKFLOWS)
    assert state == {"progress": 50, "status": "processing", "current_table": "users"}


async def test_storing_credentials(store: Store) -> None:
    credential_config = {
        "credential_type": "database",
        "host": "db.example.com",
        "port": 5432,
        "database": "analytics",
        "username": "app_user",
        "password_ref": "db-password-secret",
        "ssl_enabled": True,
    }
    await StateStore.save_state_object(id="cred-database-123", value=credential_config, type=StateType.CREDENTIALS)
    creds = await StateStore.get_state(id="cred-database-123", type=StateType.CREDENTIALS)
    assert creds == credential_config
    assert await StateStore.get_state(id="cred-database-123", type=StateType.WORKFLOWS) == {}


async def test_activity_checkpointing(store: Store) -> None:
    async def process_with_checkpoint(workflow_args: dict[str, object], crash_at: int | None) -> list[int]:
        processed: list[int] = []
        workflow_id = str(workflow_args["workflow_id"])
        items = list(workflow_args["items"])  # type: ignore[call-overload]
        state = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
        last_processed = state.get("last_processed_index", -1)
        for i, _item in enumerate(items):
            if i <= last_processed:
                continue
            if i == crash_at:
                return processed
            processed.append(i)
            if (i + 1) % 100 == 0:
                await StateStore.save_state(
                    key="last_processed_index", value=i, id=workflow_id, type=StateType.WORKFLOWS
                )
        await StateStore.save_state(key="status", value="completed", id=workflow_id, type=StateType.WORKFLOWS)
        return processed

    args = {"workflow_id": "wf-checkpoint", "items": list(range(350))}
    first = await process_with_checkpoint(args, crash_at=250)
    assert first == list(range(250))
    assert await StateStore.get_state("wf-checkpoint", StateType.WORKFLOWS) == {"last_processed_index": 199}
    second = await process_with_checkpoint(args, crash_at=None)
    assert second == list(range(200, 350))
    assert await StateStore.get_state("wf-checkpoint", StateType.WORKFLOWS) == {
        "last_processed_index": 299,
        "status": "completed",
    }


async def test_merging_state_updates(store: Store) -> None:
    initial_state = {"workflow_id": "wf-123", "status": "started", "created_at": "2024-01-01T00:00:00Z"}
    await StateStore.save_state_object(id="wf-123", value=initial_state, type=StateType.WORKFLOWS)
    update = {"status": "running", "progress": 25, "current_step": "data_extraction"}
    updated = await StateStore.save_state_object(id="wf-123", value=update, type=StateType.WORKFLOWS)
    assert updated == {
        "workflow_id": "wf-123",
        "status": "running",
        "created_at": "2024-01-01T00:00:00Z",
        "progress": 25,
        "current_step": "data_extraction",
    }
    assert await StateStore.get_state("wf-123", StateType.WORKFLOWS) == updated


def test_state_path_management(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_APP_NAME", "appName")
    monkeypatch.delenv("STATESTORE_LOCAL_ROOT", raising=False)
    monkeypatch.delenv("ATLAN_TEMPORARY_PATH", raising=False)
    path = build_state_store_path(id="workflow-123", state_type=StateType.WORKFLOWS)
    assert path == "./local/tmp/persistent-artifacts/apps/appName/workflows/workflow-123/config.json"
    with pytest.raises(PathTraversalError, match="separator"):
        build_state_store_path(id="../../../etc/passwd", state_type=StateType.WORKFLOWS)
    with pytest.raises(ValueError):
        build_state_store_path(id="../../../etc/passwd", state_type=StateType.WORKFLOWS)
