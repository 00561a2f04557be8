"""Configuration: ``Settings`` (the only reader of the environment), store URLs, and building a store from them."""

from __future__ import annotations

from .settings import Settings
from .url import parse_store_url

__all__ = ["Settings", "parse_store_url"]
