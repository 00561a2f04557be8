"""The typed errors of statestore, all in this module: one base class, one subclass per way a call can fail.

Other modules (``statestore.backends.base``, ``statestore.backends.s3``,
``statestore.backends.faults``) re-export the ones they raise, so older
imports keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import Versioned


class StateStoreError(Exception):
    """Base class of every error raised by statestore.

    An error raised for one state says which: ``state_id``, ``state_type`` (its
    value, e.g. ``"workflows"``) and ``operation`` (the ``Store`` method, e.g.
    ``"save_state"``); None where not known. Never a credential.
    """

    state_id: str | None = None
    state_type: str | None = None
    operation: str | None = None
    #: Whether the same call may succeed later unchanged (``BackendUnavailableError``).
    retryable: bool = False


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


class PlaintextCopyError(SecretPolicyError):
    """A copy would store in plain JSON states that the source store encrypts; nothing was copied.

    ``copy_states`` raises it before any I/O unless ``allow_plaintext=True``
    (``statestore copy --allow-plaintext``): give the destination a key instead.
    """


class ConflictError(StateStoreError):
    """Compare-and-swap retries were exhausted: other writers kept changing the state."""


class CorruptStateError(StateStoreError):
    """The stored bytes are not a JSON object; delete or replace the state to recover."""


class StoredStateTooLargeError(CorruptStateError):
    """A stored object is larger than a read of this store accepts: refused before its body is read.

    The limit is ``2 * max_state_bytes + 64 KiB`` (room for an encryption envelope and
    per-write metadata), so only an object no write of this store could have made is refused.
    ``key`` is the object's key, ``size`` its size in bytes, ``limit`` the most the read
    took, ``etag`` its ETag where the backend knew it without reading it (else None). Like
    any ``CorruptStateError`` it is never merged into: ``replace_state`` and
    ``delete_state`` write over it; a larger ``max_state_bytes`` reads it. ``what`` names
    it in the message (the store says which state; default: the key).
    """

    def __init__(self, key: str, size: int, limit: int, etag: str | None = None, *, what: str | None = None) -> None:
        super().__init__(
            f"{what or key} is {size} bytes stored, over the {limit} bytes a read of this store takes; nothing of "
            "it was read: replace or delete the state, or raise max_state_bytes (STATESTORE_MAX_STATE_BYTES)"
        )
        self.key, self.size, self.limit, self.etag, self.what = key, size, limit, etag, what

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_too_large, (self.key, self.size, self.limit, self.etag, self.what)


def _rebuild_too_large(key: str, size: int, limit: int, etag: str | None, what: str | None) -> StoredStateTooLargeError:
    return StoredStateTooLargeError(key, size, limit, etag, what=what)


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


class SyncStoreUsageError(StateStoreError, RuntimeError):
    """A ``statestore.sync.SyncStore`` call that cannot run where it was made.

    From a thread that runs an event loop, a blocking call would stall that loop (and
    deadlock, were the loop the one doing the work): ``await`` the ``Store`` there instead.
    Also raised by a call on a closed ``SyncStore``. Like ``asyncio.run`` refusing the same
    thing, it is a ``RuntimeError``; the arguments were fine, so it is no ``InvalidInputError``.
    """


class IfMatchRejectedError(BackendError):
    """The server rejected If-Match holding the object's current ETag: not contention, a server quirk.

    The object had not changed, so retrying cannot help; the message names the
    forms tried and ``STATESTORE_S3_IF_MATCH``. Nothing was written.
    """


class ConditionalDeleteUnsupportedError(StateStoreError, NotImplementedError):
    """``delete(if_match=...)`` where the server does not honour If-Match on DeleteObject: ignores it (MinIO, Ceph
    RGW) or answers 501 NotImplemented (LocalStack).

    Raised instead of deleting unconditionally, which would claim a guarantee
    the server does not give. Nothing is deleted.
    """


class PreconditionFailed(StateStoreError):
    """A conditional put or delete found another version than the one it expected.

    Whatever the backend said (S3 412, S3 409 ConditionalRequestConflict, S3 404
    on If-Match of a missing key, a local mismatch) it is this one type.
    ``Store`` turns it into a retry; users never see it. When the backend could
    see the current object at no extra cost it passes it as ``current``
    (``None`` meaning "missing") and sets ``current_known``.
    """

    def __init__(self, key: str, *, current: Versioned | None = None, current_known: bool = False) -> None:
        super().__init__(f"precondition failed for object {key!r}")
        self.key = key
        self.current = current
        self.current_known = current_known


class VersionConflictError(StateStoreError):
    """A change made with ``if_version=`` found another version stored: nothing was changed.

    Never retried, since the caller asked for that version. ``current_version`` is the
    version stored now (None: the state does not exist); read it again with
    ``get_versioned_state`` and decide.
    """

    def __init__(self, message: str, *, current_version: str | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class FencedError(StateStoreError):
    """A write carried a fence that no longer holds: a newer fence was acquired for the state, or it was deleted.

    Nothing was written. Not retryable: another writer (a newer attempt of the same work) owns the state now, so
    the holder of the stale fence should stop. ``stored_epoch`` is the epoch stored (None: the state is missing or
    unreadable) and ``epoch`` the stale fence's.
    """

    def __init__(self, message: str, *, epoch: int, stored_epoch: int | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.stored_epoch = stored_epoch


class StateExistsError(VersionConflictError):
    """``create_state`` found the state already stored: nothing was changed (``current_version`` is its version)."""


class ListingOutOfPrefixError(BackendError):
    """A listing answered a key outside the prefix asked for: the server (or a proxy before it) ignored the prefix.

    Nothing is done with such a listing: no state is listed, pruned, copied, re-encrypted or shown in a
    history, since acting on it could touch objects that are not this store's. Retrying does not help;
    ``statestore check`` reports such a server as unsafe. ``prefix`` is the prefix that was asked for.
    """

    def __init__(self, message: str, *, prefix: str = "") -> None:
        super().__init__(message)
        self.prefix = prefix


class BackendUnavailableError(BackendError):
    """The object store could not be reached or answered with a failure of its own, and retries ran out.

    Network errors, timeouts, HTTP 5xx and throttling: the same call may
    succeed later, so ``retryable`` is True.
    """

    retryable = True


class EndpointUnreachableError(BackendUnavailableError):
    """Nothing answered at the endpoint (connection refused, host not found): is the server running there?

    A ``BackendUnavailableError`` (the same call may succeed once the server is up), named
    apart so that the message asks whether the endpoint is right rather than "try again later".
    """


class AccessDeniedError(BackendError):
    """The object store refused the request: HTTP 401/403, bad, expired or missing credentials, a denied path.

    Retrying does not help; fix the credentials or the permissions.
    """


class CredentialsNotFoundError(AccessDeniedError):
    """No credentials were found where the AWS chain looks for them, so nothing was sent; the message says where."""


class BackendConfigError(BackendError):
    """The backend is configured wrongly: a missing bucket, a bad endpoint, a local root that is a file.

    Retrying does not help; fix the configuration.
    """


class VersionsUnsupportedError(BackendConfigError):
    """The backend keeps no earlier versions of a state, so there is no history to show or restore from.

    S3 keeps them once the bucket has versioning enabled (``aws s3api put-bucket-versioning
    --bucket BUCKET --versioning-configuration Status=Enabled``); the local and memory
    backends never do. Nothing was read or written.
    """


class VersionNotFoundError(InvalidInputError, LookupError):
    """A version asked for is not in the state's history, or is a deletion (it has no content): nothing changed."""


class S3ClientUnsupportedError(BackendConfigError, NotImplementedError):
    """The S3 transport in use cannot make this call (obstore: conditional or versioned delete, version listing).

    Raised before any request, instead of a weaker call that would drop a
    guarantee. Use the aioboto3 transport (``STATESTORE_S3_CLIENT=aioboto3``).
    """


class UnsafeBackendError(BackendConfigError):
    """The S3 server does not honour the conditional requests compare-and-swap relies on: nothing is written.

    Found by the verification that precedes a backend's first write (probes on scratch
    objects under ``.statestore-probe/``, removed afterwards); the message names what the
    server ignored. Reads still work. ``statestore check`` tells more and exits 4, as the
    CLI does for this error. ``STATESTORE_S3_VERIFY=false`` turns the verification off (at
    the risk of silently lost updates: docs/s3-and-minio.md).
    """
