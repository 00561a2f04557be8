"""Every public exception lives in statestore.errors; older import paths name the same classes."""

from __future__ import annotations

import inspect

import pytest

import statestore
import statestore.backends
import statestore.backends.base
import statestore.backends.faults
import statestore.backends.s3
import statestore.errors as errors
from statestore import BackendError, FaultBackend, MemoryBackend, StateStoreError, StateType, Store


def test_every_public_exception_is_defined_in_errors() -> None:
    for name in statestore.__all__:
        obj = getattr(statestore, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert obj.__module__ == "statestore.errors", name
            assert issubclass(obj, StateStoreError), name


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (statestore.backends.base, "PreconditionFailed"),
        *[(statestore.backends.s3, n) for n in ("ConditionalDeleteUnsupportedError", "IfMatchRejectedError")],
        (statestore.backends.faults, "InjectedFault"),
        *[
            (statestore.backends, n)
            for n in ("PreconditionFailed", "ConditionalDeleteUnsupportedError", "InjectedFault")
        ],
        *[(statestore, n) for n in ("IfMatchRejectedError", "LockTimeoutError")],
    ],
)
def test_old_import_paths_name_the_classes_of_errors(module: object, name: str) -> None:
    assert getattr(module, name) is getattr(errors, name)


def test_stored_state_too_large_pickles_with_its_fields() -> None:
    """It crosses process boundaries (a ``multiprocessing`` worker's error) with its size, limit, ETag and text."""
    import pickle

    error = errors.StoredStateTooLargeError("a/config.json", 10, 5, '"e"', what="workflows state 'a'")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is errors.StoredStateTooLargeError and isinstance(again, errors.CorruptStateError)
    assert (again.key, again.size, again.limit, again.etag, str(again)) == ("a/config.json", 10, 5, '"e"', str(error))
    assert str(error).startswith("workflows state 'a' is 10 bytes stored")


def test_injected_fault_is_a_backend_error_and_a_connection_error() -> None:
    assert issubclass(errors.InjectedFault, BackendError)
    assert issubclass(errors.InjectedFault, ConnectionError)
    assert issubclass(errors.IfMatchRejectedError, BackendError)
    assert issubclass(errors.ConditionalDeleteUnsupportedError, NotImplementedError)


async def test_an_injected_fault_reaches_the_caller_as_a_statestore_error() -> None:
    store = Store(FaultBackend(MemoryBackend(), rate=1.0, ops=("get",)))
    with pytest.raises(StateStoreError) as info:
        await store.get_state("wf", StateType.WORKFLOWS)
    assert type(info.value) is errors.InjectedFault and "injected failure of get" in str(info.value)
