"""JSON encoding and validation of state, and the ``Codec`` hook that turns plain JSON into stored bytes.

Stored bytes are plain JSON (``cat`` shows the state) unless a codec seals them,
as the encrypting codec does for credentials.

Integers of any size that JSON holds round-trip exactly. ``orjson`` (the fast
path) reads an integer beyond 64 bits as a float, or fails on one beyond the
float range, and cannot write one; the rare document that holds such an
integer goes through the standard library's ``json`` instead, with the same
strictness and the same compact output.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, NamedTuple

import orjson

from ..errors import CorruptStateError, InvalidInputError
from ..keys.paths import StateKey

MAX_DEPTH = 250  # orjson refuses deeper documents; say so up front with a clear error
INT_MIN = -(2**63)  # orjson reads and writes integers in [INT_MIN, INT_MAX] exactly
INT_MAX = 2**64 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")

# Finding integer literals beyond 64 bits in JSON text (``_may_hold_long_int``): such a literal has
# at least 20 digits, or a minus sign and 19. ``_CLASSES`` marks digits and the minus sign (1), what
# may stand before a number (``[ : ,`` and whitespace: 0) and anything else (2: a ``.`` before the
# digits of a fraction, a letter, a quote), so that one search finds every candidate.
_CLASSES = bytes(1 if b in b"0123456789-" else 0 if b in b"[:, \t\n\r" else 2 for b in range(256))
_LONG_NUMBER = b"\x00" + b"\x01" * 20
_AFTER_INT = frozenset(b"]}, \t\n\r")
_INT_LITERAL = re.compile(rb"-?[0-9]+")
#: A state of at most one value per this many bytes (long strings) is checked by a walk, not by reading its text.
_WALK_BYTES = 1024
#: Floats at least this large (or this small) may be an integer literal orjson rounded.
_ROUNDED_MIN = float(2**64)
_ROUNDED_MAX = float(INT_MIN)


def _invalid_int(item: int, what: str) -> InvalidInputError | None:
    """An error if ``item`` has more digits than Python converts to text (``sys.get_int_max_str_digits()``)."""
    limit = sys.get_int_max_str_digits()  # 0: no limit
    if not limit or item.bit_length() < 3 * (limit - 1):  # below 2**(3(n-1)) < 10**(n-1): fewer than n digits
        return None
    try:
        str(item)
    except ValueError:
        return InvalidInputError(
            f"{what} holds an integer of more than {limit} digits, which Python cannot convert to JSON text "
            "(sys.set_int_max_str_digits)"
        )
    return None


def _invalid_scalar(item: Any, what: str) -> InvalidInputError | None:
    """The error for a leaf that is not a plain JSON scalar, or None (slow path: subclasses and odd types)."""
    if isinstance(item, str):
        if not item.isascii() and _SURROGATE.search(item):
            return InvalidInputError(f"{what} holds a string with a lone surrogate, which is not valid Unicode text")
        return None
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        return None if INT_MIN <= item <= INT_MAX else _invalid_int(item, what)
    if isinstance(item, float):
        return None if math.isfinite(item) else InvalidInputError(f"{what} holds {item!r}, which JSON cannot represent")
    return InvalidInputError(f"{what} holds a {type(item).__name__}, which is not JSON-serializable")


def check_json(value: Any, what: str = "value") -> None:
    """Raise ``InvalidInputError`` unless ``value`` is plain JSON that round-trips unchanged.

    Rejects what ``orjson`` would silently change (NaN and infinities become
    ``null``, datetimes become strings) and what it cannot encode (sets, bytes,
    non-string keys, arbitrary objects), strings and keys with lone surrogates
    (not valid Unicode), and integers too long for Python to print. It runs on
    every write, so it walks the value level by level with the common
    cases (exact ``str``, ``int``, ``float``) first.
    """
    surrogate = _SURROGATE.search
    isfinite = math.isfinite
    level: list[Any] = [value]
    depth = 0  # the depth of the containers in ``level``
    if not isinstance(value, (dict, list, tuple)):  # a lone scalar: the one item of a wrapper, which is not part of it
        level, depth = [level], -1
    while level:
        if depth >= MAX_DEPTH:
            raise InvalidInputError(f"{what} is nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for container in level:
            if isinstance(container, dict):
                for k in container:
                    if k.__class__ is not str and not isinstance(k, str):
                        raise InvalidInputError(
                            f"{what} has a key of type {type(k).__name__}; JSON object keys are strings"
                        )
                    if not k.isascii() and surrogate(k):
                        raise InvalidInputError(f"{what} has a key with a lone surrogate, which is not valid Unicode")
                items = container.values()
            else:
                items = container
            for item in items:
                cls = item.__class__
                if cls is str:
                    if item.isascii() or not surrogate(item):
                        continue
                elif cls is float:
                    if isfinite(item):
                        continue
                elif cls is int:
                    if INT_MIN <= item <= INT_MAX:
                        continue
                elif item is None or cls is bool:
                    continue
                elif isinstance(item, (dict, list, tuple)):
                    below.append(item)
                    continue
                error = _invalid_scalar(item, what)
                if error is not None:
                    raise error
        level = below
        depth += 1


# -- encoding and decoding -------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of the range of a float")
    return value


def _may_hold_long_int(data: bytes, classes: bytes | None = None) -> bool:
    """Whether ``data`` holds an integer literal beyond 64 bits (False is certain; True may be a string's digits).

    One ``bytes.translate`` (``classes``, if the caller has it) and one
    ``bytes.find`` (C loops over the bytes); the rare candidates they find are
    checked one by one.
    """
    if classes is None:
        classes = data.translate(_CLASSES)
    at = classes.find(_LONG_NUMBER)
    while at >= 0:
        end = at + len(_LONG_NUMBER)
        while end < len(classes) and classes[end] == 1:
            end += 1
        literal = data[at + 1 : end]
        if (
            (end == len(data) or data[end] in _AFTER_INT)
            and _INT_LITERAL.fullmatch(literal)
            and (len(literal) > 20 or not INT_MIN <= int(literal) <= INT_MAX)
        ):
            return True
        at = classes.find(_LONG_NUMBER, end)
    return False


def _no_rounded_floats(value: Any, budget: int) -> bool | None:
    """Whether ``value`` holds no float that may be a rounded integer; None once ``budget`` values were seen.

    For states of few, large values (long strings) this walk costs nothing
    next to the parse; for dense ones ``_may_hold_long_int`` is cheaper.
    """
    stack = [value]
    while stack:
        container = stack.pop()
        values = container.values() if container.__class__ is dict else container
        budget -= len(values)
        if budget < 0:
            return None
        for item in values:
            cls = item.__class__
            if cls is float:
                if item >= _ROUNDED_MIN or item <= _ROUNDED_MAX:
                    return False
            elif cls is dict or cls is list:
                stack.append(item)
    return True


def _loads_exact(data: bytes) -> Any:
    """The standard library's parser, as strict as orjson (UTF-8 only, no NaN, no lone surrogates), exact ints."""
    text = bytes(data).decode("utf-8")  # strict: invalid UTF-8 and encoded surrogates raise
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    try:
        check_json(value)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None
    return value


def loads(data: bytes | str) -> Any:
    """Parse JSON text with every integer exact; raise ``ValueError`` for anything that is not strict JSON.

    orjson reads an integer beyond 64 bits as a float (and fails on one beyond
    the float range, about 309 digits). After orjson's parse, a cheap test tells
    whether that may have happened: a walk for states of few values (one per
    KiB: long strings), a scan of the text for dense ones. Only then is the
    text parsed again, exactly, by the standard library.
    """
    if data.__class__ is not bytes:
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)  # surrogates: below
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        if _may_hold_long_int(data):  # beyond the float range orjson refuses an integer JSON holds
            return _loads_exact(data)
        raise
    cls = value.__class__
    if cls is dict or cls is list:
        if len(data) >= _WALK_BYTES:
            exact = _no_rounded_floats(value, len(data) // _WALK_BYTES)
            if exact is not None:
                return value if exact else _loads_exact(data)
        classes = data.translate(_CLASSES)
        if classes.find(_LONG_NUMBER) < 0:  # the common case, without a call (``in`` is slower for bytes)
            return value
        return _loads_exact(data) if _may_hold_long_int(data, classes) else value
    if cls is float:
        return _loads_exact(data)  # a lone number: maybe an integer orjson rounded
    return value


def _dumps_exact(value: Any, indent: bool = False) -> bytes:
    """The standard library's encoder with orjson's output shape (compact, UTF-8); for integers beyond 64 bits."""
    check_json(value)  # what orjson would refuse, refuse here too (json would turn an int key into a string)
    try:
        text = json.dumps(
            value,
            ensure_ascii=False,
            allow_nan=False,
            indent=2 if indent else None,
            separators=(",", ": ") if indent else (",", ":"),
        )
    except (ValueError, TypeError, RecursionError) as exc:  # check_json should have caught it
        raise InvalidInputError(f"state is not JSON-serializable: {exc.__class__.__name__}") from None
    return text.encode("utf-8")


def dumps(value: Any, *, indent: bool = False) -> bytes:
    """Compact (or two-space indented) UTF-8 JSON, integers of any size exact; ``InvalidInputError`` if not JSON."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    except orjson.JSONEncodeError:
        return _dumps_exact(value, indent)  # an integer beyond 64 bits, or a real error check_json names


def encode(state: dict[str, Any]) -> bytes:
    """Encode a checked state as compact JSON; integers beyond 64 bits take the standard library's encoder."""
    try:
        return orjson.dumps(state)
    except orjson.JSONEncodeError:
        return _dumps_exact(state)


def decode(data: bytes, key: StateKey) -> dict[str, Any]:
    """Decode stored JSON, integers exactly; anything but a JSON object is ``CorruptStateError``.

    A bare ``NaN``, ``Infinity`` or ``-Infinity`` (what Python's ``json.dump`` writes, and so the service
    statestore replaces) reads as ``None``: JSON's one value for "no number" (decision 0062).
    """
    try:
        value = loads(data)
    except ValueError as exc:  # orjson.JSONDecodeError, json.JSONDecodeError, UnicodeDecodeError are ValueErrors
        value = _loads_non_finite(data)
        if value is _NOT_JSON:
            raise CorruptStateError(
                f"Failed to extract state: {key} is not valid JSON ({len(data)} bytes stored)"
            ) from exc
    if not isinstance(value, dict):
        raise CorruptStateError(f"Failed to extract state: {key} holds a JSON {type(value).__name__}, not an object")
    return value


_NOT_JSON: Any = object()
_NON_FINITE = re.compile(rb"NaN|Infinity")


def _loads_non_finite(data: bytes) -> Any:
    """``data`` parsed with ``NaN`` and ``[-]Infinity`` tokens (and numbers beyond a float) read as None, else
    ``_NOT_JSON``; as strict as ``loads`` otherwise."""
    if _NON_FINITE.search(data) is None:
        return _NOT_JSON
    try:
        text = bytes(data).decode("utf-8")
        value = json.loads(text, parse_constant=lambda _: None, parse_float=_float_or_none)
        check_json(value)
    except (ValueError, RecursionError, InvalidInputError):
        return _NOT_JSON
    return value


def _float_or_none(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON state, by a round trip through orjson (faster than ``copy.deepcopy``); ints exact."""
    try:
        result: dict[str, Any] = orjson.loads(orjson.dumps(state))
    except orjson.JSONEncodeError:
        result = json.loads(_dumps_exact(state))
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
