"""Object backends: the protocol, each backend in its own module, and wrappers."""

from __future__ import annotations

from .base import ObjectBackend, PreconditionFailed, Versioned
from .faults import FaultBackend, InjectedFault
from .local import LocalBackend
from .memory import MemoryBackend
from .wrappers import CountingBackend, LatencyBackend, WrapperBackend

__all__ = [
    "CountingBackend",
    "FaultBackend",
    "InjectedFault",
    "LatencyBackend",
    "LocalBackend",
    "MemoryBackend",
    "ObjectBackend",
    "PreconditionFailed",
    "Versioned",
    "WrapperBackend",
]
