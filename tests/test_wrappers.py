"""Wrapper backends: one forwarding base whose capabilities are read live, the logging wrapper, and FaultBackend."""

from __future__ import annotations

import logging
from contextlib import aclosing

import pytest
from conftest import s3_backend

from statestore import MemoryBackend, PutMode
from statestore.backends import LoggingBackend, WrapperBackend
from statestore.backends.base import Capability
from statestore.errors import PreconditionFailed
from statestore.testing import CountingBackend, FaultBackend, InjectedFault, LatencyBackend, MotoServer

KEY = "persistent-artifacts/apps/a/credentials/c1/config.json"
SECRET = b'{"password": "hunter2-do-not-log"}'


class _Learning(MemoryBackend):
    """A backend that learns its capability after it is made, as S3's probe does."""

    def __init__(self) -> None:
        super().__init__()
        self.learned = True

    async def supports(self, capability: Capability) -> bool:
        return self.learned

    @property
    def key_prefix(self) -> str:
        return "tenant/" if not self.learned else ""


async def test_every_wrapper_reads_the_capability_and_prefix_of_its_inner_backend_live() -> None:
    inner = _Learning()
    wrappers = [cls(inner) for cls in (WrapperBackend, CountingBackend, LoggingBackend, FaultBackend)]
    wrappers += [LatencyBackend(inner, 0.0), CountingBackend(LoggingBackend(inner))]
    assert all([await w.supports(Capability.CONDITIONAL_DELETE) for w in wrappers])
    assert all(w.key_prefix == "" for w in wrappers)
    inner.learned = False
    assert not any([await w.supports(Capability.CONDITIONAL_DELETE) for w in wrappers])
    assert all(w.key_prefix == "tenant/" for w in wrappers)


async def test_a_wrapper_of_s3_tells_the_probed_conditional_delete(moto_server: MotoServer) -> None:
    """``auto`` is unknown (False) until probed; the wrapper says what the S3 backend found, not what it was."""
    inner = s3_backend(moto_server, moto_server.create_bucket(), conditional_delete="auto")
    counting = CountingBackend(inner)
    try:
        assert await counting.supports(Capability.CONDITIONAL_DELETE) is True  # probed: moto honours it
        assert await inner.supports(Capability.CONDITIONAL_DELETE) is True
    finally:
        await counting.aclose()


async def test_logging_backend_logs_each_call_never_the_data(caplog: pytest.LogCaptureFixture) -> None:
    backend = LoggingBackend(MemoryBackend())
    caplog.set_level(logging.DEBUG, logger="statestore.backends.wrappers")
    first = (await backend.put(KEY, SECRET, PutMode.CREATE)).etag
    assert (await backend.get(KEY)) is not None
    assert await backend.get("missing/config.json") is None
    with pytest.raises(PreconditionFailed):
        await backend.put(KEY, SECRET, PutMode.CREATE)
    assert [m.key async for m in backend.list("persistent-artifacts/")] == [KEY]
    async with aclosing(backend.list("")) as listing:
        async for _ in listing:
            break
    await backend.delete(KEY, if_match=first)

    lines = [r.getMessage() for r in caplog.records if r.name == "statestore.backends.wrappers"]
    assert len(lines) == 7, lines
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    put, get, missing, refused, listed, closed, delete = lines
    assert f"put {KEY!r}: ok, etag {first}" in put
    assert f"get {KEY!r}: found, {len(SECRET)} bytes" in get
    assert "get 'missing/config.json': missing" in missing
    assert f"put {KEY!r}: failed: PreconditionFailed" in refused
    assert "list 'persistent-artifacts/': 1 objects" in listed
    assert "list '': closed after 1 objects" in closed
    assert f"delete {KEY!r}: ok" in delete
    assert all(line.startswith("MemoryBackend ") and line.endswith(" ms") for line in lines)
    assert not any("hunter2" in line or "password" in line for line in lines)


async def test_logging_backend_is_silent_unless_debug(caplog: pytest.LogCaptureFixture) -> None:
    backend = LoggingBackend(MemoryBackend())
    caplog.set_level(logging.INFO, logger="statestore.backends.wrappers")
    await backend.put(KEY, b"{}")
    assert await backend.get(KEY) is not None
    assert [r for r in caplog.records if r.name == "statestore.backends.wrappers"] == []
    assert backend.describe() == "LoggingBackend(MemoryBackend)"


async def test_fault_backend_queued_faults_and_validation() -> None:
    """``inject_next`` fails exactly the next calls, in order; ``lost`` applies the call; bad settings are refused."""
    inner = MemoryBackend()
    faulty = FaultBackend(inner, delay=0.01)
    faulty.inject_next("delay", "lost", "conflict", "error")
    etag = (await faulty.put("k", b"1")).etag  # delayed, then forwarded
    with pytest.raises(InjectedFault):
        await faulty.put("k", b"2", PutMode.update(etag))  # applied, answer lost
    landed = await inner.get("k")
    assert landed is not None and landed.data == b"2"
    with pytest.raises(PreconditionFailed):
        await faulty.delete("k")
    with pytest.raises(InjectedFault):
        await faulty.get("k")
    assert await faulty.get("k") is not None
    assert faulty.faults == 4 and faulty.counts["conflict"] == 1
    faults = {f"fault:{kind}": 1 for kind in ("delay", "lost", "conflict", "error")}
    assert dict(faulty.counts) == {"put": 2, "delete": 1, "get": 2, "conflict": 1, **faults}
    for bad in ({"rate": 1.5}, {"kinds": ("melt",)}, {"ops": ("stat",)}, {"delay": -1.0}):
        with pytest.raises(ValueError):
            FaultBackend(inner, **bad)  # type: ignore[arg-type]
