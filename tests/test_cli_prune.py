"""``statestore list --long`` and ``statestore prune``: in-process runs (``cli_run``), and on a pseudo-terminal."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from conftest import CliResult
from pseudo_terminal import run_on_terminal
from test_cli import KEY, clean_env, put, s3_cli

from statestore.cli.parsing import parse_duration
from statestore.errors import InvalidInputError
from statestore.testing import MotoServer

DAY = 24 * 3600
Run = Callable[..., CliResult]


def put_states(root: Path, ages: dict[str, float], type_: str = "workflows") -> None:
    """Write one state per id, last modified ``ages[id]`` seconds ago."""
    now = time.time()
    for state_id, age in ages.items():
        path = put(root, state_id, b'{"id": "' + state_id.encode() + b'"}', type_)
        os.utime(path, (now - age, now - age))


def test_list_long_shows_size_time_and_version(tmp_path: Path, cli_run: Run) -> None:
    root = tmp_path / "root"
    put_states(root, {"w-1": 3 * DAY, "w-22": 0})
    r = ["--root", str(root)]
    lines = sorted(cli_run(*r, "list", "--long").ok().splitlines())
    rows = [line.split("\t") for line in lines]
    assert [row[0] for row in rows] == ["w-1", "w-22"]  # piped: no header
    for row in rows:
        path = root / KEY.format(type="workflows", id=row[0])
        assert int(row[1]) == path.stat().st_size
        shown = datetime.strptime(row[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(shown.timestamp() - path.stat().st_mtime) < 1
        assert row[3] == "-"  # the local listing has no version
    entries = orjson.loads(cli_run(*r, "--json", "list", "-l").ok())
    assert sorted(e["id"] for e in entries) == ["w-1", "w-22"]
    assert all(e["last_modified"].endswith("Z") and e["version"] is None for e in entries)
    assert cli_run(*r, "list").ok().count("\t") == 0  # plain list unchanged


def test_list_long_on_s3_shows_the_etag(cli_run: Run, moto_server: MotoServer) -> None:
    args, _ = s3_cli(moto_server, moto_server.create_bucket())
    env = moto_server.fake_credentials()
    cli_run(*args, "merge", "wf", '{"n": 1}', env=env).ok()
    [entry] = orjson.loads(cli_run(*args, "--json", "list", "--long", env=env).ok())
    assert entry["id"] == "wf" and entry["size"] == len(b'{"n":1}') + 1 + 64  # and the write's record
    assert entry["version"].startswith('"') and len(entry["version"]) == 34


def test_prune_dry_run_then_prune(tmp_path: Path, cli_run: Run) -> None:
    root = tmp_path / "root"
    put_states(root, {"old-1": 40 * DAY, "old-2": 31 * DAY, "fresh": 29 * DAY})
    put_states(root, {"cred-old": 40 * DAY}, type_="credentials")
    r = ["--root", str(root)]

    dry = cli_run(*r, "prune", "--type", "workflows", "--older-than", "30d", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines() == ["old-1", "old-2"]
    assert dry.err == "would prune 2 workflow states\n"
    assert (root / KEY.format(type="workflows", id="old-1")).exists()

    done = cli_run(*r, "prune", "--type", "workflows", "--older-than", "30d")
    assert done.code == 0, done.err
    assert done.out.splitlines() == ["old-1", "old-2"]
    assert done.err == "pruned 2 workflow states\n"  # no progress bar: stderr is no terminal
    assert sorted(cli_run(*r, "list").ok().splitlines()) == ["fresh"]
    assert cli_run(*r, "list", "--type", "credentials").ok() == "cred-old\n"

    put_states(root, {"cred-2": 40 * DAY}, type_="credentials")
    one = cli_run(*r, "prune", "--type", "credentials", "--older-than", "30d", "--dry-run")
    assert one.err == "would prune 2 credential states\n"
    as_json = cli_run(*r, "--json", "prune", "--type", "credentials", "--older-than", "1d12h")
    assert as_json.code == 0 and as_json.err == ""
    assert orjson.loads(as_json.out) == {
        "type": "credentials",
        "dry_run": False,
        "count": 2,
        "pruned": ["cred-2", "cred-old"],
    }
    put_states(root, {"last": 40 * DAY})
    assert cli_run(*r, "prune", "--older-than", "30d").err == "pruned 1 workflow state\n"


@pytest.mark.parametrize("older_than", ["30", "30x", "0d", "-1d", "d", "1.5d", "30d junk", ""])
def test_prune_bad_duration_exits_2_and_deletes_nothing(tmp_path: Path, cli_run: Run, older_than: str) -> None:
    root = tmp_path / "root"
    put_states(root, {"old": 40 * DAY})
    cli_run("--root", str(root), "prune", "--older-than", older_than).failed(2)
    assert (root / KEY.format(type="workflows", id="old")).exists()


def test_prune_without_older_than_is_a_usage_error(tmp_path: Path, cli_run: Run) -> None:
    cli_run("--root", str(tmp_path), "prune").failed(2, "--older-than")


def test_parse_duration() -> None:
    assert parse_duration("30d").days == 30
    good = ["12h", "15m", "90s", "1d12h"]
    assert [parse_duration(d).total_seconds() for d in good] == [12 * 3600, 900, 90, 36 * 3600]
    for bad in ("", "0s", "10", "5w", "99999999999d"):
        with pytest.raises(InvalidInputError):
            parse_duration(bad)


def test_prune_shows_progress_on_a_terminal_and_erases_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put_states(root, {f"old-{i}": 40 * DAY for i in range(3)})
    run = run_on_terminal(
        "--root", str(root), "prune", "--older-than", "30d", cwd=tmp_path, env=clean_env(), pipe_stdout=True
    )
    assert run.code == 0, run.raw
    assert run.piped_stdout is not None and run.piped_stdout.splitlines() == ["old-0", "old-1", "old-2"]
    assert "pruning workflows" in run.raw  # the progress bar, on stderr
    assert run.screen == ["pruned 3 workflow states"]  # the bar erased
