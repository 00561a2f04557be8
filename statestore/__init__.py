"""statestore: workflow state and credential configs as JSON objects in object storage.

Updates are compare-and-swap merges, so concurrent updates are never lost. The names here are the API of
everyday use; the rest lives in its own module: every exception in ``statestore.errors``, the backend protocol in
``statestore.backends``, ``statestore.check``, ``statestore.testing`` (fixtures, fault and counting wrappers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import StateStore, build_state_store_path, build_store, set_default_store, use_store
from .backends import LocalBackend, MemoryBackend, ObjectBackend, PutMode, S3Backend
from .codec.record import Fence
from .config import Settings
from .core.store import StateInfo, StateVersion, Store, VersionedState
from .errors import (
    AccessDeniedError,
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    ConflictError,
    CorruptStateError,
    DecryptionError,
    FencedError,
    InvalidInputError,
    PathTraversalError,
    SecretPolicyError,
    StateExistsError,
    StateStoreError,
    StateTooLargeError,
    UnsafeBackendError,
    VersionConflictError,
)
from .keys.statetype import StateType
from .util.retry import RetryPolicy

if TYPE_CHECKING:
    from .sync import SyncStore

__all__ = [
    "AccessDeniedError",
    "BackendConfigError",
    "BackendError",
    "BackendUnavailableError",
    "ConflictError",
    "CorruptStateError",
    "DecryptionError",
    "Fence",
    "FencedError",
    "InvalidInputError",
    "LocalBackend",
    "MemoryBackend",
    "ObjectBackend",
    "PathTraversalError",
    "PutMode",
    "RetryPolicy",
    "S3Backend",
    "SecretPolicyError",
    "Settings",
    "StateExistsError",
    "StateInfo",
    "StateStore",
    "StateStoreError",
    "StateTooLargeError",
    "StateType",
    "StateVersion",
    "Store",
    "SyncStore",
    "UnsafeBackendError",
    "VersionConflictError",
    "VersionedState",
    "build_state_store_path",
    "build_store",
    "set_default_store",
    "use_store",
]


def __getattr__(name: str) -> Any:
    """``SyncStore`` on first use: its module is imported only by code that blocks."""
    if name == "SyncStore":
        from .sync import SyncStore

        return SyncStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
