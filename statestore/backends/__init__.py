"""Object backends: the protocol, each backend in its own module, and wrappers."""

from __future__ import annotations

from .base import (
    Create,
    ObjectBackend,
    ObjectMeta,
    Overwrite,
    PreconditionFailed,
    PutMode,
    PutResult,
    Update,
    Versioned,
)
from .faults import FaultBackend, InjectedFault
from .local import LocalBackend
from .memory import MemoryBackend
from .s3 import ConditionalDeleteUnsupportedError, S3Backend
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
    "ObjectBackend",
    "ObjectMeta",
    "Overwrite",
    "PreconditionFailed",
    "PutMode",
    "PutResult",
    "S3Backend",
    "Update",
    "Versioned",
    "WrapperBackend",
]
