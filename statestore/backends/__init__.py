"""Object backends: the protocol, each backend in its own module, and wrappers."""

from __future__ import annotations

from .base import ObjectBackend, PreconditionFailed, Versioned
from .local import LocalBackend
from .memory import MemoryBackend
from .wrappers import CountingBackend, LatencyBackend, WrapperBackend

__all__ = [
    "CountingBackend",
    "LatencyBackend",
    "LocalBackend",
    "MemoryBackend",
    "ObjectBackend",
    "PreconditionFailed",
    "Versioned",
    "WrapperBackend",
]
