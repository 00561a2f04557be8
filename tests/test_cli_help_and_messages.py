"""The command's help and messages say what to type next, in the command's own words, and it works.

Help pages read whole at 80 columns; one spelling of the state types everywhere; a suggested command
names the store it is about; a version that is not there points to ``statestore history``; ``check``
prints no padding and its settings as one ``export`` line.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import orjson
import pytest
from conftest import CliResult
from test_cli import KEY, put

from statestore import CorruptStateError
from statestore.cli import cli
from statestore.cli.exit_codes import describe_error
from statestore.codec.crypto import generate_key
from statestore.testing import MotoServer

Run = Callable[..., CliResult]


def help_pages(width: int) -> Iterator[tuple[click.Command, str]]:
    """Every command (the group too) and its ``--help`` as a terminal ``width`` columns wide shows it."""
    for command in [cli, *cli.commands.values()]:
        parent = click.Context(cli, info_name="statestore", terminal_width=width)
        ctx = parent if command is cli else click.Context(command, info_name=command.name, parent=parent)
        ctx.terminal_width = width
        yield command, command.get_help(ctx)


def flat(text: str) -> str:
    """``text`` with its line breaks undone: whitespace runs as one space, a break after a hyphen joined."""
    return " ".join(re.sub(r"-\n\s+", "-", text).split())


def test_no_help_text_is_broken_inside_a_word_at_80_columns() -> None:
    for command, page in help_pages(80):
        shown = flat(page)
        for param in command.params:
            text = getattr(param, "help", None)
            if text:
                assert flat(text) in shown, f"{command.name} {param.name}: {text!r} is broken in\n{page}"
        for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
            if not paragraph.startswith("\b"):
                assert flat(paragraph) in shown, f"{command.name}: {paragraph!r} is broken in\n{page}"


def test_reencrypt_help_says_once_that_it_does_both_types() -> None:
    page = flat(dict((c.name, p) for c, p in help_pages(100))["reencrypt"])
    assert "default both types" in page and "default workflows" not in page


@pytest.mark.parametrize(
    "args",
    [
        ["get", "wf"],
        ["set", "wf", "k", "1"],
        ["list"],
        ["delete", "wf"],
        ["prune", "--older-than", "1d"],
        ["reencrypt"],
        ["copy", "-", "file:dst"],
        ["history", "wf"],
    ],
)
@pytest.mark.parametrize(("given", "meant"), [("workflow", "workflows"), ("Credential", "credentials")])
def test_a_singular_type_is_refused_everywhere_with_the_name_to_use(
    tmp_path: Path, cli_run: Run, args: list[str], given: str, meant: str
) -> None:
    put(tmp_path / "root", "wf", b'{"n": 1}')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for placed in ([*args, "--type", given], ["--type", given, *args]):
        done = cli_run("--root", "root", *placed)
        assert done.code == 2 and done.out == "", done.err
        assert f"unknown state type {given!r}" in done.err and f"(did you mean {meant!r}?)" in done.err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_copy_takes_the_same_type_names_and_all(tmp_path: Path, cli_run: Run) -> None:
    put(tmp_path / "src", "wf", b'{"n": 1}')
    put(tmp_path / "src", "db", b'{"user": "app"}', "credentials")
    assert cli_run("copy", "file:src", "file:a", "--type", "workflows").out.splitlines()[:1] == [
        "copied\tworkflows\twf"
    ]
    assert "copied 2," in cli_run("copy", "file:src", "file:b", "--type", "all").out
    refused = cli_run("copy", "file:src", "file:c", "--type", "everything")
    assert refused.code == 2 and "copy --type also takes 'all'" in refused.err
    assert not (tmp_path / "c").exists()


def hint(line: str, verb: str) -> list[str]:
    """The command a message suggests for ``verb``, as argv (what a shell makes of it), without 'statestore'."""
    quoted = re.search(rf"'(statestore (?:(?!' or ').)* {verb} (?:(?!' or ').)*?)'(?: or |$| lists)", line)
    assert quoted is not None, line
    argv = shlex.split(quoted.group(1))
    assert argv[0] == "statestore"
    return argv[1:]


def test_a_repair_hint_acts_on_the_store_the_command_used(tmp_path: Path, cli_run: Run) -> None:
    put(tmp_path / "elsewhere", "wf", b"[1]")
    failed = cli_run("--root", "elsewhere", "get", "wf")
    assert failed.code == 3
    argv = [word if word != "JSON" else '{"fixed": true}' for word in hint(failed.err, "replace")]
    assert cli_run(*argv).code == 0  # the hint, followed as printed
    assert orjson.loads(cli_run("--root", "elsewhere", "get", "wf").out) == {"fixed": True}
    assert not (tmp_path / "local").exists()  # the default store was never touched


def test_copy_names_the_source_or_the_destination_in_its_repair_hint(tmp_path: Path, cli_run: Run) -> None:
    put(tmp_path / "src", "wf", b"[1]")
    put(tmp_path / "src", "ok", b'{"n": 1}')
    done = cli_run("copy", "file:src", "file:dst")
    assert done.code == 3
    [line] = [line for line in done.out.splitlines() if line.startswith("failed")]
    argv = hint(line, "replace")
    assert argv[:3] == ["--url", "file:src", "replace"]
    assert cli_run(*[w if w != "JSON" else '{"n": 2}' for w in argv]).code == 0
    assert cli_run("copy", "file:src", "file:dst").code == 0  # repaired where it was broken: copied now

    put(tmp_path / "dst", "ok", b"[2]")  # now the destination's copy is corrupt
    done = cli_run("--app", "default", "copy", "file:src", "file:dst", "--overwrite")
    [line] = [line for line in done.out.splitlines() if line.startswith("failed")]
    assert hint(line, "delete")[:5] == ["--url", "file:dst", "--app", "default", "delete"]

    put(tmp_path / "src2", "wf", b"[1]")
    done = cli_run("--root", "src2", "copy", "-", "file:dst2")
    [line] = [line for line in done.out.splitlines() if line.startswith("failed")]
    assert hint(line, "replace")[:3] == ["--root", "src2", "replace"]
    assert orjson.loads(cli_run("--json", "copy", "file:src2", "file:dst3").out)["failed"][0]["side"] == "source"


def test_an_unknown_version_points_to_the_history_command(
    tmp_path: Path, cli_run: Run, moto_server: MotoServer
) -> None:
    bucket = moto_server.create_bucket()
    url = f"s3://{bucket}?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    client = moto_server.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.close()
    env = moto_server.fake_credentials()
    assert cli_run("--url", url, "set", "wf", "n", "1", env=env).code == 0
    for command in ("show", "restore"):
        done = cli_run("--url", url, command, "wf", "--version", "bogus", env=env)
        assert done.code == 2 and "state_history" not in done.err, done.err
        assert hint(done.err, "history") == ["--url", url, "history", "wf"]
    empty = cli_run("--root", "root", "show", "wf", "--version", "")
    assert empty.code == 2 and "state_history" not in empty.err and "version" in empty.err


def test_history_says_what_the_null_version_is(tmp_path: Path, cli_run: Run, moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    url = f"s3://{bucket}?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    env = moto_server.fake_credentials()
    assert cli_run("--url", url, "set", "wf", "n", "1", env=env).code == 0  # before versioning
    client = moto_server.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.close()
    assert cli_run("--url", url, "set", "wf", "n", "2", env=env).code == 0
    done = cli_run("--url", url, "history", "wf", env=env)
    assert done.code == 0
    lines = done.out.splitlines()
    assert lines[0] == "version\ttime\tsize" and lines[-1].split("\t")[0] == "null" and len(lines) == 3
    assert "version null is the state as it was stored when versioning was enabled" in done.err
    assert orjson.loads(cli_run("--url", url, "show", "wf", "--version", "null", env=env).out) == {"n": 1}
    quiet = cli_run("--url", url, "--json", "history", "wf", env=env)
    assert quiet.err == "" and orjson.loads(quiet.out)["versions"][-1]["version"] == "null"


def test_check_output_is_not_padded_piped(tmp_path: Path, cli_run: Run, moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    env = moto_server.fake_credentials()
    url = f"s3://{bucket}?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    safe = cli_run("--url", url, "check", env=env)
    local = cli_run("--root", "root", "check")
    missing = cli_run("--backend", "s3", "check")
    for done, code in ((safe, 0), (local, 0), (missing, 2)):
        assert done.code == code, done.out
        assert not [line for line in done.out.splitlines() if line != line.rstrip()], done.out
    rows = [line for line in safe.out.splitlines() if line.startswith("│")]  # piped: one line per probe
    assert len(rows) == len(orjson.loads(cli_run("--url", url, "--json", "check", env=env).out)["probes"])
    assert safe.out.endswith(
        "settings to use:\nexport STATESTORE_S3_IF_MATCH=quoted STATESTORE_S3_CONDITIONAL_DELETE=true\n"
    )
    assert local.out.endswith("settings to use: none needed\n")
    assert "verdict: MISCONFIGURED" in missing.out and "settings to use" not in missing.out


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
