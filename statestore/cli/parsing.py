"""Reading the commands' JSON arguments: a whole object (argument or stdin) or one value."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Any

from ..codec.jsonio import loads
from ..errors import InvalidInputError


def parse_object(text: str | bytes, what: str) -> dict[str, Any]:
    """A JSON object from ``text``; anything else is ``InvalidInputError`` naming ``what``."""
    try:
        value = loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got a JSON {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "null"


def read_object(arg: str | None) -> dict[str, Any]:
    """A JSON object from the argument, or from stdin when it is ``-`` or missing."""
    if arg is None or arg == "-":
        if arg is None and sys.stdin.isatty():
            raise InvalidInputError("give the JSON object as an argument, or '-' and pipe it on stdin")
        return parse_object(sys.stdin.buffer.read(), "stdin")  # bytes: orjson itself rejects invalid UTF-8
    return parse_object(arg, "the JSON argument")


def parse_value(text: str) -> Any:
    """``set``'s VALUE: JSON if it parses, else a bare word (no spaces, not starting like JSON) is a string."""
    try:
        return loads(text)
    except ValueError:
        if text and text[0] not in '{["' and not any(ch.isspace() for ch in text):
            return text
        raise InvalidInputError(  # the value is not repeated: it may be a secret
            "VALUE is not valid JSON, nor a bare word (no spaces): to store a string with spaces, "
            "quote it as JSON inside shell quotes, e.g. '\"two words\"'"
        ) from None


_DURATION = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """A positive duration such as ``30d``, ``12h``, ``15m``, ``90s`` or ``1d12h``; else ``InvalidInputError``."""
    spelled = text.strip().lower()
    parts = _DURATION.findall(spelled)
    if not parts or "".join(n + u for n, u in parts) != spelled:
        raise InvalidInputError(f"a duration is a number and a unit (d, h, m or s), e.g. 30d or 12h; got {text!r}")
    duration = timedelta()
    try:
        for number, unit in parts:
            duration += timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError:
        raise InvalidInputError(f"the duration {text!r} is too long") from None
    if duration <= timedelta(0):
        raise InvalidInputError(f"the duration must be positive, got {text!r}")
    return duration
