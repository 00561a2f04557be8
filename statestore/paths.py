"""Key layout and id validation: every state lives at one key, and an id never leaves its slot.

persistent-artifacts/apps/<app>/<type>/<id>/config.json
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass

from .errors import InvalidInputError, PathTraversalError
from .statetype import StateType

KEY_ROOT = "persistent-artifacts/apps"
STATE_FILE = "config.json"
MAX_NAME_BYTES = 255  # a file name on every common file system; ids are file names locally


def _check_name(value: object, what: str) -> str:
    """Validate one path segment (an id or an app name); raise before any I/O."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if value == "":
        raise InvalidInputError(f"{what} must not be empty")
    if value in (".", ".."):
        raise PathTraversalError(f"{what} {value!r} would leave its directory")
    for ch in value:
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
    return value


def validate_id(id: str) -> str:  # noqa: A002 - the API page names it ``id``
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

    @property
    def object_key(self) -> str:
        return f"{type_prefix(self.app, self.type)}{self.id}/{STATE_FILE}"

    def __str__(self) -> str:
        return f"{self.type.value} state {self.id!r}"


def state_key(app: str, type: StateType | str, id: str) -> StateKey:  # noqa: A002
    """Validate all three parts and return the ``StateKey``."""
    return StateKey(validate_app_name(app), StateType.coerce(type), validate_id(id))


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
    except InvalidInputError:
        return None


def build_state_store_path(
    id: str,  # noqa: A002
    state_type: StateType | str,
    *,
    root: str | None = None,
    app_name: str | None = None,
) -> str:
    """The local path of a state: ``<root>/persistent-artifacts/apps/<app>/<type>/<id>/config.json``.

    ``root`` and ``app_name`` default to the environment (see ``Settings``).
    Raises ``PathTraversalError`` for an id that would leave its slot.
    """
    from .config import Settings

    if root is None or app_name is None:
        settings = Settings.from_env()
        root = settings.local_root if root is None else root
        app_name = settings.app_name if app_name is None else app_name
    return os.path.join(root, state_key(app_name, state_type, id).object_key)
