"""Key layout and id validation: every state lives at one key, and an id never leaves its slot.

persistent-artifacts/apps/<app>/<type>/<id>/config.json

An id (and an app name) is one path segment that also reads as what it is: no
separators or control characters, at most 255 UTF-8 bytes, no leading or
trailing whitespace, no invisible formatting characters (bidi controls,
zero-width characters), and in Unicode NFC form, so that two ids that look
the same are the same id. The whole object key is at most 1024 UTF-8 bytes,
S3's limit.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import dataclass, field

from ..errors import InvalidInputError, ListingOutOfPrefixError, PathTraversalError
from .statetype import StateType

KEY_ROOT = "persistent-artifacts/apps"
STATE_FILE = "config.json"
logger = logging.getLogger(__name__)

MAX_NAME_BYTES = 255  # a file name on every common file system; ids are file names locally
MAX_KEY_BYTES = 1024  # S3's limit on an object key, prefix included

# Invisible characters that make one name look like another. Named here for clear messages;
# every other format character (Unicode category Cf: soft hyphen, tag characters, ...) is refused too.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def _check_name(value: object, what: str) -> str:
    """Validate one path segment (an id or an app name); raise before any I/O."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if value == "":
        raise InvalidInputError(f"{what} must not be empty")
    if value in (".", ".."):
        raise PathTraversalError(f"{what} {value!r} would leave its directory")
    plain = value.isascii() and value.isprintable() and "/" not in value and "\\" not in value
    for ch in () if plain else value:  # plain ASCII has no separator or control character: no need to look
        if ch in "/\\":
            raise PathTraversalError(f"{what} {value!r} contains a path separator {ch!r}")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise PathTraversalError(f"{what} {value!r} contains a control character {ch!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates cannot name a file or an object
        raise InvalidInputError(f"{what} {value!r} is not valid Unicode text") from exc
    if size > MAX_NAME_BYTES:
        raise InvalidInputError(f"{what} is {size} bytes in UTF-8; at most {MAX_NAME_BYTES} are allowed")
    if not value.isascii():
        _check_looks(value, what)
    if value != value.strip():
        if not value.strip():
            raise InvalidInputError(f"{what} {value!r} is only whitespace")
        raise InvalidInputError(f"{what} {value!r} has leading or trailing whitespace, which hides it in listings")
    return value


def _check_looks(value: str, what: str) -> None:
    """Refuse invisible format characters and non-NFC text: a name must not look like another one."""
    for ch in value:
        if unicodedata.category(ch) != "Cf":
            continue
        code = f"U+{ord(ch):04X}"
        if ch in BIDI_CONTROLS:
            kind = "the bidirectional control character"
        elif ch in ZERO_WIDTH:
            kind = "the zero-width character"
        else:
            kind = "the invisible format character"
        raise InvalidInputError(
            f"{what} {value!r} contains {kind} {code}; names must not contain bidi controls, zero-width or "
            "other invisible format characters (they make one name look like another)"
        )
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidInputError(
            f"{what} {value!r} is not in Unicode NFC form; it would look like {unicodedata.normalize('NFC', value)!r} "
            "but be another name. Normalize it first: unicodedata.normalize('NFC', name)"
        )


def check_object_key(key: str, prefix: str = "") -> str:
    """Return ``prefix + key`` if it fits S3's limit of 1024 UTF-8 bytes for an object key, else raise.

    Backends that put a prefix before every key (S3's ``prefix`` option) pass it
    here; the error names the rule and the size, never more of the key than its start.
    """
    full = prefix + key
    size = len(full.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        shown = repr(key[:80]) + ("..." if len(key) > 80 else "")
        extra = f" with the prefix {prefix[:40]!r}" if prefix else ""
        raise InvalidInputError(
            f"object key {shown} is {size} bytes in UTF-8{extra}; "
            f"S3 allows at most {MAX_KEY_BYTES} bytes for a whole object key, prefix included"
        )
    return full


def validate_id(id: str) -> str:  # noqa: A002 - ``id`` is the public parameter name
    """Return ``id`` if it may name a state, else raise ``PathTraversalError`` / ``InvalidInputError``."""
    return _check_name(id, "id")


def validate_app_name(app_name: str) -> str:
    """Return ``app_name`` if it may be the ``<app>`` segment of a key."""
    return _check_name(app_name, "app name")


@dataclass(frozen=True, slots=True)
class StateKey:
    """Where one state lives: app, type and id, and the object key they make."""

    app: str
    type: StateType
    id: str
    object_key: str = field(init=False, repr=False, compare=False)  # built once: every request names it

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_key", f"{type_prefix(self.app, self.type)}{self.id}/{STATE_FILE}")

    def __str__(self) -> str:
        return f"{self.type.value} state {self.id!r}"


def state_key(app: str, type: StateType | str, id: str, *, key_prefix: str = "") -> StateKey:  # noqa: A002
    """Validate all three parts and the length of the object key (after ``key_prefix``) and return the ``StateKey``."""
    skey = StateKey(validate_app_name(app), StateType.coerce(type), validate_id(id))
    check_object_key(skey.object_key, key_prefix)
    return skey


def type_prefix(app: str, type: StateType) -> str:  # noqa: A002
    """The key prefix under which all states of one app and type live (ends with ``/``)."""
    return f"{KEY_ROOT}/{app}/{type.value}/"


def id_from_key(prefix: str, key: str) -> str | None:
    """The id of a state object key listed under ``prefix``, or None for any other object."""
    if not key.startswith(prefix) or not key.endswith("/" + STATE_FILE):
        return None
    candidate = key[len(prefix) : -len(STATE_FILE) - 1]
    try:
        return validate_id(candidate)
    except InvalidInputError as exc:  # written by another tool: not a name statestore reads or writes
        logger.warning("not listing %s: %s", ascii(key), ascii(str(exc)))
        return None


def listed_id(prefix: str, key: str, backend: str) -> str | None:
    """``id_from_key`` for a key ``backend`` listed under ``prefix``; ``ListingOutOfPrefixError`` if it is outside.

    A key outside the prefix asked for means the backend ignored the prefix: the listing is refused,
    not filtered, so that no bulk operation acts on a listing that cannot be trusted.
    """
    if not key.startswith(prefix):
        raise ListingOutOfPrefixError(
            f"{backend} listed a key outside the prefix {prefix!r} asked for: it ignored the prefix, so the "
            "listing cannot be trusted and nothing was done with it",
            prefix=prefix,
        )
    return id_from_key(prefix, key)


def state_path(root: str, app_name: str, id: str, state_type: StateType | str) -> str:  # noqa: A002
    """The local path of a state: ``<root>/persistent-artifacts/apps/<app>/<type>/<id>/config.json``.

    Raises ``PathTraversalError`` for an id or app name that would leave its slot.
    """
    return os.path.join(root, state_key(app_name, state_type, id).object_key)
