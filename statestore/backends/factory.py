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
    raise InvalidInputError(f"backend {settings.backend!r} is not available")
