"""Every public exception lives in statestore.errors (the test kit's own in statestore.testing)."""

from __future__ import annotations

import inspect

import pytest

import statestore
import statestore.errors as errors
from statestore import BackendError, MemoryBackend, StateStoreError, StateType, Store
from statestore.testing import FaultBackend, InjectedFault


def test_every_public_exception_is_defined_in_errors() -> None:
    for name in statestore.__all__:
        obj = getattr(statestore, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert obj.__module__ == "statestore.errors", name
            assert issubclass(obj, StateStoreError), name


def test_every_exception_of_the_library_is_in_errors_or_the_test_kit() -> None:
    """A library exception is defined once, in statestore.errors; the test kit's own live in statestore.testing."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(statestore.__path__, "statestore."):
        if info.name.startswith(("statestore.testing", "statestore.cli")) or info.name.endswith("obstore_transport"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, StateStoreError) and obj.__module__ == info.name:
                assert info.name == "statestore.errors", f"{info.name}.{name}"


def test_stored_state_too_large_pickles_with_its_fields() -> None:
    """It crosses process boundaries (a ``multiprocessing`` worker's error) with its size, limit, ETag and text."""
    import pickle

    error = errors.StoredStateTooLargeError("a/config.json", 10, 5, '"e"', what="workflows state 'a'")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is errors.StoredStateTooLargeError and isinstance(again, errors.CorruptStateError)
    assert (again.key, again.size, again.limit, again.etag, str(again)) == ("a/config.json", 10, 5, '"e"', str(error))
    assert str(error).startswith("workflows state 'a' is 10 bytes stored")


def test_injected_fault_is_a_backend_error_and_a_connection_error() -> None:
    assert issubclass(InjectedFault, BackendError)
    assert issubclass(InjectedFault, ConnectionError)
    assert issubclass(errors.IfMatchRejectedError, BackendError)
    assert issubclass(errors.ConditionalDeleteUnsupportedError, NotImplementedError)


async def test_an_injected_fault_reaches_the_caller_as_a_statestore_error() -> None:
    store = Store(FaultBackend(MemoryBackend(), rate=1.0, ops=("get",)))
    with pytest.raises(StateStoreError) as info:
        await store.get_state("wf", StateType.WORKFLOWS)
    assert type(info.value) is InjectedFault and "injected failure of get" in str(info.value)
