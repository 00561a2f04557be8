"""Bad input from a generated corpus: a typed error naming the problem, and not one byte changed in or around the root.

Valid but unusual ids land exactly in their own slot under the root.
"""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_paths import CLASSIC_TRAVERSALS
from test_values_and_names import LOOK_ALIKES

from statestore import (
    InvalidInputError,
    LocalBackend,
    PathTraversalError,
    StateStoreError,
    StateTooLargeError,
    StateType,
    Store,
)
from statestore.errors import InvalidStateTypeError
from statestore.keys.paths import validate_id

LIMIT = 4096
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_ID = "good"
GOOD_STATE = {"a": 1, "nested": {"x": [1, 2.5, "three", None, True]}}

Call = Callable[[Store], Awaitable[Any]]


class Sandbox:
    """A store whose root sits two levels inside ``base``, with one state of each type stored."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "outer" / "root"
        self.store = Store(LocalBackend(self.root), app_name="app", max_state_bytes=LIMIT)

        async def seed() -> None:
            for stype in StateType:
                await self.store.replace_state(GOOD_ID, stype, GOOD_STATE)

        asyncio.run(seed())

    def snapshot(self) -> dict[str, bytes | None]:
        """Every file (bytes) and directory (None) under ``base``, hidden ones included."""
        return {str(p.relative_to(self.base)): p.read_bytes() if p.is_file() else None for p in self.base.rglob("*")}

    def rejects(self, call: Call, error: type[StateStoreError], *words: str) -> str:
        """Run ``call``; it must raise ``error`` naming one of ``words`` and change nothing. Returns the message."""
        before = self.snapshot()
        with pytest.raises(StateStoreError) as info:
            asyncio.run(call(self.store))
        message = str(info.value)
        assert isinstance(info.value, error), f"{type(info.value).__name__} is not {error.__name__}: {message}"
        assert any(w.lower() in message.lower() for w in words), f"message does not name the problem: {message}"
        assert self.snapshot() == before, f"a rejected call changed the files: {message}"
        return message


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# -- the corpus -------------------------------------------------------------------

TRAVERSAL_IDS = st.one_of(
    st.sampled_from([".", "..", "../good", "../../credentials/good", "/etc/passwd", "a/b", "a\\b", "..\\x"]),
    st.tuples(
        st.text(max_size=8), st.sampled_from(["/", "\\", "\x00", "\n", "\r", "\x7f", "\u2028"]), st.text(max_size=8)
    ).map("".join),
)
INVALID_IDS = st.one_of(
    st.just(""),
    st.text(alphabet="ab", min_size=256, max_size=300),
    st.text(alphabet="é", min_size=128, max_size=140),  # 2 bytes each: over 255 bytes
    st.just("x\ud800y"),
)
NON_STR = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False), st.binary(max_size=5), st.lists(st.integers(), max_size=2)
)
BAD_TYPES = st.one_of(
    st.text(max_size=12).filter(lambda t: t not in ("workflows", "credentials")),
    st.sampled_from(["Workflows", "WORKFLOWS", "workflow", "credential", " workflows"]),
    NON_STR,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


# (strategy of bad values, words one of which the message must contain)
BAD_VALUES: list[tuple[st.SearchStrategy[Any], tuple[str, ...]]] = [
    (st.sampled_from([math.nan, math.inf, -math.inf]), ("nan", "inf", "JSON cannot")),
    (st.sets(st.integers(), max_size=3), ("set",)),
    (st.frozensets(st.integers(), max_size=3), ("frozenset",)),
    (st.binary(max_size=8), ("bytes",)),
    (st.builds(object), ("object",)),
    (st.complex_numbers(allow_nan=False), ("complex",)),
    (st.sampled_from([datetime.datetime(2026, 1, 1), datetime.date(2026, 1, 1)]), ("datetime", "date")),
    (st.integers(min_value=4301, max_value=4400).map(lambda n: [10**n]), ("digits",)),
    (
        st.tuples(st.text(max_size=4), st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])).map("".join),
        ("surrogate",),
    ),
    (st.integers(min_value=260, max_value=2000).map(nested), ("nested",)),
    (
        st.dictionaries(
            st.one_of(st.integers(), st.none(), st.tuples(st.integers())), st.integers(), min_size=1, max_size=3
        ),
        ("key",),
    ),
]


def buried(bad: Any, how: int) -> Any:
    """``bad`` as the value itself or somewhere inside ordinary JSON."""
    return [bad, [{"ok": 1}, bad], {"deep": [1, {"x": bad}]}][how]


# -- ids and types -----------------------------------------------------------------


def calls_with(id_: Any, type_: Any) -> list[Call]:
    return [
        lambda s: s.get_state(id_, type_),
        lambda s: s.save_state("k", 1, id_, type_),
        lambda s: s.save_state_object(id_, {"k": 1}, type_),
        lambda s: s.update_state(id_, type_, lambda state: {**state, "k": 1}),
        lambda s: s.replace_state(id_, type_, {"k": 1}),
        lambda s: s.delete_state(id_, type_),
    ]


def test_traversal_and_invalid_ids_are_refused(box: Sandbox) -> None:
    @SETTINGS
    @given(bad=TRAVERSAL_IDS, op=st.integers(0, 5))
    def traversal(bad: str, op: int) -> None:
        box.rejects(calls_with(bad, StateType.WORKFLOWS)[op], PathTraversalError, "id")

    @SETTINGS
    @given(bad=INVALID_IDS, op=st.integers(0, 5))
    def invalid(bad: str, op: int) -> None:
        box.rejects(calls_with(bad, StateType.CREDENTIALS)[op], InvalidInputError, "id")

    @SETTINGS
    @given(bad=NON_STR, op=st.integers(0, 5))
    def non_str(bad: Any, op: int) -> None:
        box.rejects(calls_with(bad, StateType.WORKFLOWS)[op], InvalidInputError, "id must be a string")

    traversal()
    invalid()
    non_str()
    # the classic traversal cases, by name and through every call, so a weaker check cannot hide behind the generator
    for bad in [*CLASSIC_TRAVERSALS, "/abs", "x\x00"]:
        for call in calls_with(bad, "workflows"):
            box.rejects(call, PathTraversalError, "id")


def test_unknown_state_types_are_refused(box: Sandbox) -> None:
    @SETTINGS
    @given(bad=BAD_TYPES, op=st.integers(0, 6))
    def check(bad: Any, op: int) -> None:
        calls = [*calls_with(GOOD_ID, bad), lambda s: s.list_states(bad)]
        box.rejects(calls[op], InvalidStateTypeError, "state type")

    check()


@pytest.mark.parametrize(("bad", "rule"), LOOK_ALIKES[::3])
def test_look_alike_ids_touch_nothing(box: Sandbox, bad: str, rule: str) -> None:
    for call in calls_with(bad, StateType.CREDENTIALS):
        box.rejects(call, InvalidInputError, rule)


# -- keys and values ---------------------------------------------------------------


def test_non_string_keys_and_non_dict_objects_are_refused(box: Sandbox) -> None:
    @SETTINGS
    @given(key=NON_STR)
    def key(key: Any) -> None:
        box.rejects(lambda s: s.save_state(key, 1, GOOD_ID, "workflows"), InvalidInputError, "key must be a string")

    @SETTINGS
    @given(value=st.one_of(NON_STR, st.text(max_size=5), st.lists(st.tuples(st.text(), st.integers()), max_size=2)))
    def not_a_dict(value: Any) -> None:
        for call in (
            lambda s: s.save_state_object(GOOD_ID, value, "workflows"),
            lambda s: s.replace_state(GOOD_ID, "workflows", value),
        ):
            box.rejects(call, InvalidInputError, "must be a dict")

    key()
    not_a_dict()
    box.rejects(lambda s: s.update_state(GOOD_ID, "workflows", "not callable"), InvalidInputError, "callable")


@pytest.mark.parametrize("strategy, words", BAD_VALUES, ids=[w[0] for _, w in BAD_VALUES])
def test_values_that_are_not_plain_json_are_refused(
    box: Sandbox, strategy: st.SearchStrategy[Any], words: tuple[str, ...]
) -> None:

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bad=strategy, how=st.integers(0, 2), op=st.integers(0, 3), stype=st.sampled_from(list(StateType)))
    def check(bad: Any, how: int, op: int, stype: StateType) -> None:
        value = buried(bad, how)
        calls: list[Call] = [
            lambda s: s.save_state("k", value, GOOD_ID, stype),
            lambda s: s.save_state_object(GOOD_ID, {"k": value}, stype),
            lambda s: s.replace_state(GOOD_ID, stype, {"k": value}),
            lambda s: s.update_state(GOOD_ID, stype, lambda state: {**state, "k": value}),
        ]
        box.rejects(calls[op], InvalidInputError, *words)

    check()


def test_update_functions_that_return_bad_states_are_refused(box: Sandbox) -> None:
    for result, words in [([1, 2], ("not a dict", "list")), (None, ("NoneType",)), ({"k": {1, 2}}, ("set",))]:
        box.rejects(lambda s, r=result: s.update_state(GOOD_ID, "workflows", lambda _: r), InvalidInputError, *words)


def test_oversize_states_are_refused(box: Sandbox) -> None:
    @SETTINGS
    @given(size=st.integers(min_value=LIMIT, max_value=4 * LIMIT), op=st.integers(0, 3))
    def check(size: int, op: int) -> None:
        big = "x" * size
        calls: list[Call] = [
            lambda s: s.save_state("big", big, GOOD_ID, "workflows"),
            lambda s: s.save_state_object(GOOD_ID, {"big": big}, "credentials"),
            lambda s: s.replace_state(GOOD_ID, "workflows", {"big": big}),
            lambda s: s.update_state(GOOD_ID, "credentials", lambda st_: {**st_, "big": big}),
        ]
        message = box.rejects(calls[op], StateTooLargeError, "limit")
        assert str(LIMIT) in message

    check()


# -- valid ids stay in their slot --------------------------------------------------


def _valid(text: str) -> bool:
    try:
        validate_id(text)
    except InvalidInputError:
        return False
    return True


def test_unusual_valid_ids_land_in_their_own_slot(box: Sandbox) -> None:
    @SETTINGS
    @given(state_id=st.text(min_size=1, max_size=40).filter(_valid))
    def check(state_id: str) -> None:
        before = box.snapshot()
        asyncio.run(box.store.save_state("k", state_id, state_id, "workflows"))
        after = box.snapshot()
        created = {p for p in set(after) - set(before) if after[p] is not None}
        slot = Path("outer/root/persistent-artifacts/apps/app/workflows") / state_id
        assert {Path(p) for p in created} <= {slot / "config.json", slot / ".config.json.lock"}
        assert asyncio.run(box.store.get_state(state_id, "workflows")) == {"k": state_id}
        assert state_id in asyncio.run(box.store.list_states("workflows"))
        asyncio.run(box.store.delete_state(state_id, "workflows"))

    check()
