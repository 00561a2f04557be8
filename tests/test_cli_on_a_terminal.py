"""What ``statestore`` shows on a terminal, run on a pseudo-terminal of a given width (``pseudo_terminal``).

``list`` never puts an id on the progress bar's line; ``list --long`` and ``history`` are aligned columns
under a header that fit the terminal (plain tab-separated lines when piped); ``check``'s settings are
one ``export`` line, never broken, and no line is padded.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pseudo_terminal import run_on_terminal
from test_cli import clean_env, put, s3_cli

from statestore.testing import MotoServer

# Long enough that a tab-separated --long line is wider than 80 columns.
IDS = [f"workflow-{i}-{'x' * 30}" for i in range(3)]


@pytest.fixture(params=["local", "s3"])
def store_with_states(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Global options and an environment naming a store that holds the states ``IDS``: a local root, or moto."""
    if request.param == "local":
        root = tmp_path / "root"
        for state_id in IDS:
            put(root, state_id, b'{"n": 1}')
        return ["--root", str(root)], clean_env()
    server: MotoServer = request.getfixturevalue("moto_server")
    args, env = s3_cli(server, server.create_bucket())
    client = server.client()
    try:
        for state_id in IDS:
            key = f"persistent-artifacts/apps/default/workflows/{state_id}/config.json"
            client.put_object(Bucket=args[3], Key=key, Body=b'{"n": 1}')
    finally:
        client.close()
    return args, env


def test_list_prints_each_id_alone_on_its_line(
    store_with_states: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    args, env = store_with_states
    run = run_on_terminal(*args, "list", cwd=tmp_path, env=env)
    assert run.code == 0, run.raw
    assert sorted(run.screen) == IDS
    assert "listing" not in run.raw  # the ids are the progress: no bar to share their lines


def test_list_long_is_a_table_with_a_header_once_the_bar_is_erased(
    store_with_states: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    args, env = store_with_states
    run = run_on_terminal(*args, "list", "--long", cwd=tmp_path, env=env, columns=80)
    assert run.code == 0, run.raw
    assert run.raw.index("listing workflows") < run.raw.index("last modified (UTC)")  # a bar was drawn first
    screen = run.screen
    assert "listing" not in "".join(screen)
    header = screen[0]
    assert header.split() == ["id", "size", "last", "modified", "(UTC)", "version"]
    columns = [header.index(name) for name in ("last modified", "version")]
    rows = [line for line in screen[1:] if not line.startswith(" ")]
    assert sorted(row.split()[0] for row in rows) == IDS  # each id whole, at the start of its row
    for line in screen[1:]:
        if line.startswith(" "):  # a folded version: only within its own column
            assert line[: columns[1]].strip() == ""
            continue
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[columns[0] : columns[0] + 20])
        assert line[columns[0] - 2 : columns[0]] == "  "
        assert line[columns[1]] != " "
    assert len(screen) >= len(IDS) + 1


def test_list_long_piped_is_tab_separated_and_the_bar_on_stderr_is_erased(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for state_id in IDS:
        put(root, state_id, b'{"n": 1}')
    run = run_on_terminal("--root", str(root), "list", "--long", cwd=tmp_path, env=clean_env(), pipe_stdout=True)
    assert run.code == 0, run.raw
    assert run.piped_stdout is not None
    lines = run.piped_stdout.splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == IDS and all(line.count("\t") == 3 for line in lines)
    assert "listing workflows" in run.raw and run.screen == []  # drawn on stderr, then erased


def test_check_settings_are_one_export_line_on_a_narrow_terminal(tmp_path: Path, moto_server: MotoServer) -> None:
    args, env = s3_cli(moto_server, moto_server.create_bucket())
    run = run_on_terminal(*args, "check", cwd=tmp_path, env=env, columns=50)
    assert run.code == 0, run.raw
    exports = [line for line in run.raw_lines if line.startswith("export ")]
    assert exports == ["export STATESTORE_S3_IF_MATCH=quoted STATESTORE_S3_CONDITIONAL_DELETE=true"]
    assert run.raw_lines[run.raw_lines.index(exports[0]) - 1] == "settings to use:"
    assert not [line for line in run.raw_lines if line.endswith(" ")]
    assert max(len(line) for line in run.screen) <= 50
