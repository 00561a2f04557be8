"""OpenTelemetry spans and metrics for every public ``Store`` operation, when ``opentelemetry-api`` is installed.

Whether OpenTelemetry is importable is decided once, when this module is
imported (``ENABLED``). Without it nothing of it is imported, no wrapper is
installed and the two hooks below are never called: statestore costs exactly
what it costs without this module.

With it, ``traced`` wraps each public async method of ``Store`` in a span
``statestore.<operation>`` and installs the hooks of ``statestore.hooks``
(``note_conflict``: the compare-and-swap loop retries after a failed
precondition; ``note_retry``: the S3 backend retries a transient failure), and
each store's backend is wrapped in a ``TelemetryBackend`` that counts requests
and bytes.

Spans and metrics go to the global tracer and meter providers (read on each
call, so a provider set after statestore was imported is used), or to the
providers passed to ``configure``. While neither global provider is set and
``configure`` was given none, an operation skips all of it. No attribute ever
holds a state's value or a credential; a state's id only with
``STATESTORE_OTEL_IDS=true`` (``Settings.otel_ids``), as ids may be sensitive.
Error messages are never recorded (they name the id): an error is its class name.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .backends.base import NotModified, ObjectBackend, ObjectMeta, PutMode, PutResult, Versioned
from .backends.wrappers import WrapperBackend, forward_get
from .core.statetype import StateType
from .util import forks, hooks

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["ENABLED", "configure"]


def _importable() -> bool:
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


#: Whether ``opentelemetry-api`` is importable (decided once): without it nothing here is used.
ENABLED = _importable()

#: Methods of ``Store`` that are not operations, so get no span.
NOT_TRACED = frozenset({"aclose"})

_MAX_ID_CHARS = 256
# Upper bounds (seconds) of the duration histogram's buckets: from a cached local read to a slow S3 retry.
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: A set of metric attributes as a hashable key: ``(name, value)`` pairs.
_Key = tuple[tuple[str, str], ...]

#: The counters: name, unit, description. They are observable counters over totals kept here, so that
#: counting a request costs a dict update under a lock instead of a synchronous SDK measurement.
_COUNTERS = {
    "conflicts": ("statestore.conflicts", "{conflict}", "Compare-and-swap retries after a failed precondition"),
    "retries": ("statestore.retries", "{retry}", "Backend requests retried after a transient failure"),
    "requests": ("statestore.backend.requests", "{request}", "Requests to the backend, by kind"),
    "bytes_read": ("statestore.backend.bytes_read", "By", "Bytes of objects read, as stored (sealed if encrypted)"),
    "bytes_written": ("statestore.backend.bytes_written", "By", "Bytes of objects stored (sealed if encrypted)"),
}


class _Op:
    """The operation running in this task: its metric attributes and what the layers below reported."""

    __slots__ = ("attempts", "attributes", "key", "requests", "retries", "state")

    def __init__(self, state: _Telemetry, attributes: dict[str, str]) -> None:
        self.state = state
        self.attributes = attributes
        self.key: _Key = tuple(attributes.items())
        self.attempts = 1
        self.retries = 0
        self.requests: dict[str, _Key] = {}

    def request_key(self, kind: str) -> _Key:
        found = self.requests.get(kind)
        if found is None:
            found = self.requests[kind] = (*self.key, ("statestore.request", kind))
        return found


_CURRENT: ContextVar[_Op | None] = ContextVar("statestore_telemetry_op", default=None)


class _Telemetry:
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
        self.duration: Histogram = _histogram(meter)
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


def _histogram(meter: Any) -> Histogram:
    name, unit, description = "statestore.operation.duration", "s", "Duration of statestore operations"
    try:
        histogram: Histogram = meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS)
        )
    except TypeError:  # opentelemetry-api before 1.23 takes no advice
        histogram = meter.create_histogram(name, unit, description)
    return histogram


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statestore")
    except PackageNotFoundError:
        return "0"


_state: _Telemetry | None = None


def configure(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    record_ids: bool | None = None,
) -> None:
    """Send statestore's spans and metrics to these providers (None: the global ones), from now on.

    ``record_ids`` puts each state's id on its span (None: ``STATESTORE_OTEL_IDS``). Call it
    with no arguments to go back to the global providers and the environment. Raises
    ``RuntimeError`` if ``opentelemetry-api`` is not installed.
    """
    global _state
    if not ENABLED:
        raise RuntimeError("statestore telemetry needs opentelemetry-api: pip install 'statestore[otel]'")
    if record_ids is None:
        from .config.settings import otel_ids_from_env

        record_ids = otel_ids_from_env()
    _state = _Telemetry(tracer_provider, meter_provider, record_ids)


def _unset_check() -> Callable[[], bool]:
    """A test of whether neither global provider is set yet (then nothing would record what statestore reports).

    A global provider is set at most once, so a False answer is final. The test reads the API's
    module globals (a public call costs an environment lookup, too much for every operation),
    after a public call that installs a provider named by ``OTEL_PYTHON_*_PROVIDER``.
    """
    from opentelemetry import metrics, trace

    trace.get_tracer_provider()
    metrics.get_meter_provider()
    try:
        from opentelemetry.metrics import _internal as metrics_internal

        trace.__dict__["_TRACER_PROVIDER"]
        metrics_internal.__dict__["_METER_PROVIDER"]
    except (ImportError, KeyError):  # another API version: the public way
        proxy_meter = type(metrics.NoOpMeterProvider())  # never the proxy: "set" unless proven unset

        def public() -> bool:
            return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) and isinstance(
                metrics.get_meter_provider(), proxy_meter
            )

        return public
    tracing, metering = trace.__dict__, metrics_internal.__dict__

    def unset() -> bool:
        return tracing["_TRACER_PROVIDER"] is None and metering["_METER_PROVIDER"] is None

    return unset


_globals_unset: Callable[[], bool] | None = None


def _active() -> _Telemetry | None:
    """The telemetry to record to, or None when nothing would record it (no provider given, none set globally)."""
    global _globals_unset
    state = _state
    if state is None:
        configure()
        state = _state
        assert state is not None
    if state.explicit:
        return state
    unset = _globals_unset
    if unset is None:
        unset = _globals_unset = _unset_check()
    if not unset():
        state.explicit = True  # a global provider stays set: no need to look again
        return state
    return None


# -- hooks called by the layers below ----------------------------------------------


def note_conflict() -> None:
    """The compare-and-swap loop retries after a failed precondition: count it, and one more attempt."""
    op = _CURRENT.get()
    if op is not None:
        op.attempts += 1
        op.state.add("conflicts", op.key)


def note_retry() -> None:
    """A backend retries a request after a transient failure: count it."""
    op = _CURRENT.get()
    if op is not None:
        op.retries += 1
        op.state.add("retries", op.key)


# -- the backend wrapper -----------------------------------------------------------


def backend_kind(backend: ObjectBackend) -> str:
    """``local``, ``memory``, ``s3`` or ``other``: the backend under any wrappers."""
    from .backends.local import LocalBackend
    from .backends.memory import MemoryBackend
    from .backends.s3.backend import S3Backend

    while isinstance(backend, WrapperBackend):
        backend = backend.inner
    if isinstance(backend, LocalBackend):
        return "local"
    if isinstance(backend, MemoryBackend):
        return "memory"
    if isinstance(backend, S3Backend):
        return "s3"
    return "other"


class TelemetryBackend(WrapperBackend):
    """Counts the requests one store makes to its backend, by kind, and the bytes it reads and writes.

    Each count carries the attributes of the operation that made it (operation, app, state
    type, backend kind); ``describe`` is the inner backend's, so messages read as without it.
    """

    def __init__(self, inner: ObjectBackend, app_name: str) -> None:
        super().__init__(inner)
        self.attributes = {"statestore.app": app_name, "statestore.backend": backend_kind(inner)}

    def describe(self) -> str:
        return self.inner.describe()

    def _op(self) -> _Op | None:
        """The operation a request belongs to (one of its own outside any), or None if nothing records it."""
        op = _CURRENT.get()
        if op is not None:
            return op
        state = _active()
        return None if state is None else _Op(state, self.attributes)

    async def _around(self, op: str, key: str, call: Callable[[], Any]) -> Any:
        current = self._op()
        if current is None:
            return await call()
        counted = current.request_key(op)
        current.state.add("requests", counted)
        result = await call()
        if isinstance(result, Versioned):
            current.state.add("bytes_read", counted, len(result.data))
        return result

    # get and put return the inner backend's own coroutine while nothing records: no frame of theirs then.

    def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Coroutine[Any, Any, Versioned | NotModified | None]:
        if self._op() is None:
            return forward_get(self.inner, key, if_none_match, max_bytes)
        return super().get(key, if_none_match=if_none_match, max_bytes=max_bytes)

    def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> Coroutine[Any, Any, PutResult]:
        current = self._op()
        if current is None:
            return self.inner.put(key, data, mode)
        return self._put(current, key, data, mode)

    async def _put(self, current: _Op, key: str, data: bytes, mode: PutMode) -> PutResult:
        counted = current.request_key("put")
        current.state.add("requests", counted)
        result = await self.inner.put(key, data, mode)
        current.state.add("bytes_written", counted, len(data))
        return result

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        current = self._op()
        if current is not None:
            current.state.add("requests", current.request_key("list"))
        async for meta in self.inner.list(prefix):
            yield meta

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        current = self._op()
        if current is not None:
            current.state.add("requests", current.request_key("list"))
        async for key in self.inner.list_keys(prefix):
            yield key


# -- spans around the Store's operations -------------------------------------------


def _argument(params: list[str], name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """A reader of argument ``name`` from a call's ``args`` and ``kwargs`` (None where the method has none)."""
    if name not in params:
        return lambda args, kwargs: None
    position = params.index(name)

    def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return args[position] if position < len(args) else kwargs.get(name)

    return read


def _type_value(value: Any) -> str | None:
    """The state type's value if ``value`` is a state type (never an arbitrary string a caller passed)."""
    if isinstance(value, StateType):
        return value.value
    return value if StateType.is_member(value) else None


class _Call:
    """What the wrapper of one ``Store`` method knows: its name and where its id and type arguments are."""

    def __init__(self, name: str, method: Callable[..., Any]) -> None:
        params = list(inspect.signature(method).parameters)
        self.name = name
        self.span_name = f"statestore.{name}"
        self.id = _argument(params, "id")
        self.type = _argument(params, "type")

    def start(self, state: _Telemetry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Op, dict[str, Any]]:
        """The operation's record (its metric attributes) and its span's attributes."""
        store = args[0]
        backend = store._cas.backend
        base = backend.attributes if isinstance(backend, TelemetryBackend) else _store_attributes(store)
        attributes = {"statestore.operation": self.name, **base}
        state_type = _type_value(self.type(args, kwargs))
        if state_type is not None:
            attributes["statestore.state_type"] = state_type
        span_attributes: dict[str, Any] = dict(attributes)
        if state.record_ids:
            state_id = self.id(args, kwargs)
            if isinstance(state_id, str):
                span_attributes["statestore.state_id"] = state_id[:_MAX_ID_CHARS]
        return _Op(state, attributes), span_attributes

    def finish(self, state: _Telemetry, op: _Op, span: Any, outcome: str, seconds: float) -> None:
        state.duration.record(seconds, {**op.attributes, "statestore.outcome": outcome})
        if span.is_recording():
            from opentelemetry.trace import Status, StatusCode

            span.set_attributes(
                {"statestore.attempts": op.attempts, "statestore.retries": op.retries, "statestore.outcome": outcome}
            )
            if outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, outcome))


def _store_attributes(store: Any) -> dict[str, str]:
    return {"statestore.app": store.app_name, "statestore.backend": backend_kind(store.backend)}


def _traced(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` in a span ``statestore.<name>``, its duration recorded; untouched while nothing would record."""
    from opentelemetry import trace

    about = _Call(name, method)

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            state = _active()
            if state is None:
                async for item in method(*args, **kwargs):
                    yield item
                return
            op, span_attributes = about.start(state, args, kwargs)
            span = state.tracer.start_span(about.span_name, attributes=span_attributes)
            started = time.perf_counter()
            outcome = "ok"
            items = method(*args, **kwargs)
            try:
                while True:
                    # The operation is current only while the generator runs (its body runs in its
                    # consumer's context): set and reset within each step, never across a yield.
                    token = _CURRENT.set(op)
                    try:
                        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                            item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        _CURRENT.reset(token)
                    yield item
            except GeneratorExit:  # the consumer stopped early: not an error
                raise
            except BaseException as exc:
                outcome = exc.__class__.__name__
                raise
            finally:
                await items.aclose()
                about.finish(state, op, span, outcome, time.perf_counter() - started)
                span.end()

        iterate.__statestore_traced__ = True  # type: ignore[attr-defined]
        return iterate

    async def record(state: _Telemetry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        op, span_attributes = about.start(state, args, kwargs)
        token = _CURRENT.set(op)
        span = state.tracer.start_span(about.span_name, attributes=span_attributes)
        started = time.perf_counter()
        outcome = "ok"
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                return await method(*args, **kwargs)
        except BaseException as exc:
            outcome = exc.__class__.__name__
            raise
        finally:
            _CURRENT.reset(token)
            about.finish(state, op, span, outcome, time.perf_counter() - started)
            span.end()

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        state = _active()
        if state is None:  # the method's own coroutine: no frame of ours while nothing records
            return method(*args, **kwargs)
        return record(state, args, kwargs)

    call.__statestore_traced__ = True  # type: ignore[attr-defined]
    return call


def traced(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (a public async method of ``Store``) in a span, the hooks installed; untouched if not traced.

    A coroutine method's wrapper is a plain function that returns a coroutine: the caller
    (``Store``'s own async wrapper) keeps it a coroutine function.
    """
    if name in NOT_TRACED:
        return method
    hooks.on_conflict = note_conflict
    hooks.on_retry = note_retry
    return _traced(name, method)


def is_traced(method: Any) -> bool:
    """Whether ``method`` is wrapped in a span by ``traced``."""
    return bool(getattr(method, "__statestore_traced__", False))
