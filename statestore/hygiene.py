"""Secret hygiene: find raw secret-looking values in a credentials state.

A value is a *raw secret* when it is a non-empty string stored under a key that
names a secret (``password``, ``passwd``, ``secret``, ``token``, ``private_key``,
``api_key``/``apikey``, ``access_key``, ``client_secret``; any case, any
separator or camelCase, anywhere in the key: ``dbPassword``, ``X-Api-Key``,
``refresh_token``) -- unless the key's last word marks it as a *reference* or
metadata (``password_ref``, ``secret_name``, ``access_key_id``, ``token_url``,
``token_type``, ...). The scan is recursive: nested objects and lists are
searched too, and every non-empty string below a secret-looking key counts
(``{"password": {"value": "..."}}``), except under a reference-like key
(``{"password": {"ref": "vault:db"}}``).

Only key names and positions are ever reported, never values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

SECRET_TERMS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",  # also client_secret
    "token",
    "privatekey",
    "apikey",
    "accesskey",
)
"""Secret terms, matched against a key with case and separators removed."""

REFERENCE_WORDS: frozenset[str] = frozenset(
    {
        "ref",
        "refs",
        "reference",
        "name",
        "id",
        "type",
        "path",
        "file",
        "url",
        "uri",
        "arn",
        "env",
        "var",
        "hint",
        "policy",
        "header",
        "expiry",
        "expires",
        "expiration",
        "at",
    }
)
"""A key whose last word is one of these names or points at a secret; it does not hold one."""

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


def _words(key: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub(r"\1 \2", key).lower()) if w]


def is_reference_key(key: str) -> bool:
    """True if the key's last word marks a reference or metadata (``password_ref``, ``secretName``)."""
    words = _words(key)
    return bool(words) and words[-1] in REFERENCE_WORDS


def is_secret_key(key: str) -> bool:
    """True if ``key`` names a secret and is not a reference to one."""
    if is_reference_key(key):
        return False
    flat = "".join(_words(key))
    return any(term in flat for term in SECRET_TERMS)


def find_raw_secrets(state: Mapping[str, Any]) -> list[str]:
    """Paths (``auth.password``, ``tokens[0]``) of raw secret values in ``state``, in document order."""
    found: list[str] = []
    _scan(state, "", False, found)
    return found


def _children(value: Any, path: str) -> Iterator[tuple[str, str | None, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield (f"{path}.{k}" if path else str(k)), str(k), v
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield f"{path}[{i}]", None, v


def _scan(value: Any, path: str, under_secret: bool, found: list[str]) -> None:
    # check_json has already bounded the depth, so plain recursion is safe.
    for child_path, key, child in _children(value, path):
        if key is not None and is_reference_key(key):
            continue
        secret = under_secret or (key is not None and is_secret_key(key))
        if isinstance(child, str):
            if secret and child:
                found.append(child_path)
        else:
            _scan(child, child_path, secret, found)
