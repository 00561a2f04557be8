"""``statestore demo``: a workflow that checkpoints its progress, resumable, with a progress bar."""

from __future__ import annotations

import click

from ..api import StateStore, use_store
from ..core.store import State, Store
from ..keys.statetype import StateType
from .options import Options, pass_options, run_on_store
from .render import echo, echo_json, state_location


async def _demo(store: Store, workflow_id: str, items: int) -> State:
    """Process ``items`` items, saving the last one done every 100, on the ``StateStore`` facade with ``store``."""
    from rich.console import Console
    from rich.progress import Progress

    with use_store(store):
        state = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
        last_processed = state.get("last_processed_index", -1)
        with Progress(console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("checkpointing", total=items, completed=min(last_processed + 1, items))
            for i in range(items):
                if i <= last_processed:
                    continue
                progress.advance(task)
                if (i + 1) % 100 == 0:
                    await StateStore.save_state(
                        key="last_processed_index", value=i, id=workflow_id, type=StateType.WORKFLOWS
                    )
        await StateStore.save_state(key="status", value="completed", id=workflow_id, type=StateType.WORKFLOWS)
        return await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)


@click.command()
@click.option("--id", "workflow_id", default="demo-workflow", show_default=True, help="Workflow id.")
@click.option("--items", default=1000, show_default=True, type=click.IntRange(min=0), help="Items to process.")
@pass_options
def demo(opts: Options, workflow_id: str, items: int) -> None:
    """Run a checkpointing workflow, with a progress bar, on the store.

    The workflow processes --items items and saves the index of the last
    one done every 100 items. Without options it runs on the default local
    root. Run it twice: the second run resumes from the stored checkpoint.

    \b
    Example:
      statestore demo --items 500
    """
    settings = opts.settings()
    state = run_on_store(settings, lambda store: _demo(store, workflow_id, items), one_shot=False)
    where = state_location(settings, workflow_id, StateType.WORKFLOWS)
    local = settings.backend == "local"
    if opts.json:
        echo_json(opts, {"state_file": where if local else None, "location": where, "state": state})
        return
    echo(f"state file: {where}" if local else f"state object: {where}")
    echo_json(opts, state)
