"""What an update costs: requests per operation, time against the floor and the naive way, and throughput.

    .venv/bin/pip install -e '.[test,bench]'
    .venv/bin/python scripts/bench.py [--chart docs/bench-writers.png] [--quick] [--no-s3]
    .venv/bin/python scripts/bench.py --transport [--quick]   # aioboto3 and obstore, each vs its raw client

Starts its own moto S3 server (``statestore.testing.MotoServer``, in a child
process on 127.0.0.1 so that it does not share this process's interpreter
lock), then measures in one run:

- requests per operation, counted by ``CountingBackend`` around the real
  backend: ``get_state`` / ``save_state`` / ``save_state_object``, cold (a new
  store on an existing state), steady single writer, 8 concurrent tasks on one id;
- time per ``save_state`` against the floor (one raw aioboto3 ``put_object``
  on a reused client) and against the naive way (get, merge, unconditional put
  with a new client per call, as the replaced service did);
- local ``save_state`` against a raw write + fsync + ``os.replace`` loop;
- updates/s with 1, 2, 4 and 8 concurrent writers on one id, as tasks in one
  process and as processes, written as a PNG chart;
- bytes the backend returned for 100 ``get_state`` re-reads of an unchanged
  1 MB state, conditional reads off (a wrapper drops ``if_none_match``) and on,
  on memory, local and S3 (``--reads-only`` runs just this);
- with ``--transport`` (alone): client CPU (process time) and wall per steady
  ``save_state`` / ``get_state`` on each S3 transport against that transport's
  raw conditional put / plain get (and the raw put carrying the write-id
  header every statestore put carries), PUTs per update (single writer, 8 coalesced
  tasks) and body bytes of 100 re-reads of an unchanged 1 MB object with and
  without If-None-Match, charted to docs/img/bench-transport.png.

Baseline and subject are measured alternately (A/B/A/B...) and summarised by
medians, so drift on a shared, noisy machine hits both alike. moto is far
slower than AWS S3 and is the bottleneck of every S3 figure: compare the rows
with each other, not with AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statestore import LocalBackend, MemoryBackend, ObjectBackend, RetryPolicy, StateType, Store
from statestore.backends.base import NotModified, Versioned
from statestore.backends.s3.backend import HISTORY, WRITES_METADATA
from statestore.backends.wrappers import WrapperBackend
from statestore.testing import CountingBackend, MotoServer

W = StateType.WORKFLOWS
TASKS = 8
WRITERS = (1, 2, 4, 8)
WINDOWS = 5  # throughput is the median rate over this many windows of each run
REGION = "us-east-1"
#: Contending processes retry far longer than the default, so a busy benchmark never gives up.
PATIENT = RetryPolicy(attempts=200, base_delay=0.005, max_delay=0.25, deadline=120.0)

SERVER = textwrap.dedent(
    """
    import sys
    from statestore.testing import MotoServer

    with MotoServer() as server:
        print(server.endpoint_url, flush=True)
        sys.stdin.read()  # serve until the benchmark closes our stdin
    """
)

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    sys.path.insert(0, sys.argv[1])
    from bench import backend_for, hammer

    async def main(kind: str, where: str, worker: int) -> None:
        backend = backend_for(kind, where)
        print("ready", flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            state_id, start_at, seconds = json.loads(line)
            done, errors = await hammer(backend, state_id, [worker], start_at, seconds)
            print(json.dumps([done, errors]), flush=True)
        await backend.aclose()

    asyncio.run(main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


# -- backends ----------------------------------------------------------------------------------------


def backend_for(kind: str, where: str) -> ObjectBackend:
    """A backend of ``kind``: ``local`` rooted at ``where``, or ``s3`` on ``where`` = ``endpoint bucket``."""
    if kind == "local":
        return LocalBackend(where)
    from statestore import S3Backend  # type: ignore[attr-defined,unused-ignore]

    endpoint, bucket = where.split()
    backend: ObjectBackend = S3Backend(bucket, endpoint_url=endpoint, region=REGION)
    return backend


def s3_available() -> bool:
    try:
        from statestore import S3Backend  # type: ignore[attr-defined,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in a child process; yields its endpoint URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        if not endpoint.startswith("http://127.0.0.1:"):
            raise RuntimeError("the moto server did not start (is the 'test' extra installed?)")
        yield endpoint
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def raw_client(endpoint: str) -> Any:
    """An aioboto3 S3 client context manager configured as plainly as the floor should be."""
    import aioboto3
    from aiobotocore.config import AioConfig

    return aioboto3.Session().client(
        "s3", endpoint_url=endpoint, region_name=REGION, config=AioConfig(s3={"addressing_style": "path"})
    )


# -- requests per operation ----------------------------------------------------------------------------


OPS: dict[str, Callable[[Store, str, int], Awaitable[Any]]] = {
    "get_state": lambda store, sid, i: store.get_state(sid, W),
    "save_state": lambda store, sid, i: store.save_state("k", i, sid, W),
    "save_state_object": lambda store, sid, i: store.save_state_object(sid, {"k": i, "o": i}, W),
}


@dataclass
class Row:
    cells: list[str]


def print_section(title: str, header: list[str], rows: list[Row]) -> None:
    widths = [max(len(header[c]), *(len(r.cells[c]) for r in rows)) for c in range(len(header))]
    line = "  ".join(h.ljust(w) if c == 0 else h.rjust(w) for c, (h, w) in enumerate(zip(header, widths, strict=True)))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for row in rows:
        print(
            "  ".join(
                v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row.cells, widths, strict=True))
            )
        )
    sys.stdout.flush()


async def count_requests(make: Callable[[], ObjectBackend], label: str, steady: int) -> list[Row]:
    """Requests per operation for each op: cold, steady single writer, 8 concurrent tasks on one id."""
    rows = []
    for name, op in OPS.items():
        sid = f"count-{label}-{name}"
        seeder = Store(make())
        await seeder.save_state_object(sid, {"k": -1, "seed": True}, W)
        await seeder.aclose()
        cells = [f"{label}: {name}"]

        counting = CountingBackend(make())
        store = Store(counting)
        await op(store, sid, 0)  # cold: nothing cached
        cells.append(per_op(counting.counts, 1))

        await op(store, sid, 1)  # warm up (get_state does not use the cache)
        counting.reset()
        for i in range(steady):
            await op(store, sid, 2 + i)
        cells.append(per_op(counting.counts, steady))

        counting.reset()
        rounds = max(2, steady // TASKS)

        async def task(
            t: int, op: Callable[[Store, str, int], Awaitable[Any]], store: Store, sid: str, rounds: int
        ) -> None:
            for r in range(rounds):
                await op(store, sid, 1000 * (t + 1) + r)

        await asyncio.gather(*(task(t, op, store, sid, rounds) for t in range(TASKS)))
        cells.append(per_op(counting.counts, TASKS * rounds))
        cells.append(f"{counting.counts['put'] / (TASKS * rounds):.3f}")
        await store.aclose()
        rows.append(Row(cells))
    return rows


def per_op(counts: Counter[str], ops: int) -> str:
    gets, puts = counts["get"] / ops, counts["put"] / ops
    return f"{gets + puts:.2f} ({gets:.2f}G+{puts:.2f}P)"


# -- time per save_state ---------------------------------------------------------------------------------


def interleaved(
    n: int, subjects: dict[str, Callable[[int], Awaitable[None]]]
) -> Callable[[], Awaitable[dict[str, float]]]:
    """Run each subject once per round, rotating which goes first; returns the median seconds of each."""

    async def run() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in subjects}
        names = list(subjects)
        for i in range(n):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                await subjects[name](i)
                times[name].append(time.perf_counter() - started)
        return {name: statistics.median(values) for name, values in times.items()}

    return run


async def time_s3(endpoint: str, bucket: str, n: int) -> list[Row]:
    import aioboto3

    counting = CountingBackend(backend_for("s3", f"{endpoint} {bucket}"))
    store = Store(counting)
    await store.save_state_object("timed", {"k": 0, "name": "steady"}, W)
    key = store.key("timed", W).object_key
    size = len(json.dumps({"k": 0, "name": "steady"}))
    naive_requests: Counter[str] = Counter()
    session = aioboto3.Session()

    async with raw_client(endpoint) as client:
        await client.put_object(Bucket=bucket, Key="floor.json", Body=b"x" * size)

        async def floor(i: int) -> None:
            await client.put_object(Bucket=bucket, Key="floor.json", Body=b'{"k":%d,"name":"floor"}' % i)

        async def ours(i: int) -> None:
            await store.save_state("k", i + 1, "timed", W)

        async def naive(i: int) -> None:
            await naive_save(session, endpoint, bucket, "naive/" + key, "k", i + 1, naive_requests)

        counting.reset()
        medians = await interleaved(n, {"floor": floor, "statestore": ours, "naive": naive})()
    ours_requests = (counting.counts["get"] + counting.counts["put"]) / n
    naive_per_save = (naive_requests["get"] + naive_requests["put"]) / n
    await store.aclose()
    f, s, v = medians["floor"], medians["statestore"], medians["naive"]
    rows = [
        Row(["raw aioboto3 put_object (floor, reused client)", ms(f), "1.00", "1.00"]),
        Row(["statestore save_state (steady single writer)", ms(s), f"{s / f:.2f}", f"{ours_requests:.2f}"]),
        Row(["naive: new client, get + merge + put", ms(v), f"{v / f:.2f}", f"{naive_per_save:.2f}"]),
        Row(["naive / statestore", "", f"{v / s:.2f}", f"{naive_per_save / ours_requests:.2f}"]),
    ]
    return rows


async def naive_save(
    session: Any, endpoint: str, bucket: str, key: str, name: str, value: Any, counter: Counter[str]
) -> None:
    """The replaced service's save: a new client, read the state, merge, write it back unconditionally."""
    async with session.client("s3", endpoint_url=endpoint, region_name=REGION) as client:
        counter["get"] += 1
        try:
            response = await client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as body:
                state = json.loads(await body.read())
        except client.exceptions.NoSuchKey:
            state = {}
        state[name] = value
        counter["put"] += 1
        await client.put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode())


async def time_local(root: Path, n: int) -> list[Row]:
    raw_dir = root / "raw"
    raw_dir.mkdir(parents=True)
    durable = Store(LocalBackend(root / "durable"))
    relaxed = Store(LocalBackend(root / "relaxed", durable=False))
    for store in (durable, relaxed):
        await store.save_state_object("timed", {"k": 0, "name": "steady"}, W)

    def raw_write(i: int) -> None:
        tmp, final = raw_dir / ".state.tmp", raw_dir / "state.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b'{"k":%d,"name":"steady"}' % i)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    async def raw(i: int) -> None:
        raw_write(i)

    async def raw_thread(i: int) -> None:
        await asyncio.to_thread(raw_write, i)

    async def ours(i: int) -> None:
        await durable.save_state("k", i + 1, "timed", W)

    async def ours_relaxed(i: int) -> None:
        await relaxed.save_state("k", i + 1, "timed", W)

    medians = await interleaved(n, {"raw": raw, "raw_thread": raw_thread, "durable": ours, "relaxed": ours_relaxed})()
    base = medians["raw"]
    return [
        Row(["raw write + fsync + os.replace (floor)", us(base), "1.00"]),
        Row(
            [
                "the same, in a worker thread (one to_thread hop)",
                us(medians["raw_thread"]),
                f"{medians['raw_thread'] / base:.2f}",
            ]
        ),
        Row(
            [
                "statestore save_state (durable=True, the default)",
                us(medians["durable"]),
                f"{medians['durable'] / base:.2f}",
            ]
        ),
        Row(
            [
                "statestore save_state (durable=False: no dir fsync)",
                us(medians["relaxed"]),
                f"{medians['relaxed'] / base:.2f}",
            ]
        ),
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


# -- throughput ---------------------------------------------------------------------------------------------


async def hammer(
    backend: ObjectBackend, state_id: str, workers: list[int], start_at: float, seconds: float
) -> tuple[list[float], int]:
    """Each of ``workers`` (a task) updates its own key of one state until the time is up.

    Returns when each update completed (seconds after ``start_at``) and how many gave up.
    """
    store = Store(backend, retry=PATIENT)
    done: list[float] = []
    errors = 0

    async def one(worker: int) -> None:
        nonlocal errors
        await store.save_state(f"w{worker}", -1, state_id, W)  # warm the cache before the clock starts
        await asyncio.sleep(max(0.0, start_at - time.time()))
        i = 0
        while time.time() < start_at + seconds:
            try:
                await store.save_state(f"w{worker}", i, state_id, W)
            except Exception:
                errors += 1
                continue
            done.append(time.time() - start_at)
            i += 1

    await asyncio.gather(*(one(w) for w in workers))
    return done, errors


def rate(done: list[float], seconds: float) -> float:
    """Updates/s: the median over ``WINDOWS`` equal windows, so one stall of the shared machine counts once."""
    width = seconds / WINDOWS
    counts = [0] * WINDOWS
    for t in done:
        if 0 <= t < seconds:
            counts[min(WINDOWS - 1, int(t / width))] += 1
    return statistics.median(counts) / width


async def throughput_tasks(kind: str, where: str, seconds: float) -> list[float]:
    rates = []
    for n in WRITERS:
        backend = backend_for(kind, where)
        done, _ = await hammer(backend, f"tasks-{n}", list(range(n)), time.time() + 0.2, seconds)
        await backend.aclose()
        rates.append(rate(done, seconds))
    return rates


def throughput_processes(kind: str, where: str, seconds: float) -> tuple[list[float], int]:
    here = str(Path(__file__).resolve().parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, here, kind, where, str(w)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(max(WRITERS))
    ]
    rates, errors = [], 0
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a benchmark worker failed to start")
        for n in WRITERS:
            start_at = time.time() + 1.0  # time for every worker to warm its cache first
            for p in procs[:n]:
                assert p.stdin is not None
                p.stdin.write(json.dumps([f"procs-{n}", start_at, seconds]) + "\n")
                p.stdin.flush()
            done: list[float] = []
            for p in procs[:n]:
                assert p.stdout is not None
                d, e = json.loads(p.stdout.readline())
                done, errors = done + d, errors + e
            rates.append(rate(done, seconds))
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return rates, errors


def chart(path: Path, series: dict[str, list[float]]) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"\nmatplotlib is missing (pip install -e '.[bench]'); no chart written to {path}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=80)
    for label, rates in series.items():
        ax.plot(WRITERS, rates, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(WRITERS, [str(n) for n in WRITERS])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent writers on one id")
    ax.set_ylabel("updates/s (save_state)")
    ax.set_title("statestore: updates/s against writers on one state")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"\nchart written to {path}")


# -- scale: memory and listing as states grow in number and size ------------------------------------------

SCALE_SIZES = (1_000, 100_000, 1_000_000)  # bytes per state in the RSS run
#: glibc malloc settings that keep freed 1 MB buffers from lingering in per-thread arenas.
ALLOCATOR_SETTINGS = ("MALLOC_ARENA_MAX=1", "MALLOC_MMAP_THRESHOLD_=131072")

#: Runs one scale measurement with the statestore found in argv[1] (a source tree: this one, or a baseline).
SCALE_WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time, tracemalloc
    sys.path.insert(0, sys.argv[1])
    import statestore
    from statestore import LocalBackend, StateType, Store
    W = StateType.WORKFLOWS
    job = json.loads(sys.argv[2])

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def bare(base, stat=False):
        n = 0
        with os.scandir(base) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as inner:
                        for f in inner:
                            if f.name == "config.json" and f.is_file(follow_symlinks=False):
                                if stat:
                                    f.stat(follow_symlinks=False)
                                n += 1
        return n

    async def listing(store, reps, base=None):
        out = {"list": 1e9, "iter": 1e9, "first": 1e9, "list_cpu": 1e9, "bare": 1e9, "bare_cpu": 1e9}
        out.update({"info": 1e9, "info_cpu": 1e9, "bare_stat": 1e9, "bare_stat_cpu": 1e9})
        await store.get_state("warm-up", W)  # opens the S3 client: not part of a listing
        for _ in range(reps):
            if base:
                t, c = time.perf_counter(), time.process_time()
                bare(base)
                out["bare"] = min(out["bare"], time.perf_counter() - t)
                out["bare_cpu"] = min(out["bare_cpu"], time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            ids = await store.list_states(W)
            out["list"] = min(out["list"], time.perf_counter() - t)
            out["list_cpu"] = min(out["list_cpu"], time.process_time() - c)
            if base:
                t, c = time.perf_counter(), time.process_time()
                bare(base, stat=True)
                out["bare_stat"] = min(out["bare_stat"], time.perf_counter() - t)
                out["bare_stat_cpu"] = min(out["bare_stat_cpu"], time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            async for _ in store.iter_state_info(W):
                pass
            out["info"] = min(out["info"], time.perf_counter() - t)
            out["info_cpu"] = min(out["info_cpu"], time.process_time() - c)
            t, first, n = time.perf_counter(), None, 0
            async for _ in store.iter_states(W):
                first = time.perf_counter() - t if first is None else first
                n += 1
            out["iter"] = min(out["iter"], time.perf_counter() - t)
            out["first"] = min(out["first"], first or 0.0)
        tracemalloc.start()
        async for _ in store.iter_states(W):
            pass
        out["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["n"] = len(ids)
        return out

    async def main():
        if job["kind"] == "rss":
            store = Store(LocalBackend(job["root"], durable=False))
            blob = "x" * job["size"]
            await store.save_state_object("warm-up", {"blob": blob, "i": -1}, W)
            before = rss()
            for i in range(job["n"]):
                await store.save_state_object(f"s{i:05d}", {"blob": blob, "i": i}, W)
            return {"growth": rss() - before}
        if job["kind"] == "local":
            base = os.path.join(job["root"], "persistent-artifacts/apps/default/workflows")
            return await listing(Store(LocalBackend(job["root"])), job["reps"], base)
        store = Store(statestore.S3Backend(job["bucket"], endpoint_url=job["endpoint"], region="us-east-1"))
        try:
            return await listing(store, job["reps"])
        finally:
            await store.aclose()

    print(json.dumps(asyncio.run(main())))
    """
)


def scale_job(src: Path, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, float]:
    """One scale measurement in a fresh process, with the statestore of source tree ``src`` (and ``env`` added)."""
    out = subprocess.run(
        [sys.executable, "-c", SCALE_WORKER, str(src), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(f"scale worker failed on {src}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def make_tree(root: Path, n: int) -> Path:
    """``n`` small workflow states laid out as the local backend writes them (made once, reused in the run)."""
    base = root / "persistent-artifacts" / "apps" / "default" / "workflows"
    if not base.exists():
        base.mkdir(parents=True)
        for i in range(n):
            state = base / f"wf-{i:06d}"
            state.mkdir()
            (state / "config.json").write_bytes(b'{"i":%d}' % i)
            (state / ".config.json.lock").touch()
    return root


async def fill_bucket(endpoint: str, bucket: str, n: int) -> None:
    async with raw_client(endpoint) as client:
        await client.create_bucket(Bucket=bucket)
        limit = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with limit:
                key = f"persistent-artifacts/apps/default/workflows/wf-{i:06d}/config.json"
                await client.put_object(Bucket=bucket, Key=key, Body=b'{"i":%d}' % i)

        await asyncio.gather(*(put(i) for i in range(n)))


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def scale_section(args: argparse.Namespace, endpoint: str | None, root: Path) -> dict[str, dict[str, float]]:
    """RSS growth of one store over many distinct states, and listings against a bare walk; before/after."""
    here = Path(__file__).resolve().parent.parent
    versions = {"after": here} if args.baseline is None else {"before": args.baseline.resolve(), "after": here}
    states = 100 if args.quick else 1000
    reps = 2 if args.quick else 3
    figures: dict[str, dict[str, float]] = {}

    rows = []
    for size in SCALE_SIZES:
        cells = [f"{size // 1000} KB x {states}"]
        for name, src in versions.items():
            got = scale_job(src, {"kind": "rss", "root": str(root / f"rss-{name}-{size}"), "size": size, "n": states})
            figures[f"rss {name} {size}"] = got
            cells.append(mib(got["growth"]))
        if len(versions) == 2:
            cells.append(
                f"{figures[f'rss after {size}']['growth'] / max(figures[f'rss before {size}']['growth'], 1):.2f}"
            )
        rows.append(Row(cells))
    header = ["states", *(f"RSS growth {name}" for name in versions)] + (["after/before"] if len(versions) == 2 else [])
    print_section(f"Scale: RSS growth of one store saving {states} distinct states (cache bound 64 MiB)", header, rows)
    rows = []
    for setting in ALLOCATOR_SETTINGS:
        size = SCALE_SIZES[-1]
        job = {"kind": "rss", "root": str(root / f"rss-{setting}"), "size": size, "n": states}
        got = scale_job(here, job, dict([setting.split("=")]))
        figures[f"rss {setting} {size}"] = got
        rows.append(Row([setting, mib(got["growth"])]))
    print_section(
        "Scale: the same with 1 MB states, glibc malloc tuned (what is above the bound is the allocator's)",
        ["environment", "RSS growth after"],
        rows,
    )

    rows = []
    counts = [1_000, 10_000] + ([100_000] if args.scale_100k else [])
    for n in counts:
        tree = make_tree(root / f"tree-{n}", n)
        cells = [f"{n:,}"]
        for name, src in versions.items():
            got = scale_job(src, {"kind": "local", "root": str(tree), "reps": reps})
            figures[f"local {name} {n}"] = got
            cells += [
                f"{got['list'] / got['bare']:.2f}",
                f"{got['list_cpu'] / got['bare_cpu']:.2f}",
                f"{got['iter'] / got['bare']:.2f}",
                f"{got['info_cpu'] / got['bare_cpu']:.2f} / {got['info_cpu'] / got['bare_stat_cpu']:.2f}",
                ms(got["first"]),
                f"{got['peak'] / 1024:.0f} KB",
            ]
        cells.insert(1, ms(figures[f"local after {n}"]["bare"]))
        rows.append(Row(cells))
    header = ["local states", "bare walk"]
    for name in versions:
        header += [f"list x bare {name}", f"(CPU) {name}", f"iter x bare {name}", f"info x bare/+lstat (CPU) {name}"]
        header += [f"1st id {name}", f"iter peak {name}"]
    print_section(f"Scale: listing local states (best of {reps}; bare = os.scandir walk + file check)", header, rows)

    if endpoint is not None:
        n = 1_000 if args.quick else 10_000
        asyncio.run(fill_bucket(endpoint, "scale", n))
        cells = [f"{n:,}"]
        for name, src in versions.items():
            got = scale_job(src, {"kind": "s3", "endpoint": endpoint, "bucket": "scale", "reps": reps})
            figures[f"s3 {name} {n}"] = got
            cells += [ms(got["iter"]), ms(got["first"]), f"{got['peak'] / 1024:.0f} KB"]
        rows = [Row(cells)]
        header = ["S3 states"]
        for name in versions:
            header += [f"iter {name}", f"1st id {name}", f"iter peak {name}"]
        print_section("Scale: iter_states on S3 (moto, pages of 1000)", header, rows)
    scale_chart(args.scale_chart, figures, versions, counts)
    return figures


def scale_chart(path: Path, figures: dict[str, dict[str, float]], versions: dict[str, Path], counts: list[int]) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"\nmatplotlib is missing (pip install -e '.[bench]'); no chart written to {path}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss, lists) = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=80)
    for color, name in zip(("tab:blue", "tab:orange"), versions, strict=False):
        rss.plot(
            [s / 1000 for s in SCALE_SIZES],
            [figures[f"rss {name} {s}"]["growth"] / 2**20 for s in SCALE_SIZES],
            marker="o",
            color=color,
            label=name,
        )
        lists.plot(
            counts,
            [figures[f"local {name} {n}"]["list_cpu"] / figures[f"local {name} {n}"]["bare_cpu"] for n in counts],
            marker="o",
            color=color,
            label=f"list_states, {name}",
        )
        lists.plot(
            counts,
            [figures[f"local {name} {n}"]["info_cpu"] / figures[f"local {name} {n}"]["bare_cpu"] for n in counts],
            marker="s",
            linestyle=":",
            color=color,
            label=f"iter_state_info, {name}",
        )
    for marker, setting in zip(("v", "^"), ALLOCATOR_SETTINGS, strict=True):
        rss.plot(
            [SCALE_SIZES[-1] / 1000],
            [figures[f"rss {setting} {SCALE_SIZES[-1]}"]["growth"] / 2**20],
            marker=marker,
            linestyle="",
            color="tab:green",
            label=f"after, {setting}",
        )
    rss.axhline(64, linestyle="--", color="grey", label="cache bound")
    rss.set_xscale("log")
    rss.set_xlabel("state size (KB)")
    rss.set_ylabel("RSS growth (MiB)")
    rss.set_title("one store, many distinct states")
    lists.axhline(2, linestyle="--", color="grey", label="target")
    lists.set_xscale("log")
    lists.set_xlabel("local states")
    lists.set_ylabel("CPU time / bare os.scandir walk's")
    lists.set_title("listing")
    for ax in (rss, lists):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"\nchart written to {path}")


# -- telemetry overhead ----------------------------------------------------------------------------------------

TELEMETRY_JOB = textwrap.dedent(
    """
    import asyncio, json, sys, tempfile, time
    mode, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
    from statestore import LocalBackend, MemoryBackend, StateType, Store

    floor = 0.0
    if mode == "sdk":  # an SDK as an application wires it: batched spans (dropped here), metrics aggregated
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        # The SDK's own floor: one current span with 4 attributes and one histogram record with 5.
        tracer = trace.get_tracer("floor")
        histogram = metrics.get_meter("floor").create_histogram("floor", "s")
        attrs = {"a": "get_state", "b": "default", "c": "memory", "d": "workflows"}
        start = time.process_time()
        for _ in range(n):
            span = tracer.start_span("floor", attributes=attrs)
            with trace.use_span(span):
                pass
            span.end()
            histogram.record(0.001, {**attrs, "e": "ok"})
        floor = (time.process_time() - start) / n

    async def main(root):
        store = Store(MemoryBackend() if kind == "memory" else LocalBackend(root))
        W = StateType.WORKFLOWS
        for i in range(n // 10):  # warm-up
            await store.save_state("k", i, "w", W)
            await store.get_state("w", W)
        start = time.process_time()
        for i in range(n):
            await store.save_state("k", i, "w", W)
            await store.get_state("w", W)
        return (time.process_time() - start) / (2 * n)

    with tempfile.TemporaryDirectory() as root:
        print(json.dumps({"op": asyncio.run(main(root)), "floor": floor}))
    """
)
TELEMETRY_MODES = {
    "absent": "opentelemetry not installed",
    "api": "opentelemetry-api, no provider set",
    "sdk": "SDK tracer + meter providers",
}


def telemetry_section(args: argparse.Namespace) -> None:
    """CPU time per operation (save_state, get_state) without opentelemetry, with the API alone, with the SDK.

    Each figure is a fresh process; the modes alternate round by round and each is the median of its rounds.
    CPU time (not wall time) so that other load on the machine counts less. ``SDK floor`` is what the SDK
    itself costs for one span and one histogram record, measured in the same process as the SDK row.
    """
    rounds = 3 if args.quick else 7
    rows = []
    for kind, n in (("memory", 2000 if args.quick else 10000), ("local", 200 if args.quick else 1000)):
        cost: dict[str, list[float]] = {mode: [] for mode in TELEMETRY_MODES}
        floors: list[float] = []
        for _ in range(rounds):
            for mode in TELEMETRY_MODES:
                out = subprocess.run(
                    [sys.executable, "-c", TELEMETRY_JOB, mode, kind, str(n)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                job = json.loads(out.stdout)
                cost[mode].append(job["op"])
                if mode == "sdk":
                    floors.append(job["floor"])
        base = statistics.median(cost["absent"])
        for mode, label in TELEMETRY_MODES.items():
            per_op = statistics.median(cost[mode])
            extra = us(per_op - base) if mode != "absent" else ""
            rows.append(Row([f"{kind}: {label}", us(per_op), f"{base / per_op:.2f}", extra]))
        rows.append(Row([f"{kind}: SDK floor (1 span + 1 histogram record)", us(statistics.median(floors)), "", ""]))
    print_section(
        f"Telemetry: CPU time per operation (save_state, get_state; one task), median of {rounds} alternating runs",
        ["", "CPU/op", "ops/s x without", "added/op"],
        rows,
    )


# -- conditional reads: re-reading an unchanged state ---------------------------------------------------------

READS = 100
READ_STATE_BYTES = 1_000_000


class Unconditional(WrapperBackend):
    """Drops ``if_none_match``: every get returns the whole object, as reads did before conditional reads."""

    async def get(self, key: str, *, if_none_match: str | None = None) -> Versioned | NotModified | None:
        return await self.inner.get(key)


async def reread_bytes(backend: ObjectBackend, conditional: bool, reads: int) -> tuple[int, int, float]:
    """Bytes the backend returned for ``reads`` ``get_state`` of an unchanged 1 MB state, its GETs, and the time."""
    counting = CountingBackend(backend if conditional else Unconditional(backend))
    async with Store(counting) as store:
        sid = f"reread-{'on' if conditional else 'off'}"
        await store.save_state_object(sid, {"blob": "x" * READ_STATE_BYTES}, W)
        await store.get_state(sid, W)
        counting.reset()
        started = time.perf_counter()
        for _ in range(reads):
            await store.get_state(sid, W)
        return counting.bytes_read, counting.counts["get"], time.perf_counter() - started


async def conditional_reads(endpoint: str | None, bucket: str, root: Path, quick: bool) -> list[Row]:
    """``get_state`` re-reads of an unchanged 1 MB state: bytes the backend returned, conditional read off vs on."""
    reads = 20 if quick else READS
    makers: dict[str, Callable[[], ObjectBackend]] = {
        "memory": MemoryBackend,
        "local": lambda: LocalBackend(root / "rereads"),
    }
    if endpoint is not None:
        makers["S3 (moto)"] = lambda: backend_for("s3", f"{endpoint} {bucket}")
    rows = []
    for label, make in makers.items():
        cells = [label]
        got = {}
        for conditional in (False, True):
            backend = make()
            try:
                got[conditional] = await reread_bytes(backend, conditional, reads)
            finally:
                await backend.aclose()
        (off, gets_off, t_off), (on, gets_on, t_on) = got[False], got[True]
        cells += [f"{off:,}", f"{on:,}", f"{100 * on / max(off, 1):.2f}%", f"{gets_off}/{gets_on}"]
        cells += [ms(t_off / reads), ms(t_on / reads)]
        rows.append(Row(cells))
    return rows


# -- transports: aioboto3 and obstore, each against its own raw client ------------------------------------


@dataclass
class Cost:
    """Median client CPU and wall seconds per operation."""

    cpu: float
    wall: float


async def measure(rounds: int, n: int, subjects: dict[str, Callable[[int], Awaitable[None]]]) -> dict[str, Cost]:
    """Each subject runs ``n`` operations per round, the order rotating each round; medians per operation."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
    names = list(subjects)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for i in range(5):  # warm: connections open, caches filled
                await subjects[name](-1 - i)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(n):
                await subjects[name](r * n + i)
            samples[name].append(((time.process_time() - cpu) / n, (time.perf_counter() - wall) / n))
    return {
        name: Cost(statistics.median(c for c, _ in got), statistics.median(w for _, w in got))
        for name, got in samples.items()
    }


def obstore_raw_store(endpoint: str, bucket: str) -> Any:
    """An obstore ``S3Store`` configured as plainly as the floor should be (path style, no retries)."""
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=endpoint,
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
        retry_config={"max_retries": 0},
    )


async def transport_requests(endpoint: str, bucket: str, transport: str, steady: int) -> tuple[float, float]:
    """PUTs per steady single-writer ``save_state``, and per update of 8 coalesced tasks on one id."""
    from statestore import S3Backend

    counting = CountingBackend(S3Backend(bucket, endpoint_url=endpoint, region=REGION, client=transport))
    store = Store(counting)
    sid = f"requests-{transport}"
    await store.save_state("k", 0, sid, W)
    counting.reset()
    for i in range(steady):
        await store.save_state("k", i + 1, sid, W)
    single = counting.counts["put"] / steady
    rounds = max(2, steady // TASKS)
    counting.reset()

    async def task(t: int) -> None:
        for r in range(rounds):
            await store.save_state(f"t{t}", r, sid, W)

    await asyncio.gather(*(task(t) for t in range(TASKS)))
    coalesced = counting.counts["put"] / (TASKS * rounds)
    await store.aclose()
    return single, coalesced


async def conditional_read_bytes(endpoint: str, bucket: str, transport: str, reads: int) -> tuple[int, int]:
    """Body bytes received by ``reads`` plain reads, and by ``reads`` conditional reads, of an unchanged 1 MB object."""
    from statestore import S3Backend
    from statestore.backends.base import Versioned

    backend = S3Backend(bucket, endpoint_url=endpoint, region=REGION, client=transport)
    key = f"bytes-{transport}/config.json"
    etag = (await backend.put(key, b"x" * 1_000_000)).etag
    plain = conditional = 0
    for _ in range(reads):
        got = await backend.get(key)
        plain += len(got.data) if got is not None else 0
        again = await backend.get(key, if_none_match=etag)
        conditional += len(again.data) if isinstance(again, Versioned) else 0
    await backend.aclose()
    return plain, conditional


async def transport_section(endpoint: str, quick: bool) -> dict[str, dict[str, Cost]]:
    """statestore on each transport against that transport's raw conditional put and plain get, in one run."""
    import obstore
    from obstore.store import S3Store

    from statestore import S3Backend

    rounds, n = (6, 20) if quick else (30, 30)  # fine interleaving: drift and load hit every subject alike
    bucket = "bench-transport"
    async with raw_client(endpoint) as client:
        await client.create_bucket(Bucket=bucket)
        raw_store: S3Store = obstore_raw_store(endpoint, bucket)
        stores = {
            t: Store(S3Backend(bucket, endpoint_url=endpoint, region=REGION, client=t)) for t in ("aioboto3", "obstore")
        }
        body = b'{"k":0,"name":"steady"}'
        etags: dict[str, str] = {}
        for t in stores:
            await stores[t].save_state_object(f"timed-{t}", {"k": 0, "name": "steady"}, W)
            etags[t] = (await client.put_object(Bucket=bucket, Key=f"raw-{t}.json", Body=body))["ETag"]
        etags["h"] = (await client.put_object(Bucket=bucket, Key="raw-obstore-h.json", Body=body))["ETag"]

        async def raw_obstore_put(i: int) -> None:
            result = await obstore.put_async(
                raw_store, "raw-obstore.json", b'{"k":%d,"name":"steady"}' % i, mode={"e_tag": etags["obstore"]}
            )
            etags["obstore"] = result["e_tag"] or ""

        header = {WRITES_METADATA: ",".join(os.urandom(8).hex() for _ in range(HISTORY))}

        async def raw_obstore_put_with_history(i: int) -> None:
            """The raw put carrying what every statestore put carries: the write-id history (1.7 KB of metadata)."""
            result = await obstore.put_async(
                raw_store,
                "raw-obstore-h.json",
                b'{"k":%d,"name":"steady"}' % i,
                mode={"e_tag": etags["h"]},
                attributes=header,
            )
            etags["h"] = result["e_tag"] or ""

        async def raw_aioboto3_put(i: int) -> None:
            response = await client.put_object(
                Bucket=bucket, Key="raw-aioboto3.json", Body=b'{"k":%d,"name":"steady"}' % i, IfMatch=etags["aioboto3"]
            )
            etags["aioboto3"] = response["ETag"]

        async def raw_obstore_get(i: int) -> None:
            got = await obstore.get_async(raw_store, "raw-obstore.json")
            await got.bytes_async()

        async def raw_aioboto3_get(i: int) -> None:
            response = await client.get_object(Bucket=bucket, Key="raw-aioboto3.json")
            async with response["Body"] as stream:
                await stream.read()

        def save(t: str) -> Callable[[int], Awaitable[None]]:
            async def run(i: int) -> None:
                await stores[t].save_state("k", i, f"timed-{t}", W)

            return run

        def get(t: str) -> Callable[[int], Awaitable[None]]:
            async def run(i: int) -> None:
                await stores[t].get_state(f"timed-{t}", W)

            return run

        # Each transport against its own raw call, measured apart: botocore's bursts of garbage (and the
        # collections they set off) land in its own rounds, not in the obstore rounds they would skew.
        puts = await measure(
            rounds,
            n,
            {
                "raw obstore put_async(mode=e_tag)": raw_obstore_put,
                "raw obstore put, + write-id header": raw_obstore_put_with_history,
                "statestore save_state (obstore)": save("obstore"),
            },
        )
        puts |= await measure(
            rounds,
            n,
            {
                "raw aioboto3 put_object(IfMatch)": raw_aioboto3_put,
                "statestore save_state (aioboto3)": save("aioboto3"),
            },
        )
        gets = await measure(
            rounds, n, {"raw obstore get_async": raw_obstore_get, "statestore get_state (obstore)": get("obstore")}
        )
        gets |= await measure(
            rounds,
            n,
            {"raw aioboto3 get_object": raw_aioboto3_get, "statestore get_state (aioboto3)": get("aioboto3")},
        )
        for store in stores.values():
            await store.aclose()

    def rows(costs: dict[str, Cost], pairs: list[tuple[str, str]]) -> list[Row]:
        out, shown = [], set()
        for raw, ours in pairs:
            for name in (raw, ours):
                if name in shown:
                    continue
                shown.add(name)
                c = costs[name]
                base = costs[raw]
                out.append(Row([name, ms(c.cpu), ms(c.wall), f"{c.cpu / base.cpu:.2f}", f"{c.wall / base.wall:.2f}"]))
        return out

    header = ["per operation", "client CPU", "wall", "CPU x raw", "wall x raw"]
    title = f"S3 (moto) transports, median of {rounds} rounds of {n} interleaved operations"
    put_pairs = [
        ("raw obstore put_async(mode=e_tag)", "raw obstore put, + write-id header"),
        ("raw obstore put_async(mode=e_tag)", "statestore save_state (obstore)"),
        ("raw aioboto3 put_object(IfMatch)", "statestore save_state (aioboto3)"),
    ]
    get_pairs = [
        ("raw obstore get_async", "statestore get_state (obstore)"),
        ("raw aioboto3 get_object", "statestore get_state (aioboto3)"),
    ]
    print_section(title + ": steady updates", header, rows(puts, put_pairs))
    print_section(title + ": reads", header, rows(gets, get_pairs))
    a, o = puts["statestore save_state (aioboto3)"], puts["statestore save_state (obstore)"]
    print(f"obstore / aioboto3 save_state: client CPU {o.cpu / a.cpu:.2f}x, wall {o.wall / a.wall:.2f}x")

    steady = 16 if quick else 64
    request_rows = []
    for t in ("aioboto3", "obstore"):
        single, coalesced = await transport_requests(endpoint, bucket, t, steady)
        plain, conditional = await conditional_read_bytes(endpoint, bucket, t, 10 if quick else 100)
        reads = 10 if quick else 100
        request_rows.append(
            Row([t, f"{single:.3f}", f"{coalesced:.3f}", mib(plain), mib(conditional), f"{conditional / plain:.2%}"])
        )
    print_section(
        "Requests and bytes per transport",
        [
            "transport",
            "PUTs/steady update",
            f"PUTs/update, {TASKS} tasks",
            f"{reads} reads of 1 MB",
            "with If-None-Match",
            "share",
        ],
        request_rows,
    )
    return {"updates": puts, "reads": gets}


def transport_chart(path: Path, figures: dict[str, dict[str, Cost]]) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"\nmatplotlib is missing (pip install -e '.[bench]'); no chart written to {path}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=80)
    for ax, what in zip(axes, ("cpu", "wall"), strict=True):
        labels, values = [], []
        for costs in figures.values():
            for name, cost in costs.items():
                labels.append(name.replace(" (", "\n("))
                values.append(getattr(cost, what) * 1000)
        ax.barh(labels, values, color=["#4c72b0" if "obstore" in label else "#dd8452" for label in labels])
        ax.invert_yaxis()
        ax.set_xlabel(f"ms per operation ({'client CPU' if what == 'cpu' else 'wall'})")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("statestore on obstore and aioboto3 against each raw client (moto server)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"\nchart written to {path}")


# -- main ------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, endpoint: str | None, root: Path) -> dict[str, list[float]]:
    steady = 10 if args.quick else 20
    series: dict[str, list[float]] = {}
    bucket = ""
    if endpoint is not None:
        async with raw_client(endpoint) as client:
            bucket = "bench"
            await client.create_bucket(Bucket=bucket)
    header = [
        "backend: operation",
        "cold (new store)",
        "steady single writer",
        f"{TASKS} tasks on one id",
        "PUTs/update",
    ]
    rows = await count_requests(lambda: LocalBackend(root / "counts"), "local", steady)
    if endpoint is not None:
        rows += await count_requests(lambda: backend_for("s3", f"{endpoint} {bucket}"), "s3", steady)
    print_section("Requests per operation (counted; G = GET, P = PUT; the naive way: 2 per save)", header, rows)

    n_local = 100 if args.quick else 400
    rows = await time_local(root / "timing", n_local)
    print_section(f"Local save_state, median of {n_local} interleaved runs", ["", "time", "x floor"], rows)

    if endpoint is not None:
        n_s3 = 20 if args.quick else 100
        rows = await time_s3(endpoint, bucket, n_s3)
        print_section(
            f"S3 (moto) save_state, median of {n_s3} interleaved runs", ["", "time", "x floor", "requests/save"], rows
        )

    seconds = 0.5 if args.quick else 2.5
    where = {"local": str(root / "throughput")}
    if endpoint is not None:
        where["s3"] = f"{endpoint} {bucket}"
    rows = []
    for kind, place in where.items():
        label = "S3 (moto)" if kind == "s3" else kind
        series[f"{label}, tasks in one process"] = await throughput_tasks(kind, place, seconds)
        rates, errors = await asyncio.to_thread(throughput_processes, kind, place, seconds)
        series[f"{label}, processes"] = rates
        if errors:
            print(f"({label} processes: {errors} updates gave up and were retried by the worker)")
    for label, rates in series.items():
        rows.append(Row([label, *(f"{r:.0f}" for r in rates)]))
    print_section(
        f"Updates/s on one id (median of {WINDOWS} windows of a {seconds:g} s run per point)",
        ["writers", *(str(n) for n in WRITERS)],
        rows,
    )
    await reads_section(args, endpoint, bucket, root)
    return series


async def reads_section(args: argparse.Namespace, endpoint: str | None, bucket: str, root: Path) -> None:
    """Print the conditional-reads section (``bucket`` made if empty)."""
    if endpoint is not None and not bucket:
        bucket = "bench-reads"
        async with raw_client(endpoint) as client:
            await client.create_bucket(Bucket=bucket)
    rows = await conditional_reads(endpoint, bucket, root, args.quick)
    reads = 20 if args.quick else READS
    header = ["backend", "bytes read: off", "on", "on/off", "GETs off/on", "per read: off", "on"]
    print_section(
        f"{reads} get_state re-reads of an unchanged 1 MB state: bytes the backend returned, conditional reads off/on",
        header,
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chart", type=Path, default=Path("docs/bench-writers.png"), help="where to write the PNG")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke test, noisy figures)")
    parser.add_argument("--no-s3", action="store_true", help="skip everything that needs the moto server")
    parser.add_argument("--scale", action="store_true", help="also run the scale section (memory, listings)")
    parser.add_argument("--scale-only", action="store_true", help="run only the scale section")
    parser.add_argument("--scale-100k", action="store_true", help="also list 100,000 local states (slow to build)")
    parser.add_argument(
        "--baseline", type=Path, help="source tree of the version to compare the scale figures with (e.g. main)"
    )
    parser.add_argument("--scale-chart", type=Path, default=Path("docs/img/bench-scale.png"), help="the scale PNG")
    parser.add_argument("--reads-only", action="store_true", help="run only the conditional-reads section")
    parser.add_argument("--telemetry", action="store_true", help="also measure what OpenTelemetry costs per operation")
    parser.add_argument("--telemetry-only", action="store_true", help="run only the telemetry section")
    parser.add_argument(
        "--transport", action="store_true", help="run only the transport section (aioboto3 and obstore vs raw)"
    )
    parser.add_argument(
        "--transport-chart", type=Path, default=Path("docs/img/bench-transport.png"), help="the transport PNG"
    )
    args = parser.parse_args()
    for name, value in MotoServer.fake_credentials().items():
        os.environ.setdefault(name, value)
    started = time.monotonic()
    if args.telemetry_only:
        telemetry_section(args)
        return
    use_s3 = not args.no_s3 and s3_available()
    if not use_s3 and not args.no_s3:
        print("S3Backend is not available in this checkout: S3 figures skipped")
    series: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="statestore-bench-") as tmp,
        moto_server() if use_s3 else nullcontext() as endpoint,
    ):
        if args.reads_only:
            asyncio.run(reads_section(args, endpoint, "", Path(tmp)))
        elif args.transport:
            if endpoint is None:
                raise SystemExit("the transport section needs the moto server")
            transport_chart(args.transport_chart, asyncio.run(transport_section(endpoint, args.quick)))
        elif not args.scale_only:
            series = asyncio.run(run(args, endpoint, Path(tmp)))
        if args.scale or args.scale_only:
            scale_section(args, endpoint, Path(tmp))
        if args.telemetry:
            telemetry_section(args)
    if series:
        chart(args.chart, series)
    print(f"\nbenchmark took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
