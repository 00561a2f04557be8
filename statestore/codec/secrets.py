"""Secret hygiene: the one rule that says which values of a state are secrets.

The secret policy (``find_raw_secrets``, for credentials stored unencrypted)
and the CLI's redaction (``redact``) both use it; ``redact_url`` is the one
way an endpoint or other URL is shown in output, logs and messages.

A key *names a secret* (``is_secret_key``) unless its last word marks it as a
*reference* or metadata (``password_ref``, ``secret_name``, ``credentials_ref``,
``access_key_id``, ``token_url``, ``token_type``, ``SharedAccessKeyName``, ...).
Otherwise it names a secret when, with case and separators removed (camelCase,
``-``, ``_``, ``.``, spaces), it contains one of ``SECRET_TERMS`` (``password``,
``passphrase``, ``passcode``, ``secret``, ``token``, ``credential``,
``cookie``, ``privatekey``, ``apikey``, ``accesskey``, ``sessionkey``, ...),
or one of its words is in ``SECRET_WORDS`` (``pwd``, ``bearer``,
``authorization``, ``sig``: whole words only, so ``forward`` is no ``pwd``),
or its last word is in ``LAST_WORD_SECRETS`` (``pass``, ``jwt``, ``private``:
``db_pass``, ``id_jwt``, ``ssh_private``, but not ``pass_rate``,
``jwt_issuer``, ``private_ip``), or it has a word of ``SECRET_NOUNS``
(``key``, ``keys``, ``seed``) next to a word of ``KEY_QUALIFIERS``
(``encryption_old_keys``, ``ssh key``, ``AccountKey``, ``otp_seed``) and not
``public``.

A string *holds a secret* (``is_secret_text``), whatever its key, when it has

- a URL with a password in it (``postgres://user:pass@host/db``,
  ``redis://:pass@host``, ``mongodb+srv://u:p@cluster``, any scheme), the
  password running to the last ``@`` and free to hold ``/`` or ``@``
  (``postgres://app:ab/cd@db``); a port before a path (``https://h:8080/@me``)
  is no password;
- a ``name=value`` pair whose name names a secret by the key rule above:
  libpq (``host=db password=p``), JDBC and ADO.NET/ODBC (``Password=p;``,
  ``PWD={p}``), Azure connection strings (``AccountKey=``,
  ``SharedAccessKey=``, ``SharedAccessSignature=``), AWS credentials files
  (``aws_secret_access_key = ...``), ``.properties`` and ``.env`` lines,
  query strings (``?api_key=k``, ``&sig=s``); a quoted or braced value is one
  value, an empty one is none;
- a PEM private key (``-----BEGIN ... PRIVATE KEY-----``) or a JSON Web Token
  (``eyJ...`` ``.`` ``eyJ...`` ``.`` signature).

Deliberately left out, to keep ordinary data ordinary: ``name: value`` pairs
(YAML, HTTP headers) and free text (``the password is hunter2``), bare
high-entropy strings and provider key formats (an ``AKIA...`` access key id
is an id), and public material (``PUBLIC KEY`` and ``CERTIFICATE`` blocks).
Store such values under a secret-named key, or encrypted.

Values are scanned recursively: every non-empty string below a key that names
a secret counts (``{"password": {"value": "..."}}``), except below a
reference key (``{"password": {"ref": "vault:db"}}``); secret keys and secret
text below a reference key still count. Only key names and positions are
ever reported, never values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

SECRET_TERMS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
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
    "sharedaccesssignature",  # Azure SAS
)
"""Secret terms, matched anywhere in a key with case and separators removed."""

SECRET_WORDS: frozenset[str] = frozenset({"pwd", "bearer", "authorization", "sig"})
"""Secret words, matched only as whole words of a key (``pwd`` but not ``forward``; ``sig`` of a SAS URL)."""

LAST_WORD_SECRETS: frozenset[str] = frozenset({"pass", "jwt", "private"})
"""Words that name a secret only as the last word of a key (``db_pass``, ``id_jwt``, ``ssh_private``;
not ``pass_rate``, ``jwt_issuer``, ``private_ip``)."""

SECRET_NOUNS: frozenset[str] = frozenset({"key", "keys", "seed"})
"""Words that name a secret next to a word of ``KEY_QUALIFIERS`` (``ssh_key``, ``otp_seed``; not ``random_seed``)."""

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
        "otp",
        "totp",
        "hotp",
        "mfa",
    }
)
"""A key with one of these words and a word of ``SECRET_NOUNS`` names a secret (unless it also says ``public``)."""

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
# scheme://[user]:password@ -- the password runs to the last "@" of the word ("/" and "@" allowed in it),
# but a port before a path ("host:8080/@me") is none; "[" keeps IPv6 literals out of the user part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:\[\]]*:)(?!\d*[/?#])(?P<secret>\S+)(?=@)")
# name=value pairs in libpq ("host=h password=p"), JDBC/ADO.NET ("Password=p;"), Azure ("AccountKey=k;"),
# AWS credentials files ("aws_secret_access_key = k"), query strings ("&sig=s"); the name is judged by
# is_secret_key. A quoted or braced value is one value.
_PAIR = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*)"
    r"(?P<secret>'[^']+'|\"[^\"]+\"|\{[^}]+\}|[^\s;&'\"{]+)"
)
# PEM private keys (not PUBLIC KEY or CERTIFICATE blocks): the body up to the END line.
_PEM_PRIVATE = re.compile(
    r"(?P<head>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)(?P<secret>.+?)(?=-----END |\Z)", re.DOTALL
)
# A JSON Web Token: base64url header and payload (both JSON objects, so both start with "eyJ"), signature.
_JWT = re.compile(r"(?P<head>)(?<![A-Za-z0-9_\-])(?P<secret>eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)")
_TEXT_MARKERS = ("=", "://", "PRIVATE KEY", "eyJ")


def _words(key: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub(r"\1 \2", key).lower()) if w]


@functools.lru_cache(maxsize=4096)
def _classify(key: str) -> tuple[bool, bool]:
    """(is a reference, names a secret) of one key; cached, since a state repeats its keys in every record."""
    words = _words(key)
    if not words or words[-1] in REFERENCE_WORDS:
        return bool(words), False
    flat = "".join(words)
    if any(term in flat for term in SECRET_TERMS):
        return False, True
    if words[-1] in LAST_WORD_SECRETS or not SECRET_WORDS.isdisjoint(words):
        return False, True
    return False, not SECRET_NOUNS.isdisjoint(words) and not KEY_QUALIFIERS.isdisjoint(words) and "public" not in words


def is_reference_key(key: str) -> bool:
    """True if the key's last word marks a reference or metadata (``password_ref``, ``secretName``)."""
    return _classify(key)[0]


def is_secret_key(key: str) -> bool:
    """True if ``key`` names a secret and is not a reference to one."""
    return _classify(key)[1]


def _secret_spans(text: str) -> Iterator[re.Match[str]]:
    """The matches of ``text`` whose ``secret`` group is a secret (each pattern's own, in order)."""
    yield from _URL_PASSWORD.finditer(text)
    yield from (m for m in _PAIR.finditer(text) if is_secret_key(m["name"]))
    yield from _PEM_PRIVATE.finditer(text)
    yield from _JWT.finditer(text)


def is_secret_text(text: str) -> bool:
    """True if ``text`` holds a secret whatever its key: see the module docstring (URLs, pairs, PEM keys, JWTs)."""
    if not any(marker in text for marker in _TEXT_MARKERS):
        return False
    return next(_secret_spans(text), None) is not None


def mask_secret_text(text: str) -> str:
    """``text`` with the secrets ``is_secret_text`` finds replaced by ``<redacted>`` (a URL's host stays readable)."""
    if not any(marker in text for marker in _TEXT_MARKERS):
        return text
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _PAIR.sub(lambda m: m["head"] + REDACTED if is_secret_key(m["name"]) else m[0], text)
    text = _PEM_PRIVATE.sub(lambda m: m["head"] + REDACTED, text)
    return _JWT.sub(REDACTED, text)


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
    reference, secret = _classify(key)
    return not reference and (under_secret or secret)


def find_raw_secrets(state: Mapping[str, Any]) -> list[str]:
    """Paths (``auth.password``, ``tokens[0]``) of raw secret values in ``state``, in document order."""
    found: list[str] = []
    _scan(state, None, False, found)
    return found


# Where a value is: (parent, key or index), None at the top; made into a path only for a value found.
_Where = tuple[Any, "str | int"] | None


def _path(where: _Where) -> str:
    steps: list[str | int] = []
    while where is not None:
        where, step = where
        steps.append(step)
    out: list[str] = []
    for step in reversed(steps):
        out.append(f"[{step}]" if isinstance(step, int) else f".{step}" if out else step)
    return "".join(out)


def _scan(value: Any, where: _Where, under_secret: bool, found: list[str]) -> None:
    # check_json has already bounded the depth, so plain recursion is safe.
    children: Iterable[tuple[str | int, Any]]
    if isinstance(value, Mapping):
        children = ((str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        children = enumerate(value)
    else:
        return
    for step, child in children:
        secret = _child_is_secret(step, under_secret) if isinstance(step, str) else under_secret
        if isinstance(child, str):
            if child and (secret or is_secret_text(child)):
                found.append(_path((where, step)))
        elif isinstance(child, (Mapping, list, tuple)):
            _scan(child, (where, step), secret, found)


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
