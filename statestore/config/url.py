"""One URL names a store's backend: ``parse_store_url`` turns it into the settings it implies.

- ``file:///abs/path`` (or ``file://localhost/abs/path``): a local directory by absolute path;
  ``file:relative/path``: relative to the working directory. Percent-escapes are decoded.
- ``memory://``: an in-process store (tests, notebooks).
- ``s3://bucket[/prefix][?endpoint_url=...&region=...&verify=false]``: an S3 bucket (AWS, MinIO, Ceph RGW, moto);
  credentials come from the AWS chain (environment, profile, instance role), never from the URL.

Anything else -- another scheme, an unknown or repeated parameter, a missing bucket, a user name or
password in the URL, a control or format character (C0, DEL, C1, bidi controls, line separators)
in any part once percent-decoded -- is an ``InvalidInputError`` naming the part at fault. Messages
never repeat a user-info part, a bucket that is not a bucket name, or any parameter's value (a bare
``?word`` counts as a value; only the names of ``name=value`` parameters are shown), so a secret
pasted into a URL does not reach a log or a terminal.
This module only parses (stdlib and ``errors``), so the configuration layer can use it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from ..errors import InvalidInputError

__all__ = ["S3_PARAMETERS", "SCHEMES", "StoreURL", "parse_store_url"]

BackendKind = Literal["local", "memory", "s3"]

#: The schemes ``parse_store_url`` accepts.
SCHEMES = ("file", "memory", "s3")
#: The query parameters an ``s3://`` URL may carry.
S3_PARAMETERS = ("endpoint_url", "region", "verify")

# What any S3-compatible server accepts in a bucket name (AWS's own rules are stricter: lowercase, 3-63).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class StoreURL:
    """What a store URL says: the backend ``kind`` and the settings it implies (None: not said)."""

    kind: BackendKind
    local_root: str | None = None  # local
    bucket: str | None = None  # s3
    prefix: str = ""  # s3: key prefix inside the bucket, without slashes at either end
    endpoint_url: str | None = None  # s3: another server than AWS
    region: str | None = None  # s3
    verify: bool | None = None  # s3: verify conditional writes before the first one (None: as the settings say)

    def settings_fields(self) -> dict[str, Any]:
        """The ``Settings`` fields this URL decides: ``backend`` and every setting of that backend.

        Every one of them, None where the URL is silent: a URL replaces ``STATESTORE_BACKEND`` and
        its companions at once, so a companion left in the environment cannot mix into it.
        Use: ``dataclasses.replace(settings, **parsed.settings_fields())``.
        """
        if self.kind == "local":
            return {"backend": "local", "local_root": self.local_root}
        if self.kind == "memory":
            return {"backend": "memory"}
        return {
            "backend": "s3",
            "bucket": self.bucket,
            "s3_prefix": self.prefix,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": self.region,
        } | ({} if self.verify is None else {"s3_verify": self.verify})


def parse_store_url(url: str) -> StoreURL:
    """Parse a store URL (see the module docstring) or raise ``InvalidInputError`` naming what is wrong."""
    if not isinstance(url, str):
        raise InvalidInputError(f"a store URL must be a string, not {url.__class__.__name__}")
    text = url.strip()
    if not text:
        raise InvalidInputError("the store URL is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidInputError("the store URL contains a control character")
    scheme, sep, _ = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise InvalidInputError(f"a store URL starts with a scheme: one of {', '.join(s + ':' for s in SCHEMES)}")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInputError(f"unknown store URL scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    try:
        parts = urlsplit(text, allow_fragments=True)
    except ValueError:
        raise InvalidInputError(f"the {scheme}: store URL is malformed") from None
    if "@" in parts.netloc:
        raise InvalidInputError(
            f"the {scheme}: store URL has a user name or password in it; that is refused (and not repeated here): "
            "give credentials through the environment or an AWS profile"
        )
    if parts.fragment or text.endswith("#"):
        raise InvalidInputError(f"a {scheme}: store URL takes no #fragment")
    if scheme == "file":
        _no_query(parts.query, scheme)
        return StoreURL("local", local_root=_local_root(parts.netloc, parts.path))
    if scheme == "memory":
        _no_query(parts.query, scheme)
        if parts.netloc or parts.path:
            raise InvalidInputError("a memory: store URL is just memory:// (no name or path)")
        return StoreURL("memory")
    return _s3(parts.netloc, parts.path, parts.query)


def _has_controls(text: str) -> bool:
    """Whether ``text`` has a control or format character: C0, DEL, C1, bidi and other Cf, line separators."""
    return not text.isprintable() and any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def _refuse_controls(text: str, what: str) -> str:
    """``text`` (already percent-decoded) if it has no control or format character; the message shows none of it."""
    if _has_controls(text):
        raise InvalidInputError(f"{what} contains a control or format character (after percent-decoding)")
    return text


def _shown_names(pairs: list[tuple[str, str]], bare: bool) -> str:
    """The names of unknown ``name=value`` parameters, for a message; a bare ``?word`` may be a secret: not shown."""
    shown = ", ".join(repr(name) for name in sorted({name for name, _ in pairs}))
    if bare:
        shown += (" and " if shown else "") + "a bare word (not repeated here)"
    return shown


def _no_query(query: str, scheme: str) -> None:
    if query:
        pieces = [piece.partition("=") for piece in query.split("&") if piece]
        named = [(name, value) for name, sep, value in pieces if sep]
        bare = any(not sep for _, sep, _ in pieces) or not pieces
        shown = _shown_names([(_refuse_controls(unquote_plus(n), f"a {scheme}: store URL"), v) for n, v in named], bare)
        raise InvalidInputError(f"unknown {scheme}: store URL parameter(s) {shown}: it takes none")


def _local_root(host: str, path: str) -> str:
    if host and host.lower() != "localhost":
        raise InvalidInputError(
            f"a file: store URL names no host (got {host!r}): use file:///absolute/path or file:relative/path"
        )
    root = _refuse_controls(_unquote(path, "the directory of a file: store URL"), "the directory of a file: store URL")
    if not root:
        raise InvalidInputError("a file: store URL needs a directory: file:///absolute/path or file:relative/path")
    return root


def _unquote(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} has percent-escapes that are not UTF-8") from None


def _s3(netloc: str, path: str, query: str) -> StoreURL:
    if not netloc:
        raise InvalidInputError("an s3: store URL needs a bucket: s3://bucket[/prefix]")
    if ":" in netloc:
        raise InvalidInputError(
            "an s3: store URL names a bucket, not a server (no :port): give the server as ?endpoint_url=..."
        )
    if not _BUCKET.fullmatch(netloc):  # not repeated: it may be a mangled secret (percent-escaped user info)
        raise InvalidInputError(
            "the bucket of an s3: store URL is not a bucket name: letters, digits, '.', '-' and '_' only, "
            "starting with a letter or digit, at most 255 characters"
        )
    prefix = _refuse_controls(_unquote(path, "the prefix of an s3: store URL"), "the prefix of an s3: store URL")
    prefix = prefix.strip("/")
    if any(segment in ("", ".", "..") for segment in prefix.split("/")) and prefix:
        raise InvalidInputError(f"the prefix {prefix!r} of an s3: store URL has an empty, '.' or '..' segment")
    params = _s3_parameters(query)
    return StoreURL(
        "s3",
        bucket=netloc,
        prefix=prefix,
        endpoint_url=_endpoint(params["endpoint_url"]) if "endpoint_url" in params else None,
        region=_region(params["region"]) if "region" in params else None,
        verify=_verify(params["verify"]) if "verify" in params else None,
    )


def _s3_parameters(query: str) -> dict[str, str]:
    if not query:
        return {}
    pairs: list[tuple[str, str]] = []
    bare: list[str] = []  # unknown names given without "=": shown as "a bare word", never repeated
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        try:
            name, value = unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            name = ""
        if not name:
            raise InvalidInputError(
                f"the query of an s3: store URL is malformed: expected {'&'.join(p + '=...' for p in S3_PARAMETERS)}"
            )
        _refuse_controls(name, "a parameter name of an s3: store URL")
        _refuse_controls(value, f"the value of the s3: store URL parameter {_name(name)}")
        if not sep and name not in S3_PARAMETERS:
            bare.append(name)
        else:
            pairs.append((name, value))
    unknown = [(name, value) for name, value in pairs if name not in S3_PARAMETERS]
    if unknown or bare:
        raise InvalidInputError(
            f"unknown s3: store URL parameter(s) {_shown_names(unknown, bool(bare))}: "
            f"expected {', '.join(S3_PARAMETERS)} (credentials come from the AWS chain, never the URL)"
        )
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidInputError(f"the s3: store URL parameter {name} is given twice")
        if not value.strip():
            raise InvalidInputError(f"the s3: store URL parameter {name} is empty")
        params[name] = value.strip()
    return params


def _name(name: str) -> str:
    """A parameter's name for a message: a known one as it is, any other not at all (it may be a secret)."""
    return name if name in S3_PARAMETERS else "(unknown)"


def _endpoint(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidInputError("endpoint_url of an s3: store URL is not a URL") from None
    if "@" in parts.netloc:
        raise InvalidInputError(
            "endpoint_url of an s3: store URL has a user name or password in it; that is refused (and not "
            "repeated here): give credentials through the environment or an AWS profile"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:  # the value is not repeated: it may be a secret
        raise InvalidInputError("endpoint_url of an s3: store URL must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise InvalidInputError("endpoint_url of an s3: store URL must not have a query or fragment")
    return value


def _verify(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError("verify of an s3: store URL must be true or false")


def _region(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise InvalidInputError(  # the value is not repeated: it may be a secret pasted in the wrong place
            "region of an s3: store URL is not a region name: lowercase letters, digits and '-', e.g. us-east-1"
        )
    return value
