"""The bulk calls (``prune_states``, ``reencrypt_states``, ``get_states``, ``copy_states``) refuse bad arguments.

Each refusal is an ``InvalidInputError`` raised before any request, so the stored states are untouched;
through the command line it is exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult

from statestore import InvalidInputError, MemoryBackend, StateType, Store
from statestore.copying import copy_states
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS
BAD_CONCURRENCY = [0, -1, True, 2.5, "8", None, 10**30 + 0.5]


async def seeded() -> tuple[Store, CountingBackend]:
    backend = CountingBackend(MemoryBackend())
    store = Store(backend, app_name="app")
    await store.save_state("n", 1, "wf", W)
    backend.reset()
    return store, backend


@pytest.mark.parametrize("concurrency", BAD_CONCURRENCY)
async def test_bad_concurrency_is_invalid_input_for_every_bulk_call(concurrency: Any) -> None:
    store, backend = await seeded()
    other = Store(MemoryBackend(), app_name="other")
    calls: list[Callable[[], Any]] = [
        lambda: store.reencrypt_states(W, concurrency=concurrency),
        lambda: store.get_states(["wf"], W, concurrency=concurrency),
        lambda: copy_states(store, other, concurrency=concurrency),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match="concurrency must be an integer of at least 1"):
            await call()
    assert sum(backend.counts.values()) == 0


@pytest.mark.parametrize("older_than", [timedelta(days=10_000_000), timedelta.max])
async def test_prune_older_than_before_year_one_is_invalid_input(older_than: timedelta) -> None:
    store, backend = await seeded()
    with pytest.raises(InvalidInputError, match="older_than is too long"):
        await store.prune_states(W, older_than=older_than)
    assert sum(backend.counts.values()) == 0
    assert await store.list_states(W) == ["wf"]


def test_prune_command_with_a_duration_before_year_one_exits_2(
    tmp_path: Path, cli_run: Callable[..., CliResult]
) -> None:
    assert cli_run("--root", "root", "set", "wf", "n", "1").code == 0
    done = cli_run("--root", "root", "prune", "--older-than", "10000000d")
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith("statestore: invalid input: older_than is too long") and "internal" not in done.err
    assert cli_run("--root", "root", "list").out == "wf\n"
