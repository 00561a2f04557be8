"""OpenTelemetry spans and metrics for every ``Store`` operation, where ``opentelemetry-api`` is installed.

A ``Store`` asks ``for_store`` once, when it is made: without OpenTelemetry it gets no ``Telemetry`` and its backend
is not wrapped, so it costs nothing. With it, each public operation is a span ``statestore.<operation>`` (begun
and ended by the store's operation boundary, ``core.store``), its duration a histogram point, and the store's
backend is wrapped in a ``TelemetryBackend`` that counts requests and bytes. Conflicts and transient retries are
what the layers below noted on the ``Operation`` (``util.operation``).

Spans and metrics go to the global tracer and meter providers (a provider set after statestore was imported is
used from 0.1 s after it was set at the latest: while none is set they are asked again at most that often), or to
the providers passed to ``configure``. While neither global provider is
set and ``configure`` was given none, an operation records nothing. No attribute ever holds a state's value or a
credential; a state's id only with ``STATESTORE_OTEL_IDS=true`` (ids may be sensitive). Error messages are never
recorded (they name the id): an error is its class name.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .backends.base import NotModified, ObjectBackend, ObjectMeta, PutMode, PutResult, Versioned
from .backends.local import LocalBackend
from .backends.memory import MemoryBackend
from .backends.s3 import S3Backend
from .backends.wrappers import WrapperBackend
from .config.settings import otel_ids_from_env
from .keys.statetype import StateType
from .util import forks, operation
from .util.operation import Operation

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["configure"]

_MAX_ID_CHARS = 256
# Upper bounds (seconds) of the duration histogram's buckets: from a cached local read to a slow S3 retry.
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: A set of metric attributes as a hashable key: ``(name, value)`` pairs.
_Key = tuple[tuple[str, str], ...]

#: The counters: name, unit, description. They are observable counters over totals kept here, so that counting a
#: request costs a dict update under a lock instead of a synchronous SDK measurement.
_COUNTERS = {
    "conflicts": ("statestore.conflicts", "{conflict}", "Compare-and-swap retries after a failed precondition"),
    "retries": ("statestore.retries", "{retry}", "Backend requests retried after a transient failure"),
    "requests": ("statestore.backend.requests", "{request}", "Requests to the backend, by kind"),
    "bytes_read": ("statestore.backend.bytes_read", "By", "Bytes of objects read, as stored (sealed if encrypted)"),
    "bytes_written": ("statestore.backend.bytes_written", "By", "Bytes of objects stored (sealed if encrypted)"),
}

_available: bool | None = None


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed (looked up once, without importing it)."""
    global _available
    if _available is None:
        try:
            _available = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):  # a parent that is not a package, or a broken entry in sys.modules
            _available = False
    return _available


class _Instruments:
    """The tracer, the instruments, the counters' totals and the id setting in use."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None, record_ids: bool
    ) -> None:
        from opentelemetry import metrics, trace

        version = _version()
        self.explicit = tracer_provider is not None or meter_provider is not None
        self.record_ids = record_ids
        self.tracer: Tracer = trace.get_tracer("statestore", version, tracer_provider=tracer_provider)
        meter = metrics.get_meter("statestore", version, meter_provider=meter_provider)
        self.duration: Histogram = meter.create_histogram(
            "statestore.operation.duration",
            "s",
            "Duration of statestore operations",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._lock = forks.lock()
        self._totals: dict[str, dict[_Key, int]] = {counter: {} for counter in _COUNTERS}
        for counter, (name, unit, description) in _COUNTERS.items():
            meter.create_observable_counter(name, [self._observer(counter)], unit, description)

    def add(self, counter: str, key: _Key, amount: int = 1) -> None:
        with self._lock:
            totals = self._totals[counter]
            totals[key] = totals.get(key, 0) + amount

    def _observer(self, counter: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                totals = list(self._totals[counter].items())
            return [Observation(value, dict(key)) for key, value in totals]

        return observe


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statestore")
    except PackageNotFoundError:
        return "0"


_instruments: _Instruments | None = None


def configure(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    record_ids: bool | None = None,
) -> None:
    """Send statestore's spans and metrics to these providers (None: the global ones), from now on.

    ``record_ids`` puts each state's id on its span (None: ``STATESTORE_OTEL_IDS``). Call it with no arguments to
    go back to the global providers and the environment. Raises ``RuntimeError`` if ``opentelemetry-api`` is not
    installed.
    """
    global _instruments, _unset_until
    if not available():
        raise RuntimeError(
            "statestore telemetry needs opentelemetry-api: pip install opentelemetry-api (statestore's otel extra)"
        )
    _instruments = _Instruments(
        tracer_provider, meter_provider, otel_ids_from_env() if record_ids is None else record_ids
    )


#: While no provider records, the global providers are asked again at most this often (seconds): asking costs
#: two environment lookups, and a provider is set once, at start-up.
_RECHECK = 0.1
_unset_until = 0.0


def _active() -> _Instruments | None:
    """The instruments to record to, or None while nothing would record (no provider given, none set globally)."""
    global _unset_until
    instruments = _instruments
    if instruments is not None and instruments.explicit:
        return instruments
    now = time.monotonic()
    if now < _unset_until:
        return None
    if instruments is None:
        if not _api_in_use():
            _unset_until = now + _RECHECK
            return None
        configure()
        instruments = _instruments
        assert instruments is not None
        if instruments.explicit:
            return instruments
    from opentelemetry import metrics, trace

    if not (_records(trace.get_tracer_provider()) or _records(metrics.get_meter_provider())):
        _unset_until = now + _RECHECK
        return None
    instruments.explicit = True  # a global provider, once set, stays set: no need to ask again
    return instruments


def _api_in_use() -> bool:
    """Whether OpenTelemetry's API is imported, or a provider is named in the environment. Before either, no
    global provider can be set, so nothing would record: importing the API then (about 30 ms) would only stall
    the event loop of the first operation."""
    return (
        "opentelemetry.trace" in sys.modules
        or "opentelemetry.metrics" in sys.modules
        or any(os.environ.get(name) for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"))
    )


def _records(provider: object) -> bool:
    """Whether a global provider records: the API's own (the proxy while none is set, the no-op) do not."""
    return not type(provider).__module__.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


def backend_kind(backend: ObjectBackend) -> str:
    """``local``, ``memory``, ``s3`` or ``other``: the backend under any wrappers."""
    while isinstance(backend, WrapperBackend):
        backend = backend.inner
    if isinstance(backend, LocalBackend):
        return "local"
    if isinstance(backend, MemoryBackend):
        return "memory"
    if isinstance(backend, S3Backend):
        return "s3"
    return "other"


class _Recording:
    """What is recorded of one operation: its instruments, metric attributes, span and start."""

    __slots__ = ("attributes", "instruments", "key", "requests", "span", "started", "use")

    def __init__(self, instruments: _Instruments, attributes: dict[str, str], span: Span) -> None:
        self.instruments = instruments
        self.attributes = attributes
        self.key: _Key = tuple(attributes.items())
        self.requests: dict[str, _Key] = {}
        self.span = span
        self.started = time.perf_counter()
        self.use: AbstractContextManager[Any] | None = None

    def request_key(self, kind: str) -> _Key:
        found = self.requests.get(kind)
        if found is None:
            found = self.requests[kind] = (*self.key, ("statestore.request", kind))
        return found


class Telemetry:
    """What one store records: the spans of its operations and, through ``TelemetryBackend``, its requests."""

    def __init__(self, app_name: str, backend: ObjectBackend) -> None:
        self.attributes = {"statestore.app": app_name, "statestore.backend": backend_kind(backend)}

    def begin(self, op: Operation, state_type: object, state_id: object, *, current: bool = True) -> None:
        """Start recording ``op`` (a span, made current for the calls it makes if ``current``), if anything records."""
        instruments = _active()
        if instruments is None:
            return
        attributes = {"statestore.operation": op.name, **self.attributes}
        if isinstance(state_type, str) and StateType.is_member(state_type):  # never a string a caller made up
            attributes["statestore.state_type"] = str(StateType(state_type).value)
        span_attributes: dict[str, Any] = dict(attributes)
        if instruments.record_ids and isinstance(state_id, str):
            span_attributes["statestore.state_id"] = state_id[:_MAX_ID_CHARS]
        span = instruments.tracer.start_span(f"statestore.{op.name}", attributes=span_attributes)
        recording = _Recording(instruments, attributes, span)
        if current:
            from opentelemetry import trace

            recording.use = trace.use_span(span, record_exception=False, set_status_on_exception=False)
            recording.use.__enter__()
        op.recording = recording

    @staticmethod
    def end(op: Operation, outcome: str) -> None:
        """Finish recording ``op``: its outcome (``ok`` or an error's class name), attempts, retries and duration."""
        recording = op.recording
        if not isinstance(recording, _Recording):
            return
        op.recording = None
        if recording.use is not None:
            recording.use.__exit__(None, None, None)
        instruments = recording.instruments
        instruments.duration.record(
            time.perf_counter() - recording.started, {**recording.attributes, "statestore.outcome": outcome}
        )
        if op.conflicts:
            instruments.add("conflicts", recording.key, op.conflicts)
        if op.retries:
            instruments.add("retries", recording.key, op.retries)
        span = recording.span
        if span.is_recording():
            from opentelemetry.trace import Status, StatusCode

            span.set_attributes(
                {
                    "statestore.attempts": 1 + op.conflicts,
                    "statestore.retries": op.retries,
                    "statestore.outcome": outcome,
                }
            )
            if outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()


def for_store(app_name: str, backend: ObjectBackend) -> tuple[ObjectBackend, Telemetry | None]:
    """The backend a store should use and its ``Telemetry``: wrapped and made where OpenTelemetry is installed."""
    if not available():
        return backend, None
    return TelemetryBackend(backend, app_name), Telemetry(app_name, backend)


class TelemetryBackend(WrapperBackend):
    """Counts the requests one store makes to its backend, by kind, and the bytes it reads and writes.

    Each count carries the attributes of the operation that made it (operation, app, state type, backend kind);
    ``describe`` is the inner backend's, so messages read as without it.
    """

    def __init__(self, inner: ObjectBackend, app_name: str) -> None:
        super().__init__(inner)
        self.attributes = {"statestore.app": app_name, "statestore.backend": backend_kind(inner)}

    def describe(self) -> str:
        return self.inner.describe()

    def _recording(self) -> _Recording | None:
        """Where a request is counted: the current operation's recording, one of its own outside any, or nowhere."""
        op = operation.current()
        if op is not None:
            recording = op.recording
            return recording if isinstance(recording, _Recording) else None
        instruments = _active()
        if instruments is None:
            return None
        return _Recording(instruments, self.attributes, _NO_SPAN)

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        recording = self._recording()
        result = await self.inner.get(key, if_none_match=if_none_match, max_bytes=max_bytes)
        if recording is not None:
            counted = recording.request_key("get")
            recording.instruments.add("requests", counted)
            if isinstance(result, Versioned):
                recording.instruments.add("bytes_read", counted, len(result.data))
        return result

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        recording = self._recording()
        if recording is not None:
            recording.instruments.add("requests", recording.request_key("put"))
        result = await self.inner.put(key, data, mode)
        if recording is not None:
            recording.instruments.add("bytes_written", recording.request_key("put"), len(data))
        return result

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        recording = self._recording()
        if recording is not None:
            recording.instruments.add("requests", recording.request_key("delete"))
        await self.inner.delete(key, if_match=if_match)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        self._count_list()
        async for meta in self.inner.list(prefix):
            yield meta

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        self._count_list()
        async for key in self.inner.list_keys(prefix):
            yield key

    def _count_list(self) -> None:
        recording = self._recording()
        if recording is not None:
            recording.instruments.add("requests", recording.request_key("list"))


class _NoSpan:
    """The span of a request made outside any operation: there is none to end."""

    def is_recording(self) -> bool:
        return False


_NO_SPAN: Any = _NoSpan()
