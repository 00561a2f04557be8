"""The ``statestore`` command."""

from __future__ import annotations

import asyncio

import click
import orjson

from .facade import StateStore, get_default_store
from .paths import build_state_store_path
from .statetype import StateType


@click.group()
def main() -> None:
    """Inspect and change statestore state from a shell."""


async def _demo(workflow_id: str, items: int) -> dict[str, object]:
    from rich.progress import Progress

    state = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
    last_processed = state.get("last_processed_index", -1)
    with Progress(transient=False) as progress:
        task = progress.add_task("checkpointing", total=items, completed=last_processed + 1)
        for i in range(items):
            if i <= last_processed:
                continue
            progress.advance(task)
            if (i + 1) % 100 == 0:
                await StateStore.save_state(
                    key="last_processed_index", value=i, id=workflow_id, type=StateType.WORKFLOWS
                )
    await StateStore.save_state(key="status", value="completed", id=workflow_id, type=StateType.WORKFLOWS)
    result = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
    await get_default_store().aclose()
    return result


@main.command()
@click.option("--id", "workflow_id", default="demo-workflow", show_default=True, help="Workflow id.")
@click.option("--items", default=1000, show_default=True, help="Items to process.")
def demo(workflow_id: str, items: int) -> None:
    """Run the API page's checkpointing example on the default store.

    Example: statestore demo --items 500
    """
    state = asyncio.run(_demo(workflow_id, items))
    click.echo(f"state file: {build_state_store_path(workflow_id, StateType.WORKFLOWS)}")
    click.echo(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())
