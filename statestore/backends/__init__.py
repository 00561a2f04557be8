"""Object backends: the protocol, each backend in its own module, and wrappers."""

from __future__ import annotations

from ..errors import ConditionalDeleteUnsupportedError, InjectedFault, PreconditionFailed
from .base import (
    Create,
    NotModified,
    ObjectBackend,
    ObjectMeta,
    ObjectVersion,
    Overwrite,
    PutMode,
    PutResult,
    Update,
    Versioned,
)
from .faults import FaultBackend
from .local import LocalBackend
from .memory import MemoryBackend
from .s3 import S3Backend
from .wrappers import CountingBackend, LatencyBackend, LoggingBackend, WrapperBackend

__all__ = [
    "ConditionalDeleteUnsupportedError",
    "CountingBackend",
    "Create",
    "FaultBackend",
    "InjectedFault",
    "LatencyBackend",
    "LocalBackend",
    "LoggingBackend",
    "MemoryBackend",
    "NotModified",
    "ObjectBackend",
    "ObjectMeta",
    "ObjectVersion",
    "Overwrite",
    "PreconditionFailed",
    "PutMode",
    "PutResult",
    "S3Backend",
    "Update",
    "Versioned",
    "WrapperBackend",
]
