"""statestore: workflow state and credential configs as JSON objects in object storage.

Updates are compare-and-swap merges, so concurrent updates are never lost.
"""

from __future__ import annotations

from .backends import (
    CountingBackend,
    FaultBackend,
    LatencyBackend,
    LocalBackend,
    LoggingBackend,
    MemoryBackend,
    ObjectBackend,
    ObjectMeta,
    PutMode,
    PutResult,
    S3Backend,
    Versioned,
    WrapperBackend,
)
from .check import CheckReport, Outcome, Probe, Verdict, check_backend
from .codec import Codec
from .config import Settings
from .crypto import EncryptingCodec, generate_key, key_id
from .errors import (
    AccessDeniedError,
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    ConditionalDeleteUnsupportedError,
    ConflictError,
    CorruptStateError,
    DecryptionError,
    IfMatchRejectedError,
    InjectedFault,
    InvalidInputError,
    InvalidStateTypeError,
    LockTimeoutError,
    MotoUnavailableError,
    PathTraversalError,
    PreconditionFailed,
    S3ClientUnsupportedError,
    SecretPolicyError,
    StateExistsError,
    StateStoreError,
    StateTooLargeError,
    SyncStoreUsageError,
    UnencryptedStateError,
    VersionConflictError,
)
from .facade import StateStore, build_state_store_path, build_store, get_default_store, set_default_store, use_store
from .paths import validate_id
from .retry import RetryPolicy
from .statetype import StateType
from .store import StateInfo, Store, VersionedState

__all__ = [
    "AccessDeniedError",
    "BackendConfigError",
    "BackendError",
    "BackendUnavailableError",
    "CheckReport",
    "Codec",
    "ConditionalDeleteUnsupportedError",
    "ConflictError",
    "CorruptStateError",
    "CountingBackend",
    "DecryptionError",
    "EncryptingCodec",
    "FaultBackend",
    "IfMatchRejectedError",
    "InjectedFault",
    "InvalidInputError",
    "InvalidStateTypeError",
    "LatencyBackend",
    "LocalBackend",
    "LockTimeoutError",
    "LoggingBackend",
    "MemoryBackend",
    "MotoUnavailableError",
    "ObjectBackend",
    "ObjectMeta",
    "Outcome",
    "PathTraversalError",
    "PreconditionFailed",
    "Probe",
    "PutMode",
    "PutResult",
    "RetryPolicy",
    "S3Backend",
    "S3ClientUnsupportedError",
    "SecretPolicyError",
    "Settings",
    "StateExistsError",
    "StateInfo",
    "StateStore",
    "StateStoreError",
    "StateTooLargeError",
    "StateType",
    "Store",
    "SyncStoreUsageError",
    "UnencryptedStateError",
    "Verdict",
    "VersionConflictError",
    "Versioned",
    "VersionedState",
    "WrapperBackend",
    "build_state_store_path",
    "build_store",
    "check_backend",
    "generate_key",
    "get_default_store",
    "key_id",
    "set_default_store",
    "use_store",
    "validate_id",
]
