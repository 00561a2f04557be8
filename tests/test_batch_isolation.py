"""Coalesced batches: one caller's failure stays its own, and a batch costs O(1) work on the state.

Decode/encode work is counted by spies around the real codec functions (timings live in scripts/bench_stalls.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from test_store import raw

import statestore.core.cas as cas_module
import statestore.core.changes as changes_module
import statestore.core.store as store_module
from statestore import (
    BackendError,
    InvalidInputError,
    MemoryBackend,
    ObjectBackend,
    PutMode,
    StateTooLargeError,
    StateType,
    Store,
)
from statestore.backends import PutResult, WrapperBackend
from statestore.codec.jsonio import check_json, copy_state, decode, encode
from statestore.testing import CountingBackend, LatencyBackend

W = StateType.WORKFLOWS
PEERS = 6


class Boom(BaseException):
    """Not an ``Exception``: what an update function might raise by mistake (or on purpose)."""


def appender(item: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(state: dict[str, Any]) -> dict[str, Any]:
        state["log"] = [*state.get("log", []), item]
        return state

    return fn


# -- item 2: a bad change fails its caller alone --------------------------------------------------------


async def test_exact_pass_refuses_only_the_changes_crossing_the_limit() -> None:
    """Re-applied one by one, the batch keeps call order: a later change that fits is written."""
    store = Store(MemoryBackend(), max_state_bytes=300)
    await store.save_state("seed", 0, "wf", W)
    results = await asyncio.gather(
        store.save_state("a", "x" * 100, "wf", W),
        store.update_state("wf", W, appender(1)),
        store.save_state("b", "y" * 200, "wf", W),  # crosses the limit
        store.save_state_object("wf", {"c": "z" * 50}, W),  # still fits
        store.update_state("wf", W, lambda s: {**s, "d": "w" * 200}),  # crosses it
        store.replace_state("wf", W, {"e": "v" * 400}),  # over on its own
        store.update_state("wf", W, appender(2)),
        return_exceptions=True,
    )
    expected = {"seed": 0, "a": "x" * 100, "log": [1, 2], "c": "z" * 50}
    big = StateTooLargeError
    assert [type(r) for r in results] == [type(None), dict, big, dict, big, big, dict]
    assert results[6] == expected
    stored = await raw(store, "wf")
    assert stored is not None and stored.rstrip() == orjson.dumps(expected)  # the entries joined: what orjson writes
    assert await Store(store.backend).get_state("wf", W) == expected


# -- item 7: a BaseException from an update function --------------------------------------------------------


async def test_base_exception_from_an_update_fails_only_its_caller(make_backend: Callable[[], ObjectBackend]) -> None:
    store = Store(make_backend())
    await store.save_state("log", [], "wf", W)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))

    def boom(state: dict[str, Any]) -> dict[str, Any]:
        state["log"].append("boom")  # mutates its copy, then raises: nothing of it may land
        raise Boom("mine alone")

    def stop(state: dict[str, Any]) -> dict[str, Any]:
        raise StopIteration  # a future cannot hold it: the caller gets RuntimeError, as from a coroutine

    calls = [store.update_state("wf", W, appender(i)) for i in range(3)]
    calls.insert(1, store.update_state("wf", W, boom))
    calls.insert(3, store.update_state("wf", W, stop))
    calls.append(store.save_state("k", 1, "wf", W))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[1], Boom)
    assert isinstance(results[3], RuntimeError)
    assert isinstance(results[3].__cause__, StopIteration)
    assert [r["log"] for r in results if isinstance(r, dict)] == [[0, 1, 2]] * 3
    assert results[-1] is None
    assert await Store(make_backend()).get_state("wf", W) == {"log": [0, 1, 2], "k": 1}
    with pytest.raises(Boom):  # alone, too
        await store.update_state("wf", W, boom)
    await asyncio.sleep(0.01)
    assert unhandled == []  # no "Task exception was never retrieved"
    assert await store.update_state("wf", W, appender(3)) == {"log": [0, 1, 2, 3], "k": 1}


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
async def test_keyboardinterrupt_or_systemexit_from_an_update_fails_only_its_caller(
    raised: type[BaseException],
) -> None:
    """The two exceptions asyncio lets out of a task: the raiser's await gets it (here caught by the caller, as a
    loop that goes on must), the drain task delivers it and writes the batch's other changes, and carries on."""
    store = Store(LatencyBackend(MemoryBackend(), 0.01))
    await store.save_state("log", [], "wf", W)

    def stop(state: dict[str, Any]) -> dict[str, Any]:
        raise raised("mine alone")

    async def call(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        try:
            return await store.update_state("wf", W, fn)
        except (KeyboardInterrupt, SystemExit) as exc:
            return exc

    first = asyncio.ensure_future(call(appender(0)))  # writing alone: the calls below queue for the drain task
    await asyncio.sleep(0.002)
    batch = await asyncio.gather(call(appender(1)), call(stop), call(appender(2)))
    assert (await first)["log"] == [0]
    assert isinstance(batch[1], raised)
    assert [r["log"] for r in (batch[0], batch[2])] == [[0, 1, 2]] * 2
    assert await store.update_state("wf", W, appender(3)) == {"log": [0, 1, 2, 3]}


# -- item 3: O(1) work per batch, off the event loop ----------------------------------------------------------


@dataclass
class Call:
    name: str
    nbytes: int
    on_loop: bool


@dataclass
class Spy:
    """Records every decode, encode, copy and check the store makes, with its size and thread."""

    loop_thread: threading.Thread
    calls: list[Call] = field(default_factory=list)

    def record(self, name: str, nbytes: int) -> None:
        self.calls.append(Call(name, nbytes, threading.current_thread() is self.loop_thread))

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def total(self, name: str) -> int:
        return sum(c.nbytes for c in self.of(name))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    recorder = Spy(threading.current_thread())

    def spying(name: str, real: Callable[..., Any], size: Callable[[Any], int]) -> Callable[..., Any]:
        def wrapper(first: Any, *rest: Any) -> Any:
            recorder.record(name, size(first))
            return real(first, *rest)

        return wrapper

    dumped = lambda value: len(orjson.dumps(value))  # noqa: E731
    monkeypatch.setattr(cas_module, "decode", spying("decode", decode, len))
    monkeypatch.setattr(changes_module, "encode", spying("encode", encode, lambda state: len(encode(state))))
    monkeypatch.setattr(cas_module, "copy_state", spying("copy", copy_state, dumped))
    monkeypatch.setattr(changes_module, "check_json", spying("check", check_json, dumped))
    monkeypatch.setattr(store_module, "check_json", spying("check", check_json, dumped))
    yield recorder


def big_state(nbytes: int) -> dict[str, Any]:
    return {"rows": [{"name": f"table_{i:06d}", "n": i, "cols": ["a", "b", "c"]} for i in range(nbytes // 50)]}


async def seeded(nbytes: int, **options: Any) -> tuple[Store, int]:
    store = Store(MemoryBackend(), **options)
    await store.replace_state("wf", W, big_state(nbytes))
    stored = await raw(store, "wf")
    assert stored is not None
    return store, len(stored.rstrip())  # the state's JSON, without the write's record after it


async def test_a_batch_of_saves_decodes_and_encodes_the_state_once(spy: Spy) -> None:
    store, size = await seeded(200_000)
    spy.calls.clear()
    await asyncio.gather(*(store.save_state(f"k{i}", i, "wf", W) for i in range(100)))
    assert [c.name for c in spy.calls if c.nbytes >= size] == ["decode", "encode"]
    assert spy.of("copy") == []  # save_state returns nothing: no copy for anyone
    assert spy.total("decode") + spy.total("encode") < 2.1 * size
    assert not any(c.on_loop for c in spy.calls if c.nbytes >= size)
    assert len((await store.get_state("wf", W)).keys()) == 101


async def test_a_batch_crossing_the_limit_still_encodes_the_state_a_bounded_number_of_times(spy: Spy) -> None:
    store, size = await seeded(200_000)
    store.max_state_bytes = size + 1500  # room for the 100 small keys (880 bytes), not for "over" too
    spy.calls.clear()
    calls = [store.save_state(f"k{i}", i, "wf", W) for i in range(100)]
    calls.insert(50, store.save_state("over", "x" * 1400, "wf", W))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results.pop(50), StateTooLargeError)
    assert results == [None] * 100
    assert len(spy.of("decode")) == 1
    assert spy.total("encode") < 2.2 * size  # the whole state, then each entry once, then each change's values
    assert spy.of("copy") == []
    assert not any(c.on_loop for c in spy.calls if c.nbytes >= 64 * 1024)


async def test_update_functions_run_on_the_loop_and_the_work_around_them_does_not(spy: Spy) -> None:
    store, size = await seeded(200_000)
    spy.calls.clear()
    threads: list[threading.Thread] = []

    def bump(state: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.current_thread())
        state["n"] = state.get("n", 0) + 1
        return state

    results = await asyncio.gather(*(store.update_state("wf", W, bump) for _ in range(3)))
    assert threads == [spy.loop_thread] * 3
    assert [r["n"] for r in results] == [3, 3, 3]
    large = [c for c in spy.calls if c.nbytes >= size]
    assert large and not any(c.on_loop for c in large)
    assert len(spy.of("copy")) == 3  # each function gets a copy of its own
    assert len(spy.of("decode")) == 1 + 3  # the state, and one copy for each caller that gets it back


async def test_a_lone_caller_gets_the_state_with_no_copy_and_a_lone_update_works_off_the_loop(spy: Spy) -> None:
    store, size = await seeded(200_000)
    spy.calls.clear()
    state = await store.save_state_object("wf", {"n": 0}, W)
    assert state["n"] == 0
    assert [c.name for c in spy.calls if c.nbytes >= size] == ["decode", "encode"]
    spy.calls.clear()
    state = await store.update_state("wf", W, lambda s: {**s, "n": s["n"] + 1})
    assert state["n"] == 1
    assert {c.name for c in spy.calls if c.nbytes >= size} == {"decode", "copy", "check", "encode"}
    assert not any(c.on_loop for c in spy.calls if c.nbytes >= size)


async def test_a_large_value_is_checked_off_the_loop(spy: Spy) -> None:
    store = Store(MemoryBackend())
    await store.replace_state("wf", W, big_state(200_000))
    checks = [c for c in spy.of("check") if c.nbytes >= 100_000]
    assert checks and not any(c.on_loop for c in checks)


async def test_small_states_stay_on_the_loop(spy: Spy) -> None:
    store = Store(MemoryBackend())
    await store.save_state_object("wf", {"a": 1}, W)
    await asyncio.gather(store.update_state("wf", W, appender(1)), store.save_state_object("wf", {"b": 2}, W))
    assert spy.calls and all(c.on_loop for c in spy.calls)


# -- what each caller gets back ---------------------------------------------------------------------------------


async def test_callers_in_a_batch_each_own_the_state_they_get(make_backend: Callable[[], ObjectBackend]) -> None:
    store = Store(make_backend())
    await store.save_state("log", [], "wf", W)
    mine = {"items": [1, 2]}
    results = await asyncio.gather(
        store.update_state("wf", W, appender(0)),
        store.replace_state("wf", W, {"log": [0]}),
        store.update_state("wf", W, appender(1)),
        store.save_state_object("wf", {"mine": mine}, W),
        store.save_state_object("wf", {"other": {"x": 1}}, W),
    )
    expected = {"log": [0, 1], "mine": {"items": [1, 2]}, "other": {"x": 1}}
    assert results == [expected] * 5
    for i, state in enumerate(results):
        state["log"].append(f"caller {i}")
        state["mine"]["items"].append(i)
        state["other"]["x"] = i
    assert mine == {"items": [1, 2]}  # a caller's own value is not handed to the others
    assert [r["log"] for r in results] == [[0, 1, f"caller {i}"] for i in range(5)]
    assert await store.get_state("wf", W) == expected
    assert await store.save_state_object("wf", {}, W) == expected  # nor did any of it reach the cache


# -- bad changes, cancelled and failed writes in a batch, with its requests counted -------------------------


async def test_failing_change_fails_only_its_caller(make_backend: Callable[[], ObjectBackend]) -> None:
    counting = CountingBackend(make_backend())
    store = Store(counting, max_state_bytes=1000)
    await store.save_state("log", [], "wf", W)
    counting.reset()

    def broken(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    calls = [store.update_state("wf", W, appender(i)) for i in range(3)]
    calls.append(store.update_state("wf", W, broken))
    calls.append(store.save_state("big", "x" * 2000, "wf", W))
    calls.append(store.update_state("wf", W, lambda s: {"not": {1, 2}}))  # not JSON
    calls.append(store.update_state("wf", W, lambda s: {**s, "bad": "x\ud800"}))  # does not encode
    calls.append(store.save_state("bad", "x\ud800", "wf", W))
    calls.extend(store.update_state("wf", W, appender(i)) for i in range(3, 6))
    calls.append(store.save_state("k", 1, "wf", W))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results[3:8]] == [ValueError, StateTooLargeError, *[InvalidInputError] * 3]
    assert all(isinstance(r, dict) for r in results[:3] + results[8:11]) and results[11] is None
    assert counting.counts == {"put": 1}
    assert await Store(make_backend()).get_state("wf", W) == {"log": [0, 1, 2, 3, 4, 5], "k": 1}


async def test_one_oversized_change_alone_fails_and_writes_nothing(make_backend: Callable[[], ObjectBackend]) -> None:
    counting = CountingBackend(make_backend())
    store = Store(counting, max_state_bytes=100)
    await store.save_state("k", 1, "wf", W)
    counting.reset()
    with pytest.raises(StateTooLargeError, match="limit is 100"):
        await store.save_state("big", "x" * 200, "wf", W)
    with pytest.raises(StateTooLargeError):
        await store.save_state("big", "x" * 200, "other", W)
    assert counting.counts["put"] == 0
    assert await store.get_state("wf", W) == {"k": 1}
    assert await store.get_state("other", W) == {}


class Gate(WrapperBackend):
    """Holds every put until ``release`` is set; ``fail`` makes released puts raise."""

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail = False
        self.puts = 0

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        self.puts += 1
        self.entered.set()
        await self.release.wait()
        if self.fail:
            raise OSError("disk on fire")
        return await super().put(key, data, mode)


async def gated_store() -> tuple[Store, Gate]:
    gate = Gate(MemoryBackend())
    store = Store(gate)
    gate.release.set()
    await store.save_state("seed", 0, "wf", W)
    gate.release.clear()
    gate.entered.clear()
    gate.puts = 0
    return store, gate


async def test_cancelled_waiting_caller_is_not_written() -> None:
    store, gate = await gated_store()
    first = asyncio.create_task(store.save_state("a", 1, "wf", W))
    await gate.entered.wait()  # first is being written; the next ones wait for it
    second = asyncio.create_task(store.save_state("b", 2, "wf", W))
    third = asyncio.create_task(store.save_state("c", 3, "wf", W))
    await asyncio.sleep(0.01)
    second.cancel()
    gate.release.set()
    await first
    await third
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await store.get_state("wf", W) == {"seed": 0, "a": 1, "c": 3}
    assert gate.puts == 2


async def test_cancelled_writer_hands_the_waiting_callers_on() -> None:
    store, gate = await gated_store()
    first = asyncio.create_task(store.save_state("a", 1, "wf", W))
    await gate.entered.wait()
    second = asyncio.create_task(store.save_state("b", 2, "wf", W))
    await asyncio.sleep(0.01)
    first.cancel()  # its put was never sent (the gate holds it): its change is not written
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.release.set()
    await second
    assert await store.get_state("wf", W) == {"seed": 0, "b": 2}


async def test_caller_cancelled_before_its_write_starts() -> None:
    store, gate = await gated_store()
    gate.release.set()
    first = asyncio.create_task(store.save_state("a", 1, "wf", W))
    second = asyncio.create_task(store.save_state("b", 2, "wf", W))
    await asyncio.sleep(0)  # both have queued; the first waits one loop turn for company
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await store.get_state("wf", W) == {"seed": 0, "b": 2}


async def test_failed_write_reaches_every_caller_in_it() -> None:
    store, gate = await gated_store()
    first = asyncio.create_task(store.save_state("a", 1, "wf", W))
    await gate.entered.wait()
    gate.fail = True
    waiting = [asyncio.create_task(store.save_state(f"w{i}", i, "wf", W)) for i in range(3)]
    await asyncio.sleep(0.01)
    gate.release.set()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert all(isinstance(r, BackendError) for r in results)
    assert gate.puts == 2  # the first write, then one for all three waiting callers
    gate.fail = False
    assert await store.get_state("wf", W) == {"seed": 0}
    await store.save_state("after", True, "wf", W)  # the store is usable afterwards
    assert await store.get_state("wf", W) == {"seed": 0, "after": True}
