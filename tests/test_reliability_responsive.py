"""The event loop keeps ticking while the local backend writes large states.

Disk work (read, MD5, write, fsync, rename) runs in threads; what stays on the
loop (JSON encoding, comparing bytes) is short. A task that sleeps 5 ms at a
time measures how late each wake-up is while 8 tasks write 1 MiB states.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from statestore import LocalBackend, StateType, Store

WRITERS, WRITES_EACH = 8, 6
TICK = 0.005
MAX_LATENESS = 0.050  # the bound
MIB = 1 << 20


async def test_loop_ticks_while_tasks_write_1_mib_states(tmp_path: Path) -> None:
    store = Store(LocalBackend(tmp_path / "root"), app_name="loop")
    stop = asyncio.Event()
    lateness: list[float] = []

    async def ticker() -> None:
        while not stop.is_set():
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            lateness.append(time.perf_counter() - due)

    async def writer(w: int) -> None:
        for i in range(WRITES_EACH):
            blob = chr(ord("a") + (w + i) % 26) * (MIB - 64)
            await store.save_state_object(f"big{w}", {"blob": blob, "i": i}, StateType.WORKFLOWS)

    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(TICK * 2)
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick_task

    assert (await store.get_state("big3", StateType.WORKFLOWS))["i"] == WRITES_EACH - 1
    worst = max(lateness)
    print(
        f"\n[reliability] loop: {WRITERS} tasks x {WRITES_EACH} writes of 1 MiB in {elapsed:.2f} s, "
        f"{len(lateness)} ticks, max lateness {worst * 1000:.1f} ms, "
        f"median {sorted(lateness)[len(lateness) // 2] * 1000:.2f} ms"
    )
    assert len(lateness) >= 5, "the writes ended before the ticker ran: nothing was measured"
    assert worst < MAX_LATENESS, f"the event loop was blocked for {worst * 1000:.1f} ms"
