"""``StateType``: the two kinds of state, workflows and credentials."""

from __future__ import annotations

from enum import StrEnum

from ..errors import InvalidStateTypeError


class StateType(StrEnum):
    """Enumeration of state types; the value is the ``<type>`` part of the key."""

    WORKFLOWS = "workflows"
    CREDENTIALS = "credentials"

    @classmethod
    def is_member(cls, type: str) -> bool:  # noqa: A002 - callers pass it as ``type``
        """True if ``type`` is the exact (case-sensitive) value of a member."""
        return isinstance(type, str) and type in cls._value2member_map_

    @classmethod
    def coerce(cls, value: StateType | str) -> StateType:
        """Return the member for a ``StateType`` or its string value, else raise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and cls.is_member(value):
            return cls(value)
        allowed = ", ".join(repr(m.value) for m in cls)
        raise InvalidStateTypeError(f"unknown state type {value!r}: expected one of {allowed}{cls._suggestion(value)}")

    @classmethod
    def _suggestion(cls, value: object) -> str:
        """`` (did you mean 'workflows'?)`` for a near miss: another case, the singular, spaces around it."""
        if isinstance(value, str):
            near = value.strip().lower()
            for member in cls:
                if near in (member.value, member.value.removesuffix("s")):
                    return f" (did you mean {member.value!r}?)"
        return ""
