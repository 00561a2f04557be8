"""The S3 backend: one semantics layer (``backend``) over interchangeable transports."""

from __future__ import annotations

from .backend import S3Backend

__all__ = ["S3Backend"]
