"""``get_states``: a bulk read, bounded in concurrency, all or an error, on every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from statestore import (
    BackendError,
    CorruptStateError,
    InvalidInputError,
    ObjectBackend,
    PathTraversalError,
    StateStore,
    StateType,
    Store,
)
from statestore.backends import Versioned, WrapperBackend
from statestore.errors import InvalidStateTypeError
from statestore.testing import CountingBackend, LatencyBackend

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS


class InFlight(WrapperBackend):
    """Measures the gets in flight at once over a ``LatencyBackend``; a get of a key in ``fail`` raises at once."""

    def __init__(self, inner: ObjectBackend, seconds: float) -> None:
        super().__init__(LatencyBackend(inner, seconds))
        self.now = self.peak = self.started = self.cancelled = 0
        self.fail: set[str] = set()

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | None:
        self.started += 1
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if key in self.fail:
                raise OSError("injected")
            return await super().get(key, if_none_match=if_none_match, max_bytes=max_bytes)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.now -= 1


def over(store: Store, wrapper: ObjectBackend) -> Store:
    """A store of the same app on ``wrapper`` (which wraps ``store``'s backend)."""
    return Store(wrapper, app_name=store.app_name)


async def test_every_id_is_a_key_missing_ones_empty(store: Store) -> None:
    await store.save_state_object("a", {"n": 1}, W)
    await store.save_state_object("b", {"n": 2, "list": [1, 2]}, W)
    await store.save_state_object("a", {"other": "type"}, C)
    got = await store.get_states(["b", "missing", "a"], W)
    assert got == {"b": {"n": 2, "list": [1, 2]}, "missing": {}, "a": {"n": 1}}
    assert list(got) == ["b", "missing", "a"]  # the order asked
    assert await StateStore.get_states(("a", "missing"), "credentials") == {"a": {"other": "type"}, "missing": {}}
    assert await store.get_states(iter(["a"]), W) == {"a": {"n": 1}}


async def test_duplicates_collapse_into_one_read_and_no_ids_cost_nothing(store: Store) -> None:
    await store.save_state_object("a", {"n": 1}, W)
    counting = CountingBackend(store.backend)
    assert await over(store, counting).get_states([], W) == {}
    assert counting.counts == {}
    got = await over(store, counting).get_states(["a", "b", "a", "a", "b"], W)
    assert got == {"a": {"n": 1}, "b": {}}
    assert counting.counts == {"get": 2}


@pytest.mark.parametrize(("concurrency", "peak"), [(1, 1), (5, 5), (16, 16), (100, 40), (None, 16)])
async def test_concurrency_is_bounded(store: Store, concurrency: int | None, peak: int) -> None:
    """``None``: the default, 16."""
    ids = [f"wf-{i}" for i in range(40)]
    for i in range(0, 40, 3):
        await store.save_state_object(ids[i], {"i": i}, W)
    inflight = InFlight(store.backend, 0.02)
    options = {} if concurrency is None else {"concurrency": concurrency}
    got = await over(store, inflight).get_states(ids, W, **options)
    assert got == {state_id: ({"i": i} if i % 3 == 0 else {}) for i, state_id in enumerate(ids)}
    assert inflight.peak == peak
    assert inflight.started == 40


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        (["ok", "../etc"], PathTraversalError),
        (["ok", "a/b"], PathTraversalError),
        (["ok", ""], InvalidInputError),
        (["ok", 7], InvalidInputError),
        (["ok", None], InvalidInputError),
        ("wf-1", InvalidInputError),  # one string is not a collection of ids
        (b"wf-1", InvalidInputError),
        (42, InvalidInputError),
    ],
)
async def test_bad_ids_raise_before_any_request(store: Store, ids: Any, error: type[Exception]) -> None:
    counting = CountingBackend(store.backend)
    with pytest.raises(error):
        await over(store, counting).get_states(ids, W)
    assert counting.counts == {}


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "4"])
async def test_bad_concurrency_or_type_raise_before_any_request(store: Store, concurrency: Any) -> None:
    counting = CountingBackend(store.backend)
    s = over(store, counting)
    with pytest.raises(InvalidInputError, match="concurrency"):
        await s.get_states(["a"], W, concurrency=concurrency)
    with pytest.raises(InvalidStateTypeError):
        await s.get_states(["a"], "Workflows")
    assert counting.counts == {}


async def test_a_failure_raises_and_cancels_the_other_reads(store: Store) -> None:
    ids = [f"wf-{i}" for i in range(30)]
    for state_id in ids:
        await store.save_state_object(state_id, {"id": state_id}, W)
    inflight = InFlight(store.backend, 0.5)
    inflight.fail.add(store.key("wf-3", W).object_key)
    with pytest.raises(BackendError, match="wf-3"):
        await over(store, inflight).get_states(ids, W, concurrency=4)
    assert inflight.started == 4  # wf-0..wf-3; nothing after the failure started
    assert inflight.cancelled == 3  # wf-0..wf-2 were still reading: cancelled, not left running
    assert inflight.now == 0


async def test_a_corrupt_state_raises_not_a_partial_answer(store: Store) -> None:
    await store.save_state_object("good", {"n": 1}, W)
    await store.backend.put(store.key("bad", W).object_key, b"not json")
    with pytest.raises(CorruptStateError):
        await store.get_states(["good", "bad"], W)
    with pytest.raises(CorruptStateError):
        await StateStore.get_states(["bad"], W)
    assert await store.get_states(["good"], W) == {"good": {"n": 1}}
