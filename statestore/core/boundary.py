"""The edge of each public call of a ``Store``: the operation it runs as, and the checks of its arguments.

``Boundary`` is the ``with`` block every ``Store`` method runs in (decision 46); the functions check the arguments
several methods share (versions, fences, dicts, callables) before any I/O, each raising ``InvalidInputError``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..backends.base import PutMode
from ..codec.record import Fence
from ..errors import InvalidInputError, StateStoreError
from ..keys.paths import StateKey
from ..keys.statetype import StateType
from ..util import operation
from .cas import Expected

if TYPE_CHECKING:
    from ..telemetry import Telemetry

MAX_VERSION_CHARS = 1024


class Boundary(operation.Operation):
    """One public call of a store, as a ``with`` block: the operation, its deadline and what is said of it.

    On the way in it makes the call the current ``Operation`` (its deadline: now + the store's retry deadline,
    which bounds every wait below) and, where telemetry records, starts its span. On the way out a
    ``StateStoreError`` is told the call and the state it is about, and the span ends with the outcome.
    """

    __slots__ = ("_state_id", "_state_type", "_telemetry", "_token")

    def __init__(
        self, telemetry: Telemetry | None, seconds: float, name: str, state_id: object = None, state_type: object = None
    ) -> None:
        self.name = name
        self.deadline = time.monotonic() + seconds
        self.conflicts = self.retries = 0
        self.recording = None
        self._state_id = state_id
        self._state_type = state_type
        self._telemetry = telemetry

    def __enter__(self) -> Boundary:
        self._token = operation.CURRENT.set(self)
        if self._telemetry is not None:
            self._telemetry.begin(self, self._state_type, self._state_id)
        return self

    def __exit__(self, t: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        operation.CURRENT.reset(self._token)
        if exc is not None and isinstance(exc, StateStoreError):
            annotate(exc, self.name, self._state_id, self._state_type)
        if self._telemetry is not None:
            self._telemetry.end(self, "ok" if exc is None else exc.__class__.__name__)


def annotate(exc: StateStoreError, name: str, state_id: object, state_type: object) -> None:
    """Say on ``exc`` which call failed, and for which state where known (an inner call's state is kept)."""
    exc.operation = name
    if exc.state_id is None and isinstance(state_id, str):
        exc.state_id = state_id
    if exc.state_type is None and isinstance(state_type, str):  # as the caller gave it, even if it is no type
        exc.state_type = state_type.value if isinstance(state_type, StateType) else state_type


def expected_version(version: str | None) -> Expected | None:
    """The precondition ``if_version=`` asks for (None: none); ``InvalidInputError`` for anything but a version."""
    if version is None:
        return None
    if (
        version.__class__ is not str
        or not version.strip('"')
        or len(version) > MAX_VERSION_CHARS
        or not (version.isascii() and version.isprintable())
    ):
        raise InvalidInputError(
            f"if_version must be a version from get_versioned_state (a non-empty string), not {shown(version)}"
        )
    return PutMode.update(version)


def checked_fence(fence: object, skey: StateKey) -> Fence | None:
    """``fence`` if it is None or a ``Fence`` of this state, else ``InvalidInputError`` (before any I/O)."""
    if fence is None:
        return None
    if not isinstance(fence, Fence):
        raise InvalidInputError(f"fence must be a Fence from acquire_fence, not {fence.__class__.__name__}")
    return fence.check(skey)


def checked_epoch(value: object) -> int:
    """``value`` if it can be a fence epoch (an integer of 0 or more; a bool is not), else ``InvalidInputError``."""
    if value.__class__ is not int or value < 0:
        raise InvalidInputError(f"fence_epoch must be an integer of 0 or more, not {shown(value)}")
    return value


def version_id(version: Any) -> str:
    """``version`` if it can be a kept version's id (a short printable string), else ``InvalidInputError``."""
    if (
        version.__class__ is not str
        or not version
        or len(version) > MAX_VERSION_CHARS
        or not (version.isascii() and version.isprintable())
    ):
        raise InvalidInputError(f"version must be the id of a kept version (a non-empty string), not {shown(version)}")
    return version


def shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:76] + "..."


def as_dict(value: Any) -> dict[str, Any]:
    """A mapping a call sets, as a dict of its own."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
    return dict(value)


def callable_or_none(value: object, name: str) -> None:
    if value is not None and not callable(value):
        raise InvalidInputError(f"{name} must be callable")
