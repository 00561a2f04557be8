"""The event loop keeps ticking while the local backend writes large states (disk work and parsing run in threads).

A task sleeping 5 ms at a time records how late each wake-up is while 8 tasks write 1 MiB states. The machine is
shared, so a scheduler hiccup can delay one run: the best of up to ``RUNS`` runs must meet the bound.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from statestore import LocalBackend, StateType, Store

WRITERS, WRITES_EACH = 8, 6
TICK = 0.005
MAX_LATENESS = 0.050
RUNS = 3
MIB = 1 << 20


async def ticker(stop: asyncio.Event, lateness: list[float]) -> None:
    """Sleep ``TICK`` at a time until ``stop``; record how late each wake-up was."""
    while not stop.is_set():
        due = time.perf_counter() + TICK
        await asyncio.sleep(TICK)
        lateness.append(time.perf_counter() - due)


async def measure(store: Store, run: int) -> tuple[float, float, int, float]:
    """(max lateness, median lateness, ticks, seconds) while ``WRITERS`` tasks write 1 MiB states."""
    stop = asyncio.Event()
    lateness: list[float] = []

    async def writer(w: int) -> None:
        for i in range(WRITES_EACH):
            blob = chr(ord("a") + (w + i + run) % 26) * (MIB - 64)
            await store.save_state_object(f"big{w}", {"blob": blob, "i": i, "run": run}, StateType.WORKFLOWS)

    tick_task = asyncio.create_task(ticker(stop, lateness))
    await asyncio.sleep(TICK * 2)
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick_task
    for w in range(WRITERS):
        state = await store.get_state(f"big{w}", StateType.WORKFLOWS)
        assert (state["i"], state["run"], len(state["blob"])) == (WRITES_EACH - 1, run, MIB - 64)
    assert len(lateness) >= 5, "the writes ended before the ticker ran: nothing was measured"
    return max(lateness), sorted(lateness)[len(lateness) // 2], len(lateness), elapsed


async def test_loop_ticks_while_tasks_write_1_mib_states(tmp_path: Path) -> None:
    store = Store(LocalBackend(tmp_path / "root"), app_name="loop")
    results = []
    for run in range(RUNS):
        worst, median, ticks, elapsed = await measure(store, run)
        results.append(worst)
        print(
            f"\n[reliability] loop run {run + 1}: {WRITERS} tasks x {WRITES_EACH} writes of 1 MiB in {elapsed:.2f} s, "
            f"{ticks} ticks, max lateness {worst * 1000:.1f} ms, median {median * 1000:.2f} ms"
        )
        if worst < MAX_LATENESS:
            break
    assert min(results) < MAX_LATENESS, f"the event loop was blocked for {min(results) * 1000:.1f} ms at best"
