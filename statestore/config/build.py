"""From configuration to a store, one way: what ``build_store``, ``Store.from_url`` and the CLI all use."""

from __future__ import annotations

import dataclasses
from typing import TypedDict

from ..backends.base import ObjectBackend
from ..backends.local import LocalBackend
from ..backends.memory import MemoryBackend
from ..backends.s3 import S3Backend
from ..backends.s3.backend import DEFAULT_TRANSIENT_RETRY
from ..codec.crypto import EncryptingCodec
from ..codec.jsonio import Codec
from .settings import Settings


class StoreOptions(TypedDict):
    """The arguments of ``Store(...)`` that ``Settings`` decide."""

    backend: ObjectBackend
    app_name: str
    codec: Codec
    max_state_bytes: int
    cache_size: int
    cache_bytes: int


def store_options(settings: Settings) -> StoreOptions:
    """The backend, codec and limits ``settings`` describe, as ``Store(**store_options(settings))`` takes them."""
    return StoreOptions(
        backend=backend_from_settings(settings),
        app_name=settings.app_name,
        codec=codec_from_settings(settings),
        max_state_bytes=settings.max_state_bytes,
        cache_size=settings.cache_size,
        cache_bytes=settings.cache_bytes,
    )


def codec_from_settings(settings: Settings) -> EncryptingCodec:
    """The codec ``Settings`` describe (keys, ``encrypt_workflows``, ``secret_policy``, ``require_encryption``)."""
    return EncryptingCodec(
        settings.encryption_key,
        settings.encryption_old_keys,
        encrypt_workflows=settings.encrypt_workflows,
        secret_policy=settings.secret_policy,
        require_encryption=settings.require_encryption,
    )


def backend_from_settings(settings: Settings) -> ObjectBackend:
    """The backend ``settings.backend`` names, configured from ``settings``."""
    if settings.backend == "memory":
        return MemoryBackend()
    if settings.backend == "s3":
        assert settings.bucket is not None  # Settings refuses s3 without a bucket
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
            retry=dataclasses.replace(DEFAULT_TRANSIENT_RETRY, attempts=settings.s3_max_attempts),
            client=settings.s3_client,
            verify=settings.s3_verify,
        )
    return LocalBackend(settings.local_root)
