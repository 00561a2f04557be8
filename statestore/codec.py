"""JSON encoding and validation of state, and the ``Codec`` hook that turns plain JSON into stored bytes.

Stored bytes are plain JSON (``cat`` shows the state) unless a codec seals them,
as the encrypting codec does for credentials.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from .errors import CorruptStateError, InvalidInputError
from .paths import StateKey

MAX_DEPTH = 250  # orjson refuses deeper documents; say so up front with a clear error
_SCALARS = (str, bool, type(None))


def check_json(value: Any, what: str = "value") -> None:
    """Raise ``InvalidInputError`` unless ``value`` is plain JSON that round-trips unchanged.

    Rejects what ``orjson`` would silently change (NaN and infinities become
    ``null``, datetimes become strings) and what it cannot encode (sets, bytes,
    non-string keys, integers beyond 64 bits, arbitrary objects).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, int):
            if not -(2**63) <= item < 2**64:
                raise InvalidInputError(f"{what} holds an integer outside the 64-bit range")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInputError(f"{what} holds {item!r}, which JSON cannot represent")
            continue
        if depth >= MAX_DEPTH:
            raise InvalidInputError(f"{what} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise InvalidInputError(
                        f"{what} has a key of type {type(k).__name__}; JSON object keys are strings"
                    )
                stack.append((v, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        else:
            raise InvalidInputError(f"{what} holds a {type(item).__name__}, which is not JSON-serializable")


def encode(state: dict[str, Any]) -> bytes:
    """Encode a checked state as compact JSON."""
    try:
        return orjson.dumps(state)
    except (orjson.JSONEncodeError, TypeError) as exc:  # check_json should have caught it
        raise InvalidInputError(f"state is not JSON-serializable: {exc}") from exc


def decode(data: bytes, key: StateKey) -> dict[str, Any]:
    """Decode stored JSON; anything but a JSON object is ``CorruptStateError``."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptStateError(f"{key} is not valid JSON ({len(data)} bytes stored)") from exc
    if not isinstance(value, dict):
        raise CorruptStateError(f"{key} holds a JSON {type(value).__name__}, not an object")
    return value


def copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON state, by a round trip through orjson (faster than ``copy.deepcopy``)."""
    result: dict[str, Any] = orjson.loads(orjson.dumps(state))
    return result


class Opened(NamedTuple):
    """Plain JSON bytes read back through a codec, and whether they should be sealed anew."""

    plain: bytes
    reseal: bool


class Codec:
    """Turns plain JSON into the bytes a backend stores, and back. The base class stores plain JSON."""

    def seal(self, key: StateKey, plain: bytes) -> bytes:
        return plain

    def open(self, key: StateKey, stored: bytes) -> Opened:
        return Opened(stored, False)

    def check(self, key: StateKey, state: dict[str, Any]) -> None:
        """Refuse new top-level values this codec must not store (for example raw secrets without a key).

        Called with what a call sets, before anything is read or written.
        """

    def check_state(self, key: StateKey, state: dict[str, Any]) -> None:
        """Refuse a whole state that ``open`` would not read back as it is (raise ``InvalidInputError``).

        Called with the complete state after each change, before it is written; a refusal fails
        that change's caller alone and leaves the stored state untouched. It runs once per
        change, so it should look at the top level only.
        """
