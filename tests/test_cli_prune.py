"""``statestore list --long`` and ``statestore prune`` through the real console script."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from test_cli import EXE, KEY, clean_env, failed, ok, put, s3_cli, statestore

from statestore.cli.parsing import parse_duration
from statestore.errors import InvalidInputError
from statestore.testing import MotoServer

DAY = 24 * 3600


def put_states(root: Path, ages: dict[str, float], type_: str = "workflows") -> None:
    """Write one state per id, last modified ``ages[id]`` seconds ago."""
    now = time.time()
    for state_id, age in ages.items():
        path = put(root, state_id, b'{"id": "' + state_id.encode() + b'"}', type_)
        os.utime(path, (now - age, now - age))


def test_list_long_shows_size_time_and_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put_states(root, {"w-1": 3 * DAY, "w-22": 0})
    r = ["--root", str(root)]
    lines = sorted(ok(statestore(*r, "list", "--long", cwd=tmp_path)).splitlines())
    rows = [line.split("\t") for line in lines]
    assert [row[0] for row in rows] == ["w-1", "w-22"]
    for row in rows:
        path = root / KEY.format(type="workflows", id=row[0])
        assert int(row[1]) == path.stat().st_size
        shown = datetime.strptime(row[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(shown.timestamp() - path.stat().st_mtime) < 1
        assert row[3] == "-"  # the local listing has no version
    entries = orjson.loads(ok(statestore(*r, "--json", "list", "-l", cwd=tmp_path)))
    assert sorted(e["id"] for e in entries) == ["w-1", "w-22"]
    assert all(e["last_modified"].endswith("Z") and e["version"] is None for e in entries)
    assert ok(statestore(*r, "list", cwd=tmp_path)).count("\t") == 0  # plain list unchanged


def test_list_long_on_s3_shows_the_etag(tmp_path: Path, moto_server: MotoServer) -> None:
    args, env = s3_cli(moto_server, moto_server.create_bucket())
    ok(statestore(*args, "merge", "wf", '{"n": 1}', cwd=tmp_path, env=env))
    [entry] = orjson.loads(ok(statestore(*args, "--json", "list", "--long", cwd=tmp_path, env=env)))
    assert entry["id"] == "wf" and entry["size"] == len(b'{"n":1}') + 1 + 64  # and the write's record
    assert entry["version"].startswith('"') and len(entry["version"]) == 34


def test_prune_dry_run_then_prune(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put_states(root, {"old-1": 40 * DAY, "old-2": 31 * DAY, "fresh": 29 * DAY})
    put_states(root, {"cred-old": 40 * DAY}, type_="credentials")
    r = ["--root", str(root)]

    dry = statestore(*r, "prune", "--type", "workflows", "--older-than", "30d", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["old-1", "old-2"]
    assert dry.stderr == "would prune 2 workflows states\n"
    assert (root / KEY.format(type="workflows", id="old-1")).exists()

    done = statestore(*r, "prune", "--type", "workflows", "--older-than", "30d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["old-1", "old-2"]
    assert done.stderr == "pruned 2 workflows states\n"  # no progress bar: stderr is no terminal
    assert sorted(ok(statestore(*r, "list", cwd=tmp_path)).splitlines()) == ["fresh"]
    assert ok(statestore(*r, "list", "--type", "credentials", cwd=tmp_path)) == "cred-old\n"

    as_json = statestore(*r, "--json", "prune", "--type", "credentials", "--older-than", "1d12h", cwd=tmp_path)
    assert as_json.returncode == 0 and as_json.stderr == ""
    assert orjson.loads(as_json.stdout) == {"type": "credentials", "dry_run": False, "count": 1, "pruned": ["cred-old"]}


@pytest.mark.parametrize("older_than", ["30", "30x", "0d", "-1d", "d", "1.5d", "30d junk", ""])
def test_prune_bad_duration_exits_2_and_deletes_nothing(tmp_path: Path, older_than: str) -> None:
    root = tmp_path / "root"
    put_states(root, {"old": 40 * DAY})
    failed(statestore("--root", str(root), "prune", "--older-than", older_than, cwd=tmp_path), 2)
    assert (root / KEY.format(type="workflows", id="old")).exists()


def test_prune_without_older_than_is_a_usage_error(tmp_path: Path) -> None:
    failed(statestore("--root", str(tmp_path), "prune", cwd=tmp_path), 2, "--older-than")


def test_parse_duration() -> None:
    assert parse_duration("30d").days == 30
    good = ["12h", "15m", "90s", "1d12h"]
    assert [parse_duration(d).total_seconds() for d in good] == [12 * 3600, 900, 90, 36 * 3600]
    for bad in ("", "0s", "10", "5w", "99999999999d"):
        with pytest.raises(InvalidInputError):
            parse_duration(bad)


def test_prune_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put_states(root, {f"old-{i}": 40 * DAY for i in range(3)})
    assert EXE is not None
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [EXE, "--root", str(root), "prune", "--older-than", "30d"],
            cwd=tmp_path,
            env=clean_env(TERM="xterm", COLUMNS="100"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert proc.stdout.decode().splitlines() == ["old-0", "old-1", "old-2"]
    text = seen.decode(errors="replace")
    assert "pruning workflows" in text  # the progress bar
    assert "pruned 3 workflows states" in text
