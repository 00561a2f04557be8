"""The ``statestore`` command's rough edges, each through the real console script (local root or moto)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from conftest import CliResult
from test_cli import KEY, clean_env, failed, ok, put, statestore

from statestore import CorruptStateError
from statestore.cli.exit_codes import describe_error
from statestore.codec.crypto import generate_key
from statestore.testing import MotoServer


def test_memory_backend_is_refused_for_commands_that_keep_states(tmp_path: Path) -> None:
    for args in (["set", "wf", "k", "1"], ["get", "wf"], ["list"], ["path", "wf"], ["reencrypt"]):
        line = failed(statestore("--backend", "memory", *args, cwd=tmp_path), 2, "memory backend", "--root")
        assert "each statestore command is a process of its own" in line
    failed(statestore("get", "wf", cwd=tmp_path, env=clean_env(STATESTORE_URL="memory://")), 2, "memory backend")
    failed(statestore("copy", "file:a", "memory://", cwd=tmp_path), 2, "memory backend")
    demo = statestore("--json", "--backend", "memory", "demo", "--items", "3", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    shown = orjson.loads(demo.stdout)
    assert shown["state"]["status"] == "completed" and shown["state_file"] is None
    assert not (tmp_path / "local").exists()


def test_path_and_demo_on_s3_print_the_s3_location(tmp_path: Path, moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    env = clean_env(**moto_server.fake_credentials())
    key = KEY.format(type="credentials", id="db")
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", "http://user:pw@127.0.0.1:9"]
    assert ok(statestore(*args, "path", "db", "--type", "credentials", cwd=tmp_path, env=env)) == (
        f"s3://{bucket}/{key}\n"
    )
    url = f"s3://{bucket}/team?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    shown = orjson.loads(ok(statestore("--url", url, "--json", "path", "wf-1", cwd=tmp_path, env=env)))
    assert shown == {
        "path": f"s3://{bucket}/team/{KEY.format(type='workflows', id='wf-1')}",
        "object_key": KEY.format(type="workflows", id="wf-1"),
    }
    demo = statestore("--url", url, "demo", "--items", "5", cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert out.splitlines()[0] == f"state object: s3://{bucket}/team/{KEY.format(type='workflows', id='demo-workflow')}"
    assert "./local" not in out and not (tmp_path / "local").exists()
    assert ok(statestore("--root", "r", "path", "wf", cwd=tmp_path)) == f"r/{KEY.format(type='workflows', id='wf')}\n"


def test_corrupt_state_hint_names_the_store_and_the_real_id_shell_quoted(
    tmp_path: Path, cli_run: Callable[..., CliResult]
) -> None:
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


def test_a_value_that_is_not_json_says_how_to_quote_a_string(tmp_path: Path) -> None:
    line = failed(statestore("--root", "r", "set", "k", "v", "two words", cwd=tmp_path), 2, "not valid JSON")
    assert "expected" not in line and "'\"two words\"'" in line
    secret = "my secret pass"
    line = failed(statestore("--root", "r", "--type", "credentials", "set", "db", "password", secret, cwd=tmp_path), 2)
    assert secret not in line
    assert not (tmp_path / "r").exists()


def test_group_help_shows_whole_command_summaries(tmp_path: Path) -> None:
    text = ok(statestore("--help", cwd=tmp_path))
    commands = text[text.index("Commands:") :]
    assert "..." not in commands and "…" not in commands
    flat = " ".join(commands.split())
    assert "Copy the app's states from the store SRC to the store DST, and print a summary." in flat
    assert "Shallow-merge a JSON object into ID's state and print the merged state." in flat


def test_list_and_reencrypt_show_progress_with_the_flag(tmp_path: Path) -> None:
    r = ["--root", str(tmp_path / "root")]
    for i in range(3):
        ok(statestore(*r, "set", f"wf-{i}", "k", str(i), cwd=tmp_path))
    assert ok(statestore(*r, "list", cwd=tmp_path)).count("\n") == 3  # no progress unless asked (not a terminal)
    listed = statestore(*r, "list", "--long", "--progress", cwd=tmp_path)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3
    assert listed.stdout.splitlines()[0].count("\t") == 3  # id, size, last modified, version
    assert "listing workflows: 3/3 done" in listed.stderr
    env = clean_env(STATESTORE_ENCRYPTION_KEY=generate_key(), STATESTORE_ENCRYPT_WORKFLOWS="true")
    again = statestore(*r, "reencrypt", "--type", "workflows", "--progress", cwd=tmp_path, env=env)
    assert again.stdout == "workflows: 3 rewritten\n", again.stderr
    assert "reencrypting workflows: 3/3 done" in again.stderr
