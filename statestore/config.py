"""Settings: what the environment (or code) says the default store should be."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError

BACKENDS = ("local", "memory", "s3")
DEFAULT_LOCAL_ROOT = "./local/tmp/"
DEFAULT_APP_NAME = "default"
DEFAULT_MAX_STATE_BYTES = 8 * 1024 * 1024


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _encryption_keys(env: Mapping[str, str]) -> tuple[bytes | None, tuple[bytes, ...]]:
    """The primary and old keys; an error names the variable, never the value."""
    from .crypto import parse_key

    raw = (env.get("STATESTORE_ENCRYPTION_KEY") or "").strip()
    primary = parse_key(raw, "STATESTORE_ENCRYPTION_KEY") if raw else None
    old = tuple(
        parse_key(part, f"STATESTORE_ENCRYPTION_OLD_KEYS entry #{i + 1}")
        for i, part in enumerate(p for p in (env.get("STATESTORE_ENCRYPTION_OLD_KEYS") or "").split(",") if p.strip())
    )
    if old and primary is None:
        raise InvalidInputError("STATESTORE_ENCRYPTION_OLD_KEYS is set but STATESTORE_ENCRYPTION_KEY is not")
    return primary, old


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
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise InvalidInputError(f"{name} must be positive, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default)."""
    raw = (env.get(name) or "").strip().lower() or choices[0]
    if raw not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _auto_bool(env: Mapping[str, str], name: str) -> str:
    """``auto`` (the default), ``true`` or ``false``."""
    raw = (env.get(name) or "").strip().lower()
    if not raw or raw == "auto":
        return "auto"
    try:
        return "true" if _bool(env, name, False) else "false"
    except InvalidInputError:
        raise InvalidInputError(f"{name} must be auto, true or false, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Configuration of a store; ``Settings.from_env()`` reads the ``STATESTORE_*`` variables."""

    backend: str = "local"
    local_root: str = DEFAULT_LOCAL_ROOT
    app_name: str = DEFAULT_APP_NAME
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    cache_size: int = 1024
    bucket: str | None = None
    s3_endpoint_url: str | None = None
    # Encryption (see docs/credentials.md). Keys: 32 raw bytes or base64 text; never in repr.
    encryption_key: bytes | str | None = field(default=None, repr=False)
    encryption_old_keys: tuple[bytes | str, ...] = field(default=(), repr=False)
    encrypt_workflows: bool = False
    secret_policy: str = "refuse"
    require_encryption: bool = False  # refuse plain-JSON states of encrypted types (after ``reencrypt``)
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 30.0
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    s3_if_match: str = "auto"  # auto | quoted | unquoted: the If-Match form the server honours
    s3_conditional_delete: str = "auto"  # auto | true | false: whether DeleteObject honours If-Match
    s3_max_attempts: int = 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``), with the ``ATLAN_*`` fallbacks."""
        env = os.environ if environ is None else environ
        encryption_key, encryption_old_keys = _encryption_keys(env)
        secret_policy = (env.get("STATESTORE_SECRET_POLICY") or "refuse").strip().lower()
        if secret_policy not in ("refuse", "allow"):
            raise InvalidInputError(f"STATESTORE_SECRET_POLICY={secret_policy!r} is not one of refuse, allow")
        backend = (env.get("STATESTORE_BACKEND") or "local").strip().lower()
        if backend not in BACKENDS:
            raise InvalidInputError(f"STATESTORE_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
        require_encryption = _bool(env, "STATESTORE_REQUIRE_ENCRYPTION", False)
        if require_encryption and encryption_key is None:
            raise InvalidInputError("STATESTORE_REQUIRE_ENCRYPTION is on but STATESTORE_ENCRYPTION_KEY is not set")
        return cls(
            backend=backend,
            local_root=_first(env, "STATESTORE_LOCAL_ROOT", "ATLAN_TEMPORARY_PATH") or DEFAULT_LOCAL_ROOT,
            app_name=_first(env, "STATESTORE_APP_NAME", "ATLAN_APPLICATION_NAME") or DEFAULT_APP_NAME,
            max_state_bytes=_int(env, "STATESTORE_MAX_STATE_BYTES", DEFAULT_MAX_STATE_BYTES),
            cache_size=_int(env, "STATESTORE_CACHE_SIZE", 1024),
            bucket=env.get("STATESTORE_BUCKET") or None,
            s3_endpoint_url=env.get("STATESTORE_S3_ENDPOINT_URL") or None,
            encryption_key=encryption_key,
            encryption_old_keys=encryption_old_keys,
            encrypt_workflows=_bool(env, "STATESTORE_ENCRYPT_WORKFLOWS", False),
            secret_policy=secret_policy,
            require_encryption=require_encryption,
            **_s3_settings(env),
        )


def _s3_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``STATESTORE_S3_*`` settings beyond the endpoint (region and credentials otherwise follow the AWS chain)."""
    sse = env.get("STATESTORE_S3_SSE") or None
    if sse is not None and sse not in ("AES256", "aws:kms"):
        raise InvalidInputError(f"STATESTORE_S3_SSE must be AES256 or aws:kms, got {sse!r}")
    kms_key = env.get("STATESTORE_S3_SSE_KMS_KEY_ID") or None
    if kms_key is not None and sse != "aws:kms":
        raise InvalidInputError("STATESTORE_S3_SSE_KMS_KEY_ID needs STATESTORE_S3_SSE=aws:kms")
    return {
        "s3_region": env.get("STATESTORE_S3_REGION") or None,
        "s3_prefix": env.get("STATESTORE_S3_PREFIX") or "",
        "s3_connect_timeout": _float(env, "STATESTORE_S3_CONNECT_TIMEOUT", 5.0),
        "s3_read_timeout": _float(env, "STATESTORE_S3_READ_TIMEOUT", 30.0),
        "s3_sse": sse,
        "s3_sse_kms_key_id": kms_key,
        "s3_if_match": _choice(env, "STATESTORE_S3_IF_MATCH", ("auto", "quoted", "unquoted")),
        "s3_conditional_delete": _auto_bool(env, "STATESTORE_S3_CONDITIONAL_DELETE"),
        "s3_max_attempts": _int(env, "STATESTORE_S3_MAX_ATTEMPTS", 4),
    }
