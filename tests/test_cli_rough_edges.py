"""The ``statestore`` command's rough edges, each run in-process (``cli_run``: the console script's code path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from conftest import CliResult
from test_cli import KEY, put

from statestore import CorruptStateError
from statestore.cli.exit_codes import describe_error
from statestore.codec.crypto import generate_key
from statestore.testing import MotoServer

Run = Callable[..., CliResult]


def test_memory_backend_is_refused_for_commands_that_keep_states(tmp_path: Path, cli_run: Run) -> None:
    for args in (["set", "wf", "k", "1"], ["get", "wf"], ["list"], ["path", "wf"], ["reencrypt"]):
        line = cli_run("--backend", "memory", *args).failed(2, "memory backend", "--root")
        assert "each statestore command is a process of its own" in line
    cli_run("get", "wf", env={"STATESTORE_URL": "memory://"}).failed(2, "memory backend")
    cli_run("copy", "file:a", "memory://").failed(2, "memory backend")
    demo = cli_run("--json", "--backend", "memory", "demo", "--items", "3")
    assert demo.code == 0, demo.err
    shown = orjson.loads(demo.out)
    assert shown["state"]["status"] == "completed" and shown["state_file"] is None
    assert not (tmp_path / "local").exists()


def test_path_and_demo_on_s3_print_the_s3_location(tmp_path: Path, cli_run: Run, moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    env = moto_server.fake_credentials()
    key = KEY.format(type="credentials", id="db")
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", "http://user:pw@127.0.0.1:9"]
    assert cli_run(*args, "path", "db", "--type", "credentials", env=env).ok() == f"s3://{bucket}/{key}\n"
    url = f"s3://{bucket}/team?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    shown = orjson.loads(cli_run("--url", url, "--json", "path", "wf-1", env=env).ok())
    assert shown == {
        "path": f"s3://{bucket}/team/{KEY.format(type='workflows', id='wf-1')}",
        "object_key": KEY.format(type="workflows", id="wf-1"),
    }
    demo = cli_run("--url", url, "demo", "--items", "5", env=env)
    assert demo.code == 0, demo.err
    out = demo.out
    assert out.splitlines()[0] == f"state object: s3://{bucket}/team/{KEY.format(type='workflows', id='demo-workflow')}"
    assert "./local" not in out and not (tmp_path / "local").exists()
    assert cli_run("--root", "r", "path", "wf").ok() == f"r/{KEY.format(type='workflows', id='wf')}\n"


def test_corrupt_state_hint_names_the_store_and_the_real_id_shell_quoted(tmp_path: Path, cli_run: Run) -> None:
    root = tmp_path / "root"
    put(root, "my wf", b"[1]")
    put(root, "db's", b"[1]", "credentials")
    done = cli_run("--root", "root", "get", "my wf")
    assert done.code == 3 and "corrupt state" in done.err
    assert "'statestore --root root replace 'my wf' JSON'" in done.err
    assert "'statestore --root root delete 'my wf''" in done.err
    done = cli_run("--root", "root", "get", "db's", "--type", "credentials")
    assert "statestore --root root replace 'db'\"'\"'s' JSON --type credentials" in done.err
    known = CorruptStateError("bad bytes")
    known.state_id, known.state_type = "wf-1", "workflows"
    assert "ID" not in describe_error(known)[0]
    assert "replace ID JSON" in describe_error(CorruptStateError("no id known"))[0]


def test_a_value_that_is_not_json_says_how_to_quote_a_string(tmp_path: Path, cli_run: Run) -> None:
    line = cli_run("--root", "r", "set", "k", "v", "two words").failed(2, "not valid JSON")
    assert "expected" not in line and "'\"two words\"'" in line
    secret = "my secret pass"
    line = cli_run("--root", "r", "--type", "credentials", "set", "db", "password", secret).failed(2)
    assert secret not in line
    assert not (tmp_path / "r").exists()


def test_group_help_shows_whole_command_summaries(cli_run: Run) -> None:
    text = cli_run("--help").ok()
    commands = text[text.index("Commands:") :]
    assert "..." not in commands and "…" not in commands
    flat = " ".join(commands.split())
    assert "Copy the app's states from the store SRC to the store DST, and print a summary." in flat
    assert "Shallow-merge a JSON object into ID's state and print the merged state." in flat


def test_list_and_reencrypt_show_progress_with_the_flag(tmp_path: Path, cli_run: Run) -> None:
    r = ["--root", str(tmp_path / "root")]
    for i in range(3):
        cli_run(*r, "set", f"wf-{i}", "k", str(i)).ok()
    assert cli_run(*r, "list").ok().count("\n") == 3  # no progress unless asked (not a terminal)
    listed = cli_run(*r, "list", "--long", "--progress")
    assert listed.code == 0 and len(listed.out.splitlines()) == 3
    assert listed.out.splitlines()[0].count("\t") == 3  # id, size, last modified, version
    assert "listing workflows: 3/3 done" in listed.err
    env = {"STATESTORE_ENCRYPTION_KEY": generate_key(), "STATESTORE_ENCRYPT_WORKFLOWS": "true"}
    again = cli_run(*r, "reencrypt", "--type", "workflows", "--progress", env=env)
    assert again.out == "workflows: 3 rewritten\n", again.err
    assert "reencrypting workflows: 3/3 done" in again.err
