"""OpenTelemetry: a span per operation, metrics for durations, conflicts, retries, requests and bytes; free when absent.

Each test sends statestore's telemetry to its own SDK providers (an in-memory span
exporter and metric reader) through ``telemetry.configure``, so no global provider
is ever set and nothing leaks between tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Target
from fault_proxy import Fault, FaultProxy
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from statestore import (
    CorruptStateError,
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    RetryPolicy,
    Settings,
    StateType,
    Store,
    telemetry,
)
from statestore.testing import FaultBackend

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
SECRET = "s3cr3t-value-never-in-telemetry"
OPERATIONS = (  # of Store, each traced
    "create_state save_state save_state_object get_state get_versioned_state update_state replace_state get_states "
    "list_states iter_states list_state_info iter_state_info reencrypt_states prune_states delete_state"
)


class Recorded:
    """The spans and metrics one test's providers received."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        telemetry.configure(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, record_ids=False)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def total(self, metric: str, **attributes: str) -> int:
        """The sum of a counter over the points whose attributes include ``attributes``."""
        return sum(
            p.value
            for p in self.points(metric)
            if all(p.attributes.get(f"statestore.{k}") == v for k, v in attributes.items())
        )

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    telemetry.configure(record_ids=False)  # back to the global providers: none is set, so nothing is recorded
    recorded.close()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- spans ------------------------------------------------------------------------


async def test_each_operation_is_a_span_named_after_it_with_its_attributes(otel: Recorded) -> None:
    store = Store(MemoryBackend(), app_name="billing")
    await store.create_state("w1", W, {"a": 1})
    await store.save_state("token", SECRET, "w1", W)
    await store.save_state_object("w1", {"b": SECRET}, W)
    await store.get_state("w1", W)
    await store.get_versioned_state("w1", W)
    await store.update_state("w1", W, lambda s: {**s, "c": 3})
    await store.replace_state("w2", W, {"x": SECRET})
    await store.get_states(["w1", "w2"], W)
    await store.list_states(W)
    await store.list_state_info(W)
    await store.reencrypt_states(W)
    await store.prune_states(W, older_than=timedelta(days=1))
    await store.delete_state("w2", W)

    names = {s.name for s in otel.spans()}
    for op in OPERATIONS.split():
        assert f"statestore.{op}" in names, op
    for span in otel.spans():
        a = attrs(span)
        assert a["statestore.app"] == "billing"
        assert a["statestore.backend"] == "memory"
        assert a["statestore.outcome"] == "ok"
        assert a["statestore.state_type"] == "workflows"
        assert a["statestore.operation"] == span.name.removeprefix("statestore.")
        assert "statestore.state_id" not in a  # ids are off by default
        assert SECRET not in repr(a)
        assert span.status.status_code is not StatusCode.ERROR
    assert attrs(otel.span("statestore.save_state"))["statestore.attempts"] == 1
    # get_states reads each id in a span of its own, inside its own span
    parent = otel.span("statestore.get_states")
    children = [
        s for s in otel.spans("statestore.get_state") if s.parent and s.parent.span_id == parent.context.span_id
    ]
    assert len(children) == 2
    durations = otel.points("statestore.operation.duration")
    assert {p.attributes["statestore.operation"] for p in durations} >= {"save_state", "get_state", "prune_states"}
    assert all(p.count >= 1 and p.sum >= 0 for p in durations)


async def test_state_id_is_on_spans_only_with_statestore_otel_ids(
    otel: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(MemoryBackend())
    await store.save_state("k", 1, "quiet-id", W)
    assert "statestore.state_id" not in attrs(otel.span("statestore.save_state"))

    monkeypatch.setenv("STATESTORE_OTEL_IDS", "true")
    telemetry.configure(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    await store.save_state("k", 2, "named-id", W)
    await store.get_state("named-id", W)
    named = [s for s in otel.spans() if attrs(s).get("statestore.state_id") == "named-id"]
    assert {s.name for s in named} == {"statestore.save_state", "statestore.get_state"}
    for point in otel.points("statestore.operation.duration"):  # never on metrics: one series per id
        assert "statestore.state_id" not in point.attributes


def test_statestore_otel_ids_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({}).otel_ids is False
    assert Settings.from_env({"STATESTORE_OTEL_IDS": "yes"}).otel_ids is True
    with pytest.raises(InvalidInputError, match="STATESTORE_OTEL_IDS"):
        Settings.from_env({"STATESTORE_OTEL_IDS": "maybe"})
    with pytest.raises(InvalidInputError, match="STATESTORE_OTEL_IDS"):
        Settings(otel_ids="true")  # type: ignore[arg-type]
    monkeypatch.setenv("STATESTORE_OTEL_IDS", "maybe")
    with pytest.raises(InvalidInputError, match="STATESTORE_OTEL_IDS"):
        telemetry.configure()


async def test_a_failing_operation_has_its_error_class_as_outcome_and_no_message(otel: Recorded) -> None:
    store = Store(MemoryBackend())
    await store.backend.put(store.key("broken", W).object_key, b"not json")
    with pytest.raises(CorruptStateError):
        await store.get_state("broken", W)
    span = otel.span("statestore.get_state")
    assert attrs(span)["statestore.outcome"] == "CorruptStateError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "CorruptStateError"
    assert not span.events  # the message names the id: it is not recorded
    (point,) = otel.points("statestore.operation.duration")
    assert point.attributes["statestore.outcome"] == "CorruptStateError"

    with pytest.raises(InvalidInputError):
        await store.save_state("k", 1, "../escape", W)
    assert attrs(otel.span("statestore.save_state"))["statestore.outcome"] == "PathTraversalError"


async def test_iter_states_span_ends_when_the_consumer_stops(otel: Recorded) -> None:
    store = Store(MemoryBackend())
    for i in range(3):
        await store.save_state("k", i, f"w{i}", W)
    async with aclosing(store.iter_states(W)) as ids:
        async for _ in ids:
            break
    async for _ in store.iter_states(C):
        pass
    spans = otel.spans("statestore.iter_states")
    assert sorted(attrs(s)["statestore.state_type"] for s in spans) == ["credentials", "workflows"]
    assert all(attrs(s)["statestore.outcome"] == "ok" and s.end_time for s in spans)


# -- conflicts and retries -----------------------------------------------------------


async def test_conflicts_are_counted_under_real_contention(otel: Recorded, tmp_path: Path) -> None:
    retry = RetryPolicy(attempts=500, base_delay=0.001, max_delay=0.01, deadline=60)
    stores = [Store(LocalBackend(tmp_path), retry=retry, coalesce=False) for _ in range(2)]
    n = 15

    async def bump(store: Store) -> None:
        for _ in range(n):
            await store.update_state("hot", W, lambda s: {**s, "n": s.get("n", 0) + 1})

    await asyncio.gather(*(bump(s) for s in stores for _ in range(3)))
    assert (await stores[0].get_state("hot", W))["n"] == 6 * n
    spans = otel.spans("statestore.update_state")
    retried = sum(attrs(s)["statestore.attempts"] - 1 for s in spans)
    conflicts = otel.total("statestore.conflicts", operation="update_state", backend="local")
    assert conflicts == retried > 0
    # each attempt is one conditional put
    puts = otel.total("statestore.backend.requests", request="put", operation="update_state")
    assert puts == sum(attrs(s)["statestore.attempts"] for s in spans)


async def test_an_injected_conflict_is_one_conflict_and_two_attempts(otel: Recorded) -> None:
    faults = FaultBackend(MemoryBackend(), ops=("put",))
    store = Store(faults)
    await store.save_state("k", 1, "w1", W)
    faults.inject_next("conflict")
    await store.save_state("k", 2, "w1", W)
    assert attrs(otel.spans("statestore.save_state")[-1])["statestore.attempts"] == 2
    assert otel.total("statestore.conflicts", operation="save_state") == 1
    assert otel.total("statestore.retries") == 0


@pytest.mark.s3_server
async def test_s3_transient_failures_retried_are_counted_over_http(otel: Recorded, s3_target: S3Target) -> None:
    if s3_target.external:
        pytest.skip("the fault proxy's 500 and 503 are tested against moto")
    with FaultProxy(s3_target.endpoint_url) as proxy:
        backend = s3_target.backend(
            s3_target.new_location(),
            endpoint_url=proxy.endpoint_url,
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10),
        )
        async with Store(backend, app_name="svc") as store:
            await store.save_state("k", "v", "w1", W)
            proxy.add(Fault("PUT", "500"))
            await store.save_state("k", "v2", "w1", W)
            proxy.add(Fault("GET", "503"))
            assert await store.get_state("w1", W) == {"k": "v2"}
            stored = await backend.get(store.key("w1", W).object_key)
    assert stored is not None
    saves = otel.spans("statestore.save_state")
    assert [attrs(s)["statestore.retries"] for s in saves] == [0, 1]
    assert attrs(otel.span("statestore.get_state"))["statestore.retries"] == 1
    assert all(attrs(s)["statestore.backend"] == "s3" for s in otel.spans())
    assert otel.total("statestore.retries", backend="s3", app="svc") == 2
    assert otel.total("statestore.retries", operation="save_state") == 1
    # a request retried inside the backend is one request to it
    assert otel.total("statestore.backend.requests", request="put") == 2
    assert otel.total("statestore.backend.bytes_read", operation="get_state") == 0  # cached: the read was a 304
    assert otel.total("statestore.backend.bytes_written", operation="save_state") > len(stored.data)


# -- requests and bytes ---------------------------------------------------------------


async def test_requests_by_kind_and_bytes_are_counted(otel: Recorded, tmp_path: Path) -> None:
    store = Store(LocalBackend(tmp_path), app_name="app1")
    await store.save_state_object("w1", {"k": "v" * 100}, W)  # reads (nothing there), then creates
    await Store(LocalBackend(tmp_path), app_name="app1").get_state("w1", W)  # no cached version: reads the bytes
    await store.list_states(W)
    await store.delete_state("w1", W)
    stored = len('{"k":"' + "v" * 100 + '"}\n') + 64  # the state, then the write's record (64 bits as whitespace)
    assert otel.total("statestore.backend.requests", request="get") == 2
    assert otel.total("statestore.backend.requests", request="put") == 1
    assert otel.total("statestore.backend.requests", request="list", operation="iter_states") == 1
    assert otel.total("statestore.backend.requests", request="delete", operation="delete_state") == 1
    assert otel.total("statestore.backend.bytes_written", operation="save_state_object", app="app1") == stored
    assert otel.total("statestore.backend.bytes_read", operation="get_state", backend="local") == stored
    assert otel.total("statestore.backend.bytes_read", operation="save_state_object") == 0


async def test_the_store_keeps_its_own_backend_and_messages(otel: Recorded) -> None:
    backend = MemoryBackend()
    store = Store(backend)
    assert store.backend is backend
    assert repr(store) == "Store(MemoryBackend, app_name='default')"


# -- without opentelemetry, and with it but nothing configured ------------------------------

_WITHOUT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.modules["opentelemetry"] = None  # not importable, as when opentelemetry-api is not installed
    from statestore import LocalBackend, StateType, Store, telemetry

    async def main():
        store = Store(LocalBackend(sys.argv[1]))
        await store.save_state("k", "v", "w1", StateType.WORKFLOWS)
        state = await store.get_state("w1", StateType.WORKFLOWS)
        async for _ in store.iter_states(StateType.WORKFLOWS):
            pass
        print(json.dumps({
            "state": state,
            "available": telemetry.available(),
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry" and sys.modules[m]),
            "backend": type(store._cas.backend).__name__,
            "recorder": store._telemetry is not None,
        }))

    asyncio.run(main())
    """
)


def test_without_opentelemetry_nothing_is_imported_or_wrapped(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout)
    assert report.pop("state") == {"k": "v"} and report.pop("backend") == "LocalBackend"
    assert report == {"available": False, "loaded": [], "recorder": False}
    # here, where it is installed, the same checks see the wrapping (so the subprocess's answer means something)
    assert telemetry.available()
    store = Store(MemoryBackend())
    assert type(store._cas.backend) is telemetry.TelemetryBackend and store._telemetry is not None


_GLOBAL = textwrap.dedent(
    """
    import asyncio, sys
    from statestore import MemoryBackend, StateType, Store

    async def main():
        store = Store(MemoryBackend())
        await store.save_state("k", 1, "w1", StateType.WORKFLOWS)  # no provider yet: nothing recorded
        print("imported" if "opentelemetry.trace" in sys.modules else "not imported")  # nor imported (30 ms)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)  # set after statestore was imported and used
        await asyncio.sleep(0.15)  # picked up within 0.1 s (statestore asks again at most that often)
        await store.get_state("w1", StateType.WORKFLOWS)
        print(",".join(s.name for s in exporter.get_finished_spans()))

    asyncio.run(main())
    """
)


def test_a_global_provider_set_later_receives_the_spans_and_none_costs_no_import() -> None:
    """Before anything imports OpenTelemetry no provider can record, so statestore does not import it (about
    30 ms on the first operation's event loop); once an app sets a provider, the spans follow."""
    out = subprocess.run([sys.executable, "-c", _GLOBAL], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["not", "imported", "statestore.get_state"]


def test_the_example_in_the_docs_runs_and_prints_the_spans(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "telemetry.md").read_text(encoding="utf-8")
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    objects = re.findall(r"^\{\n.*?^\}$", out.stdout, re.M | re.S)  # the console exporters' indented JSON
    spans = [json.loads(chunk) for chunk in objects if '"trace_id"' in chunk]
    assert [s["name"] for s in spans] == ["statestore.save_state", "statestore.get_state"]
    assert spans[0]["attributes"]["statestore.app"] == "orders"
    assert "{'status': 'paid'}" in out.stdout
    assert "statestore.operation.duration" in out.stdout and "statestore.backend.requests" in out.stdout
