"""Settings: what the environment (or code) says the default store should be."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer, got {raw!r}") from None


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``), with the ``ATLAN_*`` fallbacks."""
        env = os.environ if environ is None else environ
        backend = (env.get("STATESTORE_BACKEND") or "local").strip().lower()
        if backend not in BACKENDS:
            raise InvalidInputError(f"STATESTORE_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
        return cls(
            backend=backend,
            local_root=_first(env, "STATESTORE_LOCAL_ROOT", "ATLAN_TEMPORARY_PATH") or DEFAULT_LOCAL_ROOT,
            app_name=_first(env, "STATESTORE_APP_NAME", "ATLAN_APPLICATION_NAME") or DEFAULT_APP_NAME,
            max_state_bytes=_int(env, "STATESTORE_MAX_STATE_BYTES", DEFAULT_MAX_STATE_BYTES),
            cache_size=_int(env, "STATESTORE_CACHE_SIZE", 1024),
            bucket=env.get("STATESTORE_BUCKET") or None,
            s3_endpoint_url=env.get("STATESTORE_S3_ENDPOINT_URL") or None,
        )
