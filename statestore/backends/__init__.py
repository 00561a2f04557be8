"""Object backends: the protocol (``base``), each backend in its own module, and ``WrapperBackend``."""

from __future__ import annotations

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
from .local import LocalBackend
from .memory import MemoryBackend
from .s3 import S3Backend
from .wrappers import LoggingBackend, WrapperBackend

__all__ = [
    "Create",
    "LocalBackend",
    "LoggingBackend",
    "MemoryBackend",
    "NotModified",
    "ObjectBackend",
    "ObjectMeta",
    "ObjectVersion",
    "Overwrite",
    "PutMode",
    "PutResult",
    "S3Backend",
    "Update",
    "Versioned",
    "WrapperBackend",
]
