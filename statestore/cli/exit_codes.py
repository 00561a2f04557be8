"""Exit codes of the ``statestore`` command, and the one-line message and code of each kind of failure."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..check import Verdict
from ..errors import (
    AccessDeniedError,
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    ConflictError,
    CorruptStateError,
    CredentialsNotFoundError,
    DecryptionError,
    EndpointUnreachableError,
    InvalidInputError,
    StateStoreError,
    UnsafeBackendError,
    VersionConflictError,
    VersionNotFoundError,
    VersionsUnsupportedError,
)

EXIT_OK = 0
EXIT_FAILED = 1  # the backend failed, retries ran out, or anything unexpected
EXIT_INVALID = 2  # usage errors and every InvalidInputError
EXIT_CORRUPT = 3  # CorruptStateError, including DecryptionError
EXIT_UNSAFE = 4  # ``check``, and UnsafeBackendError: the backend would lose concurrent updates
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE (``statestore list | head``)
EXIT_INTERRUPTED = 130
EXIT_UNAVAILABLE = 5  # BackendUnavailableError: unreachable, timeouts, 5xx, throttling; try again later
EXIT_ACCESS_DENIED = 6  # AccessDeniedError: 401/403, bad or missing credentials, permission denied
EXIT_BACKEND_CONFIG = 7  # BackendConfigError: missing bucket, bad endpoint, a local root that is a file

CHECK_EXIT = {
    Verdict.SAFE: EXIT_OK,
    Verdict.UNSAFE: EXIT_UNSAFE,
    Verdict.UNREACHABLE: EXIT_FAILED,
    Verdict.MISCONFIGURED: EXIT_INVALID,
}


def describe_error(exc: BaseException, store_args: Sequence[str] = ()) -> tuple[str, int]:
    """The one-line message and exit code of a failure.

    ``store_args``: the global options that name the store the failure happened on (``--root DIR``,
    ``--url URL``...), put into the commands a message suggests so that they act on that store.
    """
    if isinstance(exc, VersionNotFoundError):
        return f"invalid input: {exc}; {_history_hint(exc, store_args)}", EXIT_INVALID
    if isinstance(exc, InvalidInputError):
        return f"invalid input: {exc}", EXIT_INVALID
    if isinstance(exc, DecryptionError):
        return f"cannot decrypt: {exc}", EXIT_CORRUPT
    if isinstance(exc, CorruptStateError):
        return f"corrupt state: {exc}; {_repair_hint(exc, store_args)}", EXIT_CORRUPT
    if isinstance(exc, ConflictError):
        return f"conflict: {exc}", EXIT_FAILED
    if isinstance(exc, VersionConflictError):
        return f"version conflict: {exc} (stored version: {exc.current_version or 'none'})", EXIT_FAILED
    if isinstance(exc, EndpointUnreachableError):  # the message asks whether it is running
        return f"backend unreachable: {exc}{_cause_hint(exc)}", EXIT_UNAVAILABLE
    if isinstance(exc, BackendUnavailableError):
        return f"backend unavailable (try again later): {exc}{_cause_hint(exc)}", EXIT_UNAVAILABLE
    if isinstance(exc, CredentialsNotFoundError):  # the message says where they are looked for
        return f"no credentials: {exc}", EXIT_ACCESS_DENIED
    if isinstance(exc, AccessDeniedError):
        return f"access denied (check credentials and permissions): {exc}{_cause_hint(exc)}", EXIT_ACCESS_DENIED
    if isinstance(exc, UnsafeBackendError):  # as 'statestore check' exits on such a server
        return f"unsafe backend: {exc}", EXIT_UNSAFE
    if isinstance(exc, VersionsUnsupportedError):  # no cause to show: the message says what to do
        return f"no history: {exc}", EXIT_BACKEND_CONFIG
    if isinstance(exc, BackendConfigError):
        return f"backend misconfigured: {exc}{_cause_hint(exc)}", EXIT_BACKEND_CONFIG
    if isinstance(exc, BackendError):
        # The cause's own message is left to --debug: SDK messages can hold URLs with credentials in them.
        return f"backend failed: {exc}{_cause_hint(exc)}", EXIT_FAILED
    if isinstance(exc, StateStoreError):
        return f"error: {exc}", EXIT_FAILED
    return f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)", EXIT_FAILED


def _command(exc: StateStoreError, store_args: Sequence[str], name: str, *args: str) -> str:
    """``statestore [store options] NAME ID [ARGS] [--type T]`` for the state of ``exc``, shell-quoted."""
    state_id = shlex.quote(exc.state_id) if exc.state_id is not None else "ID"
    of_type = f" --type {shlex.quote(exc.state_type)}" if exc.state_type not in (None, "workflows") else ""
    words = ["statestore", *(shlex.quote(arg) for arg in store_args), name, state_id, *args]
    return " ".join(words) + of_type


def _repair_hint(exc: CorruptStateError, store_args: Sequence[str]) -> str:
    """The commands that repair this state on its store, with its real id and type."""
    replace, delete = _command(exc, store_args, "replace", "JSON"), _command(exc, store_args, "delete")
    return f"repair it with '{replace}' or '{delete}'"


def _history_hint(exc: VersionNotFoundError, store_args: Sequence[str]) -> str:
    """The command that lists the versions of this state."""
    return f"'{_command(exc, store_args, 'history')}' lists its versions"


def _cause_hint(exc: BaseException) -> str:
    """`` (--debug shows the cause)`` when there is a cause to show, else nothing."""
    return " (--debug shows the cause)" if cause_chain(exc) else ""


def cause_chain(exc: BaseException) -> list[BaseException]:
    """The exceptions behind ``exc``: its ``__cause__``, that one's, and so on (or an unsuppressed context)."""
    chain: list[BaseException] = []
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        nxt = current.__cause__
        if nxt is None and not current.__suppress_context__:
            nxt = current.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        current = nxt
    return chain
