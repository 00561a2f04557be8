"""The typed errors of statestore: one base class, one subclass per way a call can fail."""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class of every error raised by statestore."""


class InvalidInputError(StateStoreError, ValueError):
    """An argument is not acceptable: unknown type, bad id or key, value not JSON, too large."""


class PathTraversalError(InvalidInputError):
    """An id would leave its own ``<type>/<id>/`` slot (``..``, ``/``, absolute paths, ...)."""


class InvalidStateTypeError(InvalidInputError):
    """A state type that is neither ``workflows`` nor ``credentials``."""


class StateTooLargeError(InvalidInputError):
    """The encoded state is larger than the store's ``max_state_bytes``."""


class SecretPolicyError(InvalidInputError):
    """A credentials state holds a raw secret-looking value and the store refuses it."""


class ConflictError(StateStoreError):
    """Compare-and-swap retries were exhausted: other writers kept changing the state."""


class CorruptStateError(StateStoreError):
    """The stored bytes are not a JSON object; delete or replace the state to recover."""


class DecryptionError(CorruptStateError):
    """An encrypted state cannot be decrypted: no key, wrong key, tampered or moved object."""


class UnencryptedStateError(CorruptStateError):
    """A state that must be encrypted (``require_encryption``) is stored as plain JSON.

    Like any ``CorruptStateError`` it is never merged into: only ``replace_state``
    and ``delete_state`` write over it.
    """


class BackendError(StateStoreError):
    """The object store failed; the original exception is chained as ``__cause__``."""


class LockTimeoutError(BackendError):
    """A state's lock stayed held by another process or thread longer than the backend's ``lock_timeout``."""


class MotoUnavailableError(StateStoreError, RuntimeError):
    """moto's server cannot be imported: the ``test`` extra (``moto[server]``) is not installed."""


class SyncStoreUsageError(StateStoreError, RuntimeError):
    """A ``statestore.sync.SyncStore`` call that cannot run where it was made.

    From a thread that runs an event loop, a blocking call would stall that loop (and
    deadlock, were the loop the one doing the work): ``await`` the ``Store`` there instead.
    Also raised by a call on a closed ``SyncStore``. Like ``asyncio.run`` refusing the same
    thing, it is a ``RuntimeError``; the arguments were fine, so it is no ``InvalidInputError``.
    """
