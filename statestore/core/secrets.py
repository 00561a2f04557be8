"""Secret hygiene: the one rule that says which values of a state are secrets.

The secret policy (``find_raw_secrets``, for credentials stored unencrypted)
and the CLI's redaction (``redact``) both use it; ``redact_url`` is the one
way an endpoint or other URL is shown in output, logs and messages.

A key *names a secret* (``is_secret_key``) unless its last word marks it as a
*reference* or metadata (``password_ref``, ``secret_name``, ``credentials_ref``,
``access_key_id``, ``token_url``, ``token_type``, ...). Otherwise it names a
secret when, with case and separators removed (camelCase, ``-``, ``_``,
spaces), it contains one of ``SECRET_TERMS`` (``password``, ``passphrase``,
``secret``, ``token``, ``credential``, ``cookie``, ``privatekey``, ``apikey``,
``sessionkey``, ...), or one of its words is in ``SECRET_WORDS`` (``pwd``,
``bearer``, ``authorization``: whole words only, so ``forward`` is no
``pwd``), or its last word is ``pass``, or it has the word ``key``/``keys``
next to a word of ``KEY_QUALIFIERS`` (``encryption_old_keys``, ``ssh key``)
and not ``public``.

A string *holds a secret* (``is_secret_text``), whatever its key, when it is
a connection string or URL with a password in it (``postgres://user:pass@host/db``,
``redis://:pass@host``, ``mongodb+srv://u:p@cluster``, ``amqp://``, ``https://``,
any scheme) or has a ``password=...`` pair in it (also ``passwd``,
``passphrase``, ``pwd``, ``secret``, ``token``, ``api_key``, with or without
a prefix such as ``access_token=``): libpq, JDBC and ADO.NET connection
strings, query strings.

Values are scanned recursively: every non-empty string below a key that names
a secret counts (``{"password": {"value": "..."}}``), except below a
reference key (``{"password": {"ref": "vault:db"}}``); secret keys and secret
text below a reference key still count. Only key names and positions are
ever reported, never values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

SECRET_TERMS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",  # also client_secret
    "token",  # also session_token, bearer_token
    "credential",  # also credentials, aws_credentials
    "cookie",  # also set_cookie, session_cookie
    "privatekey",
    "apikey",
    "accesskey",
    "sessionkey",
    "encryptionkey",
    "signingkey",
    "masterkey",
)
"""Secret terms, matched anywhere in a key with case and separators removed."""

SECRET_WORDS: frozenset[str] = frozenset({"pwd", "bearer", "authorization"})
"""Secret words, matched only as whole words of a key (``pwd`` but not ``forward``)."""

LAST_WORD_SECRETS: frozenset[str] = frozenset({"pass"})
"""Words that name a secret only as the last word of a key (``db_pass``, not ``pass_rate``)."""

KEY_QUALIFIERS: frozenset[str] = frozenset(
    {
        "private",
        "api",
        "access",
        "session",
        "encryption",
        "decryption",
        "signing",
        "master",
        "hmac",
        "ssh",
        "shared",
        "client",
        "account",
    }
)
"""A key with one of these words and the word ``key`` or ``keys`` names a secret (unless it also says ``public``)."""

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
        "endpoint",
        "provider",
        "format",
        "scheme",
        "domain",
        "source",
        "algorithm",
        "version",
        "mode",
        "store",
    }
)
"""A key whose last word is one of these names or points at a secret, or describes one; it does not hold one."""

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
# scheme://[user]:password@ -- the password is everything up to the last "@" before the path.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:)(?P<secret>[^\s/]+)(?=@)")
# password=... in libpq ("host=h password=p"), JDBC/ADO.NET ("Password=p;") and query strings
# ("?sslmode=require&pwd=p", "?api_key=k", "?access_token=t"); a quoted or braced value is one value.
_PAIR_PASSWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:[A-Za-z0-9]+[_-])*(?:password|passwd|passphrase|pwd|secret|token|api_?key)"
    r"\s*=\s*)(?P<secret>'[^']*'|\"[^\"]*\"|\{[^}]*\}|[^\s;&'\"{]+)",
    re.IGNORECASE,
)


def _words(key: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub(r"\1 \2", key).lower()) if w]


def is_reference_key(key: str) -> bool:
    """True if the key's last word marks a reference or metadata (``password_ref``, ``secretName``)."""
    words = _words(key)
    return bool(words) and words[-1] in REFERENCE_WORDS


def is_secret_key(key: str) -> bool:
    """True if ``key`` names a secret and is not a reference to one."""
    words = _words(key)
    if not words or words[-1] in REFERENCE_WORDS:
        return False
    flat = "".join(words)
    if any(term in flat for term in SECRET_TERMS):
        return True
    if words[-1] in LAST_WORD_SECRETS or not SECRET_WORDS.isdisjoint(words):
        return True
    return ("key" in words or "keys" in words) and not KEY_QUALIFIERS.isdisjoint(words) and "public" not in words


def is_secret_text(text: str) -> bool:
    """True if ``text`` holds a password whatever its key: a URL with ``user:password@``, or ``password=...``."""
    if "=" not in text and "://" not in text:
        return False
    return _URL_PASSWORD.search(text) is not None or _PAIR_PASSWORD.search(text) is not None


def mask_secret_text(text: str) -> str:
    """``text`` with the passwords ``is_secret_text`` finds replaced by ``<redacted>`` (the host stays readable)."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    return _PAIR_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)


def redact_url(url: str) -> str:
    """``url`` for display: its ``user:password@`` part and any ``password=...`` pair replaced by ``<redacted>``.

    The scheme, host, port and path stay readable; a string that does not parse
    as a URL is not shown at all.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" in parts.netloc:
        url = urlunsplit(parts._replace(netloc=REDACTED + "@" + parts.netloc.rsplit("@", 1)[1]))
    return mask_secret_text(url)


def _child_is_secret(key: str | None, under_secret: bool) -> bool:
    """Whether the values below ``key`` are secrets, given whether its parent's were (one rule for both walks)."""
    if key is None:
        return under_secret
    if is_reference_key(key):
        return False
    return under_secret or is_secret_key(key)


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
        secret = _child_is_secret(key, under_secret)
        if isinstance(child, str):
            if child and (secret or is_secret_text(child)):
                found.append(child_path)
        else:
            _scan(child, child_path, secret, found)


def redact(value: Any, under_secret: bool = False) -> Any:
    """A copy of a JSON value with its secrets replaced by ``<redacted>``, for display.

    Below a key that names a secret every non-empty leaf is replaced (numbers
    too: a display hides more than the policy refuses); passwords in
    connection strings are masked wherever they are, so that
    ``postgres://app:<redacted>@db/main`` still shows the host.
    """
    if isinstance(value, Mapping):
        return {k: redact(v, _child_is_secret(str(k), under_secret)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, under_secret) for v in value]
    if under_secret and value is not None and not isinstance(value, bool) and value != "":
        return REDACTED
    if isinstance(value, str) and is_secret_text(value):
        return mask_secret_text(value)
    return value
