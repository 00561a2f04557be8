"""Settings: what the environment (or code) says the default store should be.

This module is the only one that reads the environment, and ``Settings`` is
the one place that holds the defaults and checks the values: a ``Settings``
that exists is valid (``__post_init__``), however it was made.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends.s3.backend import (
    CONDITIONAL_DELETE_MODES,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TRANSIENT_RETRY,
    IF_MATCH_FORMS,
    S3_CLIENTS,
    SSE_MODES,
)
from ..codec.crypto import DEFAULT_SECRET_POLICY, SECRET_POLICIES, parse_key
from ..errors import InvalidInputError
from ..keys.paths import validate_app_name
from .url import parse_store_url

BACKENDS = ("local", "memory", "s3")
DEFAULT_BACKEND = "local"
DEFAULT_LOCAL_ROOT = "./local/tmp/"
DEFAULT_APP_NAME = "default"
DEFAULT_MAX_STATE_BYTES = 8 * 1024 * 1024
DEFAULT_CACHE_SIZE = 1024
DEFAULT_CACHE_BYTES = 64 * 2**20  # what a store's cache of last-seen states may weigh (STATESTORE_CACHE_BYTES)
DEFAULT_S3_MAX_ATTEMPTS = DEFAULT_TRANSIENT_RETRY.attempts

#: The AWS variables ``statestore config`` shows: the secret ones only as set or not.
AWS_SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_PUBLIC_VARIABLES = ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{name} must be true or false, got {raw!r}")


def _lower(env: Mapping[str, str], name: str, default: str) -> str:
    return (env.get(name) or "").strip().lower() or default


def _auto_bool(env: Mapping[str, str], name: str) -> str:
    """``auto`` (the default), ``true`` or ``false``; also accepts the spellings of ``_bool``."""
    raw = (env.get(name) or "").strip().lower()
    if not raw or raw == "auto":
        return "auto"
    try:
        return "true" if _bool(env, name, False) else "false"
    except InvalidInputError:
        raise InvalidInputError(f"{name} must be auto, true or false, got {raw!r}") from None


def _old_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """``STATESTORE_ENCRYPTION_OLD_KEYS``: comma-separated keys, empty entries skipped."""
    return tuple(part for part in (env.get("STATESTORE_ENCRYPTION_OLD_KEYS") or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Configuration of a store; ``Settings.from_env()`` reads the ``STATESTORE_*`` variables.

    Every field is checked on construction (also through ``dataclasses.replace``);
    errors name the environment variable that sets the field, never a key's value.
    Keys are stored parsed: 32 raw bytes.
    """

    backend: str = DEFAULT_BACKEND
    local_root: str = DEFAULT_LOCAL_ROOT
    app_name: str = DEFAULT_APP_NAME
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    cache_size: int = DEFAULT_CACHE_SIZE
    bucket: str | None = None
    s3_endpoint_url: str | None = None
    # Encryption (see docs/credentials.md). Keys: 32 raw bytes or base64 text; never in repr.
    encryption_key: bytes | str | None = field(default=None, repr=False)
    encryption_old_keys: tuple[bytes | str, ...] = field(default=(), repr=False)
    encrypt_workflows: bool = False
    secret_policy: str = DEFAULT_SECRET_POLICY
    require_encryption: bool = False  # refuse plain-JSON states of encrypted types (after ``reencrypt``)
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    s3_read_timeout: float = DEFAULT_READ_TIMEOUT
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    s3_if_match: str = IF_MATCH_FORMS[0]  # auto | quoted | unquoted: the If-Match form the server honours
    s3_conditional_delete: str = CONDITIONAL_DELETE_MODES[0]  # auto | true | false: DeleteObject honours If-Match
    s3_max_attempts: int = DEFAULT_S3_MAX_ATTEMPTS
    # auto | aioboto3 | boto3 | obstore: auto is boto3 under moto's mock_aws, else aioboto3
    s3_client: str = S3_CLIENTS[0]
    #: Verify before the first write that the server honours conditional writes (STATESTORE_S3_VERIFY).
    s3_verify: bool = True
    cache_bytes: int = DEFAULT_CACHE_BYTES
    otel_ids: bool = False  # put state ids on OpenTelemetry spans (STATESTORE_OTEL_IDS; see docs/telemetry.md)

    def __post_init__(self) -> None:
        self._check_store()
        self._check_encryption()
        self._check_s3()
        self._check_telemetry()

    def _check_store(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"STATESTORE_BACKEND={self.backend!r} is not one of {', '.join(BACKENDS)}")
        validate_app_name(self.app_name)
        if self.max_state_bytes <= 0:
            raise InvalidInputError(f"STATESTORE_MAX_STATE_BYTES must be positive, got {self.max_state_bytes}")
        if self.cache_size < 0:
            raise InvalidInputError(f"STATESTORE_CACHE_SIZE must be 0 or more, got {self.cache_size}")
        if self.cache_bytes < 0:
            raise InvalidInputError(f"STATESTORE_CACHE_BYTES must be 0 or more, got {self.cache_bytes}")

    def _check_encryption(self) -> None:
        """Parse the keys (errors name the variable, never the value) and check the policy."""
        primary = None if self.encryption_key is None else parse_key(self.encryption_key, "STATESTORE_ENCRYPTION_KEY")
        if isinstance(self.encryption_old_keys, (str, bytes)):
            raise InvalidInputError("encryption_old_keys must be a list of keys, not a single key")
        old = tuple(
            parse_key(k, f"STATESTORE_ENCRYPTION_OLD_KEYS entry #{i + 1}")
            for i, k in enumerate(self.encryption_old_keys)
        )
        if old and primary is None:
            raise InvalidInputError("STATESTORE_ENCRYPTION_OLD_KEYS is set but STATESTORE_ENCRYPTION_KEY is not")
        if self.secret_policy not in SECRET_POLICIES:
            raise InvalidInputError(
                f"STATESTORE_SECRET_POLICY={self.secret_policy!r} is not one of {', '.join(SECRET_POLICIES)}"
            )
        if self.require_encryption and primary is None:
            raise InvalidInputError("STATESTORE_REQUIRE_ENCRYPTION is on but STATESTORE_ENCRYPTION_KEY is not set")
        object.__setattr__(self, "encryption_key", primary)
        object.__setattr__(self, "encryption_old_keys", old)

    def _check_s3(self) -> None:
        if self.backend == "s3" and not self.bucket:
            raise InvalidInputError(
                "the s3 backend needs a bucket: set STATESTORE_BUCKET (statestore command: --bucket BUCKET), "
                "or name the store as a URL: STATESTORE_URL or --url s3://BUCKET[/prefix]"
            )
        if self.s3_sse is not None and self.s3_sse not in SSE_MODES:
            raise InvalidInputError(f"STATESTORE_S3_SSE must be {' or '.join(SSE_MODES)}, got {self.s3_sse!r}")
        if self.s3_sse_kms_key_id is not None and self.s3_sse != "aws:kms":
            raise InvalidInputError("STATESTORE_S3_SSE_KMS_KEY_ID needs STATESTORE_S3_SSE=aws:kms")
        for name, value in (
            ("STATESTORE_S3_CONNECT_TIMEOUT", self.s3_connect_timeout),
            ("STATESTORE_S3_READ_TIMEOUT", self.s3_read_timeout),
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        if self.s3_if_match not in IF_MATCH_FORMS:
            raise InvalidInputError(
                f"STATESTORE_S3_IF_MATCH must be one of {', '.join(IF_MATCH_FORMS)}, got {self.s3_if_match!r}"
            )
        if self.s3_conditional_delete not in CONDITIONAL_DELETE_MODES:
            raise InvalidInputError(
                f"STATESTORE_S3_CONDITIONAL_DELETE must be auto, true or false, got {self.s3_conditional_delete!r}"
            )
        if self.s3_max_attempts < 1:
            raise InvalidInputError(f"STATESTORE_S3_MAX_ATTEMPTS must be at least 1, got {self.s3_max_attempts}")
        if self.s3_client not in S3_CLIENTS:
            raise InvalidInputError(
                f"STATESTORE_S3_CLIENT must be one of {', '.join(S3_CLIENTS)}, got {self.s3_client!r}"
            )
        if self.s3_client == "obstore" and self.s3_conditional_delete == "true":
            raise InvalidInputError(
                "STATESTORE_S3_CONDITIONAL_DELETE=true needs If-Match on DeleteObject, which "
                "STATESTORE_S3_CLIENT=obstore cannot send: use STATESTORE_S3_CLIENT=aioboto3"
            )

    def _check_telemetry(self) -> None:
        if not isinstance(self.otel_ids, bool):
            raise InvalidInputError(f"STATESTORE_OTEL_IDS must be true or false, got {self.otel_ids!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``), with the ``ATLAN_*`` fallbacks.

        ``STATESTORE_URL`` (see ``statestore.url``), when set, decides the backend and
        every setting of that backend, whatever ``STATESTORE_BACKEND`` and its
        companions say. ``overrides`` (field names) replace what the environment says
        before the whole is checked, so an option can complete or correct the environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "backend": _lower(env, "STATESTORE_BACKEND", DEFAULT_BACKEND),
            "local_root": _first(env, "STATESTORE_LOCAL_ROOT", "ATLAN_TEMPORARY_PATH") or DEFAULT_LOCAL_ROOT,
            "app_name": _first(env, "STATESTORE_APP_NAME", "ATLAN_APPLICATION_NAME") or DEFAULT_APP_NAME,
            "max_state_bytes": _int(env, "STATESTORE_MAX_STATE_BYTES", DEFAULT_MAX_STATE_BYTES),
            "cache_size": _int(env, "STATESTORE_CACHE_SIZE", DEFAULT_CACHE_SIZE),
            "bucket": env.get("STATESTORE_BUCKET") or None,
            # botocore's own variables too, so every transport (and ``describe``) sees the same endpoint
            "s3_endpoint_url": _first(env, "STATESTORE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            "encryption_key": (env.get("STATESTORE_ENCRYPTION_KEY") or "").strip() or None,
            "encryption_old_keys": _old_keys(env),
            "encrypt_workflows": _bool(env, "STATESTORE_ENCRYPT_WORKFLOWS", False),
            "secret_policy": _lower(env, "STATESTORE_SECRET_POLICY", DEFAULT_SECRET_POLICY),
            "require_encryption": _bool(env, "STATESTORE_REQUIRE_ENCRYPTION", False),
            "s3_region": env.get("STATESTORE_S3_REGION") or None,
            "s3_prefix": env.get("STATESTORE_S3_PREFIX") or "",
            "s3_connect_timeout": _float(env, "STATESTORE_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
            "s3_read_timeout": _float(env, "STATESTORE_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT),
            "s3_sse": env.get("STATESTORE_S3_SSE") or None,
            "s3_sse_kms_key_id": env.get("STATESTORE_S3_SSE_KMS_KEY_ID") or None,
            "s3_if_match": _lower(env, "STATESTORE_S3_IF_MATCH", IF_MATCH_FORMS[0]),
            "s3_conditional_delete": _auto_bool(env, "STATESTORE_S3_CONDITIONAL_DELETE"),
            "s3_max_attempts": _int(env, "STATESTORE_S3_MAX_ATTEMPTS", DEFAULT_S3_MAX_ATTEMPTS),
            "s3_client": _lower(env, "STATESTORE_S3_CLIENT", S3_CLIENTS[0]),
            "s3_verify": _bool(env, "STATESTORE_S3_VERIFY", True),
            "cache_bytes": _int(env, "STATESTORE_CACHE_BYTES", DEFAULT_CACHE_BYTES),
            "otel_ids": otel_ids_from_env(env),
        }
        url = env.get("STATESTORE_URL")
        if url:  # one URL replaces STATESTORE_BACKEND and its companions at once
            values.update(parse_store_url(url).settings_fields())
        return cls(**{**values, **overrides})


def otel_ids_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``STATESTORE_OTEL_IDS``: whether OpenTelemetry spans carry state ids (off: ids may be sensitive)."""
    return _bool(os.environ if environ is None else environ, "STATESTORE_OTEL_IDS", False)


def with_key_from(settings: Settings, variable: str, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with the primary encryption key read from the variable ``variable``.

    For a command that names which variable holds a store's key (``copy --source-key-env``), so a
    key never goes on a command line. The keys ``settings`` had (``STATESTORE_ENCRYPTION_KEY``,
    ``STATESTORE_ENCRYPTION_OLD_KEYS``) stay as old keys: they still decrypt what they sealed and
    never seal anything (see docs/decisions/0041). ``InvalidInputError`` if it is unset, empty or
    not a key; the message names the variable, never the value.
    """
    value = ((os.environ if environ is None else environ).get(variable) or "").strip()
    if not value:
        raise InvalidInputError(f"{variable} is not set: it should hold the encryption key (base64 of 32 bytes)")
    primary = parse_key(value, variable)
    known = (settings.encryption_key, *settings.encryption_old_keys)
    old = tuple(dict.fromkeys(k for k in known if k is not None and k != primary))
    return dataclasses.replace(settings, encryption_key=primary, encryption_old_keys=old)


def requested_backend(environ: Mapping[str, str] | None = None) -> str:
    """The backend name ``STATESTORE_BACKEND`` asks for, as written (for a report when no ``Settings`` can be made)."""
    env = os.environ if environ is None else environ
    return env.get("STATESTORE_BACKEND") or DEFAULT_BACKEND


def aws_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS variables that steer the S3 client (``AWS_*_VARIABLES``) that are set; for display after redaction."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in (*AWS_SECRET_VARIABLES, *AWS_PUBLIC_VARIABLES) if env.get(name)}
