"""The checkpoint activity of the spec ("Activity State Management"), run by worker processes.

It processes ``items`` and saves ``last_processed_index`` every 100 items,
then ``status=completed``, through the ``StateStore`` facade on the default
store (built from ``STATESTORE_*``). Each item, save and cancellation goes to
the run log (``checkpoint_log``). Two switches make it the scenario's variants:

- ``fenced``: acquire a fence at the start of the attempt and pass it to every
  save; a refused save (``FencedError``) is logged;
- ``zombie``: the code of an attempt that ignores cancellation: on
  ``CancelledError`` it saves its position in the handler and carries on, and
  it also carries on after a refused save (so every write it tries is counted).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity

from statestore import StateStore, StateType

from .checkpoint_log import RunLog

ACTIVITY = "process_with_checkpoint"
CHECKPOINT_EVERY = 100  # the spec's interval


@activity.defn(name=ACTIVITY)
async def process_with_checkpoint(args: dict[str, Any]) -> dict[str, Any]:
    """Process ``args["items"]`` items from the stored checkpoint on; returns who finished it."""
    info = activity.info()
    log = RunLog(args["log"], attempt=info.attempt)
    workflow_id: str = args["workflow_id"]
    items: int = args["items"]
    item_seconds: float = args["item_seconds"]
    zombie: bool = args["zombie"]
    fence: Any = None
    refused: tuple[type[BaseException], ...] = ()
    if args["fenced"]:
        from statestore import FencedError  # the fenced API (issue 25); unfenced runs do not need it

        refused = (FencedError,)
        fence = await StateStore.acquire_fence(workflow_id, StateType.WORKFLOWS)
        log.write("fence", epoch=fence.epoch)

    async def save(key: str, value: Any) -> None:
        try:
            if fence is None:
                await StateStore.save_state(key, value, workflow_id, StateType.WORKFLOWS)
            else:
                await StateStore.save_state(key, value, workflow_id, StateType.WORKFLOWS, fence=fence)
        except refused:
            log.write("refused", key=key, value=value)
            if not zombie:
                raise  # a newer attempt owns the state: stop
            return
        log.write("saved", key=key, value=value)

    state = await StateStore.get_state(workflow_id, StateType.WORKFLOWS)
    last: int = state.get("last_processed_index", -1)
    log.write("start", last=last)
    position = last
    i = last + 1
    while i < items:
        try:
            await asyncio.sleep(item_seconds)  # process item i
            log.write("item", i=i)
            position, i = i, i + 1
            activity.heartbeat(position)
            if (position + 1) % CHECKPOINT_EVERY == 0:
                await save("last_processed_index", position)
        except asyncio.CancelledError:
            log.write("cancelled", i=position, why=_why_cancelled())
            if not zombie:
                raise
            await save("last_processed_index", position)  # "save where we got to", then carry on regardless
    await save("status", "completed")
    log.write("done")
    return {"attempt": info.attempt, "pid": log.pid}


def _why_cancelled() -> list[str]:
    """The reasons the server gave for cancelling this attempt (``timed_out``, ``not_found``, ...)."""
    details = activity.cancellation_details()
    if details is None:
        return []
    return [name for name, value in vars(details).items() if value is True]
