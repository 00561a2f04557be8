"""What exact integers and the surrogate check cost: the codec against raw orjson, on ~1 MB states and a small one.

    .venv/bin/python scripts/bench_codec.py [--repeat 7]

``decode`` is ``orjson.loads`` plus the test for integers orjson would round
(a walk of the parsed value for states of few values, a ``bytes.translate`` +
``bytes.find`` scan of the text for dense ones); ``encode`` and
``copy_state`` are orjson with a fallback that costs nothing unless orjson
fails. Each ratio is against the raw orjson call, measured in the same run
(best of ``--repeat``). ``check_json`` has no orjson counterpart; its time is
printed as is.
"""

from __future__ import annotations

import argparse
import random
import string
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from statestore.codec.jsonio import check_json, copy_state, decode, encode
from statestore.keys.paths import state_key


def shapes() -> dict[str, dict[str, Any]]:
    rng = random.Random(1)
    mixed: dict[str, Any] = {}
    i = 0
    while len(mixed) % 500 or len(orjson.dumps(mixed)) < 1_000_000:
        mixed[f"item-{i:06d}"] = {
            "name": "".join(rng.choices(string.ascii_letters, k=20)),
            "count": rng.randint(0, 10**6),
            "ts": 1_700_000_000_000 + i,
            "ratio": rng.random(),
            "tags": ["alpha", "beta", "gamma"],
            "ok": True,
            "note": None,
            "desc": "héllo wörld " * 2,
        }
        i += 1
    return {
        "mixed 1MB": mixed,
        "ints 1MB": {f"k{i}": [rng.randint(0, 10**9) for _ in range(50)] for i in range(2000)},
        "text 1MB": {f"doc{i}": "".join(rng.choices(string.ascii_letters + "    ", k=10_000)) for i in range(100)},
        "small": {"status": "running", "count": 12, "ts": 1_700_000_000_123, "ratio": 0.25, "owner": {"id": 7}},
    }


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def row(name: str, state: dict[str, Any], repeat: int) -> str:
    key = state_key("bench", "workflows", "wf")
    data = orjson.dumps(state)
    number = 20_000 if len(data) < 10_000 else 10
    unit, scale = ("us", 1e6) if len(data) < 10_000 else ("ms", 1e3)
    cells = []
    for ours, theirs in (
        (lambda: decode(data, key), lambda: orjson.loads(data)),
        (lambda: encode(state), lambda: orjson.dumps(state)),
        (lambda: copy_state(state), lambda: orjson.loads(orjson.dumps(state))),
    ):
        base = best(theirs, number, repeat)
        mine = best(ours, number, repeat)
        cells.append(f"{mine * scale:7.3f}{unit} {mine / base:5.2f}x orjson")
    check = best(lambda: check_json(state), max(number // 4, 2), repeat)
    return f"{name:>10} {len(data):>8}   " + "   ".join(cells) + f"   {check * scale:8.3f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="best of this many runs")
    args = parser.parse_args()
    print(f"{'state':>10} {'bytes':>8}   {'decode':>20}   {'encode':>20}   {'copy_state':>20}   {'check_json':>10}")
    for name, state in shapes().items():
        print(row(name, state, args.repeat))


if __name__ == "__main__":
    main()
