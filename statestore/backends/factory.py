"""Build the backend that ``Settings`` name; S3 is imported only when asked for."""

from __future__ import annotations

from ..config import Settings
from ..errors import InvalidInputError
from .base import ObjectBackend


def backend_from_settings(settings: Settings) -> ObjectBackend:
    """The backend ``settings.backend`` names, configured from ``settings``."""
    if settings.backend == "local":
        from .local import LocalBackend

        return LocalBackend(settings.local_root)
    if settings.backend == "memory":
        from .memory import MemoryBackend

        return MemoryBackend()
    if settings.backend == "s3":
        if not settings.bucket:
            raise InvalidInputError("STATESTORE_BACKEND=s3 needs a bucket: set STATESTORE_BUCKET")
        from dataclasses import replace

        from .s3 import DEFAULT_TRANSIENT_RETRY, S3Backend

        if settings.s3_max_attempts < 1:
            raise InvalidInputError("STATESTORE_S3_MAX_ATTEMPTS must be at least 1")

        return S3Backend(
            settings.bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
            if_match_form=settings.s3_if_match,
            conditional_delete=settings.s3_conditional_delete,
            retry=replace(DEFAULT_TRANSIENT_RETRY, attempts=settings.s3_max_attempts),
        )
    raise InvalidInputError(f"backend {settings.backend!r} is not available")
