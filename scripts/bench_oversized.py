"""Reading a stored object far above ``max_state_bytes``: time and peak memory until the store refuses it.

    .venv/bin/python scripts/bench_oversized.py [--only NAME ...]

Each case runs in a fresh process (``ru_maxrss`` is per process and kept across fork and
exec, so the process that plants the object is not the one that measures). The store has
``max_state_bytes`` = 8 MiB; the case reads one state with ``get_state`` and prints the
outcome, the seconds it took and the peak RSS growth (``ru_maxrss`` after the read minus
before it), also as a multiple of the limit:

- ``local-sparse-1g``: a planted sparse 1 GiB ``config.json`` under a ``LocalBackend`` root
  (no disk space, a gigabyte of zeros to read): the case issue 24 item 7 reported;
- ``local-dense-64m``: a planted 64 MiB file of real bytes;
- ``memory-64m``: a 64 MiB object in a ``MemoryBackend`` (already in memory: the growth
  is what reading it costs beyond that);
- ``s3-256m`` / ``s3-256m-obstore``: a 256 MiB object on a moto server (started by this
  script) read through the aioboto3 / obstore transport;
- ``local-8m-state``: control, a valid state just under the limit, read normally.

Target: an object far above the limit (over 2 x limit + 64 KiB) is refused before its body
is read, so its peak RSS growth stays within a few times the limit (printed as ``ok``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from statestore import LocalBackend, MemoryBackend, ObjectBackend, StateStoreError, StateType, Store

W = StateType.WORKFLOWS
LIMIT = 8 * 1024 * 1024
MiB = 1024 * 1024
CASES = ("local-sparse-1g", "local-dense-64m", "memory-64m", "s3-256m", "s3-256m-obstore", "local-8m-state")
#: Peak RSS growth allowed for a refused object, as a multiple of the limit ("a few times the limit").
TARGET_MULTIPLE = 3.0
SERVER = (
    "import sys\nfrom statestore.testing import MotoServer\n"
    "with MotoServer() as server:\n    print(server.endpoint_url, flush=True)\n    sys.stdin.read()\n"
)


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _measure(case: str, root: Path) -> dict[str, Any]:
    backend: ObjectBackend
    if case.startswith("s3"):
        from statestore.backends.s3 import S3Backend
        from statestore.testing import MOTO_REGION, MotoServer

        creds = MotoServer.fake_credentials()
        backend = S3Backend(
            os.environ["BENCH_S3_BUCKET"],
            endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
            region=MOTO_REGION,
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            client="obstore" if case.endswith("obstore") else "aioboto3",
        )
        store = Store(backend, max_state_bytes=LIMIT)
    elif case.startswith("memory"):
        backend = MemoryBackend()
        store = Store(backend, max_state_bytes=LIMIT)
        await backend.put(store.key("wf", W).object_key, b" " * (64 * MiB))
    else:
        backend = LocalBackend(root)
        store = Store(backend, max_state_bytes=LIMIT)
        if case == "local-8m-state":
            await store.save_state("blob", "x" * (LIMIT - 64 * 1024), "wf", W)
            store = Store(LocalBackend(root), max_state_bytes=LIMIT)  # cache cold: the read is a real one
    await store.get_state("other", W)  # warm up imports and the worker threads
    before = _peak()
    started = time.perf_counter()
    try:
        state = await store.get_state("wf", W)
        outcome = f"read ({len(state)} keys)"
    except StateStoreError as exc:
        outcome = type(exc).__name__
    seconds = time.perf_counter() - started
    growth = _peak() - before
    return {"case": case, "outcome": outcome, "seconds": seconds, "rss_growth": growth}


def _plant(case: str, root: Path) -> None:
    """The object the case reads, written behind the store's back (as an attacker or a bug would)."""
    path = root / "persistent-artifacts/apps/default/workflows/wf/config.json"
    if case == "local-sparse-1g":
        path.parent.mkdir(parents=True)
        with open(path, "wb") as f:
            f.truncate(1024 * MiB)
    elif case == "local-dense-64m":
        path.parent.mkdir(parents=True)
        with open(path, "wb") as f:
            for _ in range(64):
                f.write(os.urandom(MiB))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=CASES, help="run only these cases")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.child, Path(args.root)))))
        return 0
    failed = False
    server = None
    if any(case.startswith("s3") for case in args.only or CASES):
        # moto keeps objects in its own process's memory: a server of its own, so that no measuring
        # child inherits (ru_maxrss is kept across fork and exec) the planted 256 MiB
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()
        bucket = "bench-oversized"
        os.environ["BENCH_S3_ENDPOINT"] = endpoint
        os.environ["BENCH_S3_BUCKET"] = bucket
        # planted by a process of its own: ru_maxrss is kept across fork and exec, so a 256 MiB body in this
        # process would hide every measuring child's growth
        plant = (
            "import sys; from statestore.testing import MotoServer\n"
            "s = MotoServer(); s.endpoint_url = sys.argv[1]; c = s.client(); c.create_bucket(Bucket=sys.argv[2])\n"
            "c.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=b' ' * (256 * 1024 * 1024))\n"
        )
        key = "persistent-artifacts/apps/default/workflows/wf/config.json"
        subprocess.run([sys.executable, "-c", plant, endpoint, bucket, key], check=True)
    print(
        f"max_state_bytes = {LIMIT // MiB} MiB; target for a refused object: peak RSS growth <= "
        f"{TARGET_MULTIPLE:g} x limit"
    )
    print(f"{'case':<18} {'outcome':<28} {'seconds':>8} {'RSS growth':>12} {'x limit':>8}")
    for case in args.only or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            _plant(case, Path(tmp))
            out = subprocess.run(
                [sys.executable, __file__, "--child", case, "--root", tmp], capture_output=True, text=True, check=True
            ).stdout
        row = json.loads(out)
        multiple = row["rss_growth"] / LIMIT
        mark = ""
        if case != "local-8m-state":
            ok = row["outcome"] != "read" and multiple <= TARGET_MULTIPLE
            failed = failed or not ok
            mark = "ok" if ok else "MISSED"
        print(
            f"{case:<18} {row['outcome']:<28} {row['seconds']:>8.3f} "
            f"{row['rss_growth'] / MiB:>9.1f} MiB {multiple:>8.2f} {mark}"
        )
    if server is not None and server.stdin is not None:
        server.stdin.close()
        server.wait(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
