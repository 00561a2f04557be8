"""``statestore init``: make the configured backend ready (an S3 bucket, a local root), before ``check``."""

from __future__ import annotations

import asyncio

from ..backends.base import ObjectBackend
from ..backends.local import LocalBackend
from ..backends.s3.backend import S3Backend
from ..backends.wrappers import WrapperBackend
from ..errors import BackendConfigError


async def init_backend(backend: ObjectBackend, *, versioning: bool) -> list[str]:
    """Create what ``backend`` needs and is missing; returns what was done, one line each.

    S3: the bucket (and, with ``versioning``, bucket versioning, which ``history`` and ``restore``
    need). Local: the root directory, mode 0700. Memory and others: nothing to do.
    """
    inner = backend
    while isinstance(inner, WrapperBackend):
        inner = inner.inner
    if isinstance(inner, S3Backend):
        from ..backends.s3.setup import init_bucket

        return await init_bucket(inner, versioning=versioning)
    if versioning:
        raise BackendConfigError(f"{inner.describe()} keeps no versions: --versioning is for S3 buckets")
    if isinstance(inner, LocalBackend):
        root = inner.root
        existed = root.is_dir()
        await asyncio.to_thread(root.mkdir, mode=0o700, parents=True, exist_ok=True)
        return [f"root {str(root)!r} {'exists' if existed else 'created (mode 0700)'}"]
    return [f"{inner.describe()}: nothing to create"]
