"""The ``statestore`` command: in this process through ``cli_run`` (the console script's code path), plus a few
real runs of the installed console script where only a process proves the point, plus its pure helpers.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from conftest import CliResult, S3Target

from statestore import (
    BackendError,
    ConflictError,
    CorruptStateError,
    DecryptionError,
    InvalidInputError,
    MemoryBackend,
    PathTraversalError,
    PutMode,
    RetryPolicy,
    Settings,
    StateTooLargeError,
    Store,
    VersionConflictError,
)
from statestore.backends import PutResult
from statestore.cli import cli, effective_config, parse_value, run
from statestore.cli.exit_codes import describe_error as _describe_error
from statestore.cli.render import _setting
from statestore.codec.crypto import generate_key, key_id
from statestore.codec.jsonio import Codec
from statestore.codec.secrets import REDACTED, is_secret_key, redact, redact_url
from statestore.errors import InvalidStateTypeError, PreconditionFailed
from statestore.testing import MotoServer, local_store

EXE = shutil.which("statestore", path=str(Path(sys.executable).parent))
KEY = "persistent-artifacts/apps/default/{type}/{id}/config.json"
Cli = Callable[..., CliResult]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any statestore or AWS setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATESTORE_", "ATLAN_", "AWS_"))}
    env.update(extra)
    return env


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = "") -> CliResult:
    """Run the installed console script in a new process (about 0.4 s); never inherits the caller's stdin."""
    assert EXE is not None, "the statestore console script is not installed next to the interpreter"
    proc = subprocess.run(
        [EXE, *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def ok(result: CliResult) -> str:
    assert result.code == 0, result.err
    assert result.err == ""
    return result.out


def failed(result: CliResult, code: int, *fragments: str) -> str:
    """Assert exit ``code`` and one clean line on stderr holding every fragment; return that line."""
    assert result.code == code, (result.code, result.out, result.err)
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("statestore: ") and "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def put(root: Path, state_id: str, data: bytes = b"{}", type_: str = "workflows") -> Path:
    """Write ``data`` as the stored file of one state under the local ``root``; return its path."""
    path = root / KEY.format(type=type_, id=state_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def s3_cli(server: MotoServer, bucket: str, **extra: str) -> tuple[list[str], dict[str, str]]:
    """Options naming ``bucket`` on moto, and an environment with its dummy credentials and no transient retries."""
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", server.endpoint_url]
    return args, clean_env(**server.fake_credentials(), STATESTORE_S3_MAX_ATTEMPTS="1", **extra)


def round_trip(run: Cli, backend_args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """merge (from stdin) -> set -> get -> list -> delete -> get on one backend, each through ``run`` (``cli_run``
    or ``spawn``); shared by the local and S3 tests."""
    args = list(backend_args)
    merged = ok(run(*args, "merge", "wf-1", "-", cwd=cwd, env=env, stdin='{"status": "started", "tables": ["a"]}'))
    assert orjson.loads(merged) == {"status": "started", "tables": ["a"]}
    assert orjson.loads(ok(run(*args, "set", "wf-1", "progress", "50", cwd=cwd, env=env))) == {
        "status": "started",
        "tables": ["a"],
        "progress": 50,
    }
    got = ok(run(*args, "--json", "get", "wf-1", cwd=cwd, env=env))
    assert got == '{"status":"started","tables":["a"],"progress":50}\n'
    assert ok(run(*args, "list", cwd=cwd, env=env)) == "wf-1\n"
    assert ok(run(*args, "delete", "wf-1", cwd=cwd, env=env)) == "deleted workflows state 'wf-1'\n"
    assert ok(run(*args, "get", "wf-1", cwd=cwd, env=env)) == "{}\n"


# -- the command on the local backend: in this process, except where a comment says why not --


def test_round_trip_on_local_backend(tmp_path: Path) -> None:
    # real processes: the console script is installed, and a round trip of one process per step works, stdin piped
    round_trip(spawn, ["--root", str(tmp_path / "root")], tmp_path)
    assert not (tmp_path / "root" / KEY.format(type="workflows", id="wf-1")).exists()


def test_set_values_stdin_merge_replace_and_options_over_environment(tmp_path: Path, cli_run: Cli) -> None:
    env = clean_env(STATESTORE_LOCAL_ROOT=str(tmp_path / "env-root"), STATESTORE_APP_NAME="envapp")
    root = tmp_path / "flag-root"
    r = ["--root", str(root)]
    # a bare word is a string; JSON values keep their type
    assert orjson.loads(ok(cli_run(*r, "set", "wf", "status", "running", cwd=tmp_path, env=env))) == {
        "status": "running"
    }
    ok(cli_run(*r, "set", "wf", "flags", '{"a": [1, null, true]}', cwd=tmp_path, env=env))
    out = ok(cli_run(*r, "--json", "merge", "wf", "-", cwd=tmp_path, env=env, stdin='{"status": "done"}'))
    assert out == '{"status":"done","flags":{"a":[1,null,true]}}\n'
    # --root wins over STATESTORE_LOCAL_ROOT; the app name still comes from the environment
    stored = root / "persistent-artifacts/apps/envapp/workflows/wf/config.json"
    assert orjson.loads(stored.read_bytes()) == {"status": "done", "flags": {"a": [1, None, True]}}
    assert not (tmp_path / "env-root").exists()
    assert orjson.loads(ok(cli_run(*r, "replace", "wf", '{"only": 1}', cwd=tmp_path, env=env))) == {"only": 1}
    assert orjson.loads(stored.read_bytes()) == {"only": 1}
    assert ok(cli_run(*r, "--app", "other", "path", "wf", cwd=tmp_path, env=env)) == (
        f"{root}/persistent-artifacts/apps/other/workflows/wf/config.json\n"
    )


def test_list_streams_ids_of_one_type(tmp_path: Path, cli_run: Cli) -> None:
    root = tmp_path / "root"
    for type_, ids in (("workflows", ["w-2", "w-1", "w 3"]), ("credentials", ["c-1"])):
        for state_id in ids:
            put(root, state_id, type_=type_)
    r = ["--root", str(root)]
    assert sorted(ok(cli_run(*r, "list", cwd=tmp_path)).splitlines()) == ["w 3", "w-1", "w-2"]
    # per-command --type overrides the global one
    assert ok(cli_run(*r, "--type", "workflows", "list", "--type", "credentials", cwd=tmp_path)) == "c-1\n"
    assert sorted(orjson.loads(ok(cli_run(*r, "--json", "list", cwd=tmp_path)))) == ["w 3", "w-1", "w-2"]
    assert ok(cli_run("--root", str(tmp_path / "empty"), "--json", "list", cwd=tmp_path)) == "[]\n"


def test_list_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    # a real process: a real pipe whose reader left; exit 141 and nothing on stderr, also from the flush at exit
    root = tmp_path / "root"
    long = "x" * 200  # 400 ids of 200 bytes: more than a pipe buffer holds
    for i in range(400):
        put(root, f"{long}{i}")
    assert EXE is not None
    proc = subprocess.Popen(
        [EXE, "--root", str(root), "list"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(long.encode())
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
    proc.stderr.close()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["get", "../../../etc/passwd"], ["invalid input", "path separator"]),
        (["delete", ".."], ["invalid input", "would leave its directory"]),
        (["get", "wf", "--type", "secrets"], ["unknown state type 'secrets'"]),
        (["--type", "secrets", "list"], ["unknown state type 'secrets'"]),
        (["--type", "credentials", "get", "wf", "--type", ""], ["unknown state type ''"]),
        (["set", "wf", "k", "{not json"], ["VALUE is not valid JSON"]),
        (["set", "wf", "k", "two words"], ["VALUE is not valid JSON"]),
        (["merge", "wf", "[1, 2]"], ["must be a JSON object, got a JSON array"]),
        (["merge", "wf", '{"x": NaN}'], ["not valid JSON"]),
        (["replace", "wf", "-"], ["stdin is not valid JSON"]),
        (["--type", "credentials", "set", "wf", "password", "hunter2"], ["would store a raw secret"]),
        (["get"], ["Missing argument 'ID'", "statestore get --help"]),
        (["frobnicate"], ["No such command"]),
        (["--backend", "ftp", "get", "wf"], ["'ftp' is not one of"]),
    ],
)
def test_invalid_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], fragments: list[str], cli_run: Cli
) -> None:
    root = tmp_path / "root"
    path = put(root, "wf", b'{"keep":true}')
    failed(cli_run("--root", str(root), *args, cwd=tmp_path), 2, *fragments)
    assert path.read_bytes() == b'{"keep":true}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


def test_bad_environment_exits_2(tmp_path: Path, cli_run: Cli) -> None:
    env = clean_env(STATESTORE_MAX_STATE_BYTES="lots")
    failed(cli_run("get", "wf", cwd=tmp_path, env=env), 2, "STATESTORE_MAX_STATE_BYTES must be an integer")


def test_corrupt_state_exits_3_until_replaced_or_deleted(tmp_path: Path, cli_run: Cli) -> None:
    root = tmp_path / "root"
    r = ["--root", str(root)]
    path = put(root, "wf", b'{"truncated": ')
    # a real process: the exit code and the one line on stderr reach the shell (main's sys.exit)
    failed(spawn(*r, "get", "wf", cwd=tmp_path), 3, "corrupt state", "'wf'", f"'statestore --root {root} replace")
    failed(cli_run(*r, "set", "wf", "k", "1", cwd=tmp_path), 3, "corrupt state")
    assert path.read_bytes() == b'{"truncated": '  # a failed merge leaves the bytes for inspection
    assert orjson.loads(ok(cli_run(*r, "replace", "wf", '{"k": 1}', cwd=tmp_path))) == {"k": 1}
    path.write_bytes(b"[]")
    as_json = cli_run(*r, "--json", "get", "wf", cwd=tmp_path)
    assert as_json.code == 3 and as_json.out == ""
    assert orjson.loads(as_json.err)["error"] == "CorruptStateError"
    ok(cli_run(*r, "delete", "wf", cwd=tmp_path))
    assert ok(cli_run(*r, "get", "wf", cwd=tmp_path)) == "{}\n"


def test_backend_misconfigured_exits_7_with_traceback_only_under_debug(tmp_path: Path, cli_run: Cli) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    r = ["--root", str(not_a_dir)]
    line = failed(cli_run(*r, "set", "wf", "k", "1", cwd=tmp_path), 7, "backend misconfigured")
    assert "not a directory" in line.lower()
    line = failed(cli_run(*r, "get", "wf", cwd=tmp_path), 7, "(--debug shows the cause)")
    assert "NotADirectoryError" not in line
    debug = cli_run(*r, "--debug", "merge", "wf", '{"k": 1}', cwd=tmp_path)
    assert debug.code == 7 and debug.out == ""
    assert "Traceback" in debug.err and "BackendConfigError" in debug.err
    assert "statestore: caused by NotADirectoryError:" in debug.err
    assert debug.err.splitlines()[-1].startswith("statestore: backend misconfigured")
    as_json = cli_run(*r, "--json", "set", "wf", "k", "1", cwd=tmp_path)
    assert as_json.code == 7
    error = orjson.loads(as_json.err)
    assert (
        error["error"] == "BackendConfigError"
        and error["exit_code"] == 7
        and "not a directory" in error["message"].lower()
    )


def test_credentials_are_redacted_unless_show_secrets(tmp_path: Path, cli_run: Cli) -> None:
    root = tmp_path / "root"
    stored = {"host": "db", "password": "hunter2", "password_ref": "vault:db", "auth": {"apiKey": "k-123"}}
    put(root, "db", orjson.dumps(stored), "credentials")
    r = ["--root", str(root)]
    shown = orjson.loads(ok(cli_run(*r, "get", "db", "--type", "credentials", cwd=tmp_path)))
    assert shown == {"host": "db", "password": REDACTED, "password_ref": "vault:db", "auth": {"apiKey": REDACTED}}
    out = ok(cli_run(*r, "--type", "credentials", "get", "db", "--show-secrets", cwd=tmp_path))
    assert orjson.loads(out) == stored
    put(root, "db", orjson.dumps(stored))  # workflows are never redacted
    assert orjson.loads(ok(cli_run(*r, "get", "db", cwd=tmp_path))) == stored


def test_config_shows_backend_and_never_secrets(tmp_path: Path, cli_run: Cli) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    env = clean_env(
        AWS_ACCESS_KEY_ID="AKIAEXAMPLEID",
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_SESSION_TOKEN=secret + "-token",
        AWS_PROFILE="ops",
        STATESTORE_S3_ENDPOINT_URL="http://user:pa55word@127.0.0.1:9000",
    )
    out = ok(cli_run("--root", str(tmp_path / "r"), "--app", "myapp", "config", cwd=tmp_path, env=env))
    assert secret not in out and "AKIAEXAMPLEID" not in out and "pa55word" not in out
    lines = out.splitlines()
    assert f"store.backend: LocalBackend(root={str(tmp_path / 'r')!r})" in lines
    assert "settings.app_name: myapp" in lines and "aws.AWS_PROFILE: ops" in lines
    assert "aws.AWS_SECRET_ACCESS_KEY: <set>" in lines and "aws.AWS_SESSION_TOKEN: <set>" in lines
    assert f"settings.s3_endpoint_url: http://{REDACTED}@127.0.0.1:9000" in lines
    shown = orjson.loads(ok(cli_run("--json", "--backend", "memory", "config", cwd=tmp_path, env=env)))
    assert shown["store"]["backend"] == "MemoryBackend" and shown["settings"]["backend"] == "memory"
    assert shown["aws"]["AWS_ACCESS_KEY_ID"] == "<set>"


def test_demo_with_root_resumes_from_its_checkpoint(tmp_path: Path, cli_run: Cli) -> None:
    r = ["--root", str(tmp_path / "root")]
    path = put(tmp_path / "root", "job", b'{"last_processed_index": 99}')
    result = cli_run(*r, "--json", "demo", "--id", "job", "--items", "250", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "checkpointing" in result.err and "100%" in result.err  # rich's bar, on stderr
    assert orjson.loads(result.out) == {
        "state_file": str(path),
        "location": str(path),
        "state": {"last_processed_index": 199, "status": "completed"},
    }


# -- help, parsing, redaction, error mapping -------------------------------------


@pytest.mark.parametrize(
    "command",
    ["get", "set", "merge", "replace", "delete", "list", "path", "config", "demo", "reencrypt", "prune", None],
)
def test_every_command_has_help_with_an_example(command: str | None) -> None:
    result = CliRunner().invoke(cli, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "statestore " in result.output.split("Example:")[1]


def test_parse_value() -> None:
    good = ["50", "running", '"two words"', "1.2.3", "null", '{"a": [1]}']
    assert [parse_value(v) for v in good] == [50, "running", "two words", "1.2.3", None, {"a": [1]}]
    for bad in ("", "two words", "{a", "[1,", '"open'):
        with pytest.raises(InvalidInputError, match="VALUE is not valid JSON"):
            parse_value(bad)


def test_redact() -> None:
    assert [is_secret_key(k) for k in ("password", "dbPassword", "X-Api-Key", "refresh_token", "private_key")] == [
        True
    ] * 5
    assert [is_secret_key(k) for k in ("password_ref", "secretName", "token_url", "username", "host")] == [False] * 5
    state: dict[str, Any] = {
        "user": "u",
        "client_secret": "s",
        "tokens": ["a", "", None],
        "password": {"value": "v", "ref": "vault:x", "rotated": True},
        "port": 5432,
        "pin_secret": 1234,
    }
    assert redact(state) == {
        "user": "u",
        "client_secret": REDACTED,
        "tokens": [REDACTED, "", None],
        "password": {"value": REDACTED, "ref": "vault:x", "rotated": True},
        "port": 5432,
        "pin_secret": REDACTED,
    }
    assert state["client_secret"] == "s"  # a copy, not in place


def test_redact_url() -> None:
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert redact_url("https://AKIA:secret@minio.local/x") == f"https://{REDACTED}@minio.local/x"
    assert (
        redact_url("https://minio.local/x?token=t0k&region=eu") == f"https://minio.local/x?token={REDACTED}&region=eu"
    )
    assert redact_url("http://[::1/x") == REDACTED  # does not parse: not shown at all


class _NamedCodec(Codec):
    def __repr__(self) -> str:
        return "NamedCodec(key_id='ab12')"


def test_effective_config_redacts_secret_named_and_binary_settings(tmp_path: Path) -> None:
    store = local_store(tmp_path, codec=Codec())
    settings = Settings(local_root=str(tmp_path))
    shown = effective_config(settings, store, {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_REGION": "eu-west-1"})
    assert shown["settings"]["local_root"] == str(tmp_path)
    assert shown["aws"]["AWS_SECRET_ACCESS_KEY"] == "<set>" and shown["aws"]["AWS_ACCESS_KEY_ID"] is None
    assert shown["aws"]["AWS_REGION"] == "eu-west-1"
    assert shown["store"] == {
        "backend": f"LocalBackend(root={str(tmp_path)!r})",
        "codec": "Codec",
        "app_name": "default",
    }
    assert effective_config(settings, local_store(tmp_path, codec=_NamedCodec()), {})["store"]["codec"] == (
        "NamedCodec(key_id='ab12')"
    )
    assert _setting("encryption_key", None) is None
    assert _setting("encryption_old_keys", ("a", "b")) == "<2 set>"
    assert _setting("anything", b"raw bytes") == "<set>"


@pytest.mark.parametrize(
    ("error", "code", "prefix"),
    [
        (PathTraversalError("id '..' would leave"), 2, "invalid input:"),
        (InvalidStateTypeError("unknown state type"), 2, "invalid input:"),
        (StateTooLargeError("too large"), 2, "invalid input:"),
        (CorruptStateError("not JSON"), 3, "corrupt state:"),
        (DecryptionError("wrong key"), 3, "cannot decrypt:"),
        (ConflictError("gave up"), 1, "conflict:"),
        (
            VersionConflictError("wf changed", current_version='"e1"'),
            1,
            'version conflict: wf changed (stored version: "e1")',
        ),
        (BackendError("down"), 1, "backend failed:"),
        (RuntimeError("bug"), 1, "internal error: RuntimeError: bug"),
    ],
)
def test_error_mapping(error: Exception, code: int, prefix: str) -> None:
    message, exit_code = _describe_error(error)
    assert exit_code == code and message.startswith(prefix)


class _AlwaysLoses(MemoryBackend):
    """Every conditional write finds that someone else got there first."""

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        raise PreconditionFailed(key)


def test_run_maps_a_real_conflict_to_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = Store(_AlwaysLoses(), retry=RetryPolicy(attempts=3, base_delay=0.0))
    monkeypatch.setattr("statestore.cli.options.build_store", lambda settings: store)
    assert run(["--root", str(tmp_path), "set", "wf", "k", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == "statestore: conflict: workflows state 'wf': gave up after 3 attempts; other writers kept changing it\n"
    )


# -- on S3 (a moto server, or the S3 target) ------------------------------------


@pytest.mark.s3_server
def test_round_trip_on_s3(tmp_path: Path, s3_target: S3Target, cli_run: Cli) -> None:
    """merge, set, get, list, delete through the command on the S3 target (moto, or Ceph RGW...)."""
    location = s3_target.new_location()
    env = clean_env(**s3_target.env(location))
    round_trip(cli_run, [], tmp_path, env=env)
    assert not (tmp_path / "local").exists()  # nothing went to the local default
    shown = orjson.loads(ok(cli_run("--json", "config", cwd=tmp_path, env=env)))
    assert shown["store"]["backend"].startswith(f"S3Backend(bucket={location.bucket!r}")
    if s3_target.secret_access_key:
        assert shown["aws"]["AWS_SECRET_ACCESS_KEY"] == "<set>"


def test_s3_corrupt_object_exits_3_and_unreachable_endpoint_exits_5(
    tmp_path: Path, moto_server: MotoServer, cli_run: Cli
) -> None:
    bucket = moto_server.create_bucket()
    args, env = s3_cli(moto_server, bucket)
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key=KEY.format(type="workflows", id="wf"), Body=b"\x00not json")
    client.close()
    failed(cli_run(*args, "get", "wf", cwd=tmp_path, env=env), 3, "corrupt state", "'wf'")
    # a real process on S3: a write with the AWS variables of its environment; its HTTP client closes quietly at exit
    assert orjson.loads(ok(spawn(*args, "replace", "wf", '{"ok": 1}', cwd=tmp_path, env=env))) == {"ok": 1}

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    closed_args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", f"http://user:pw@127.0.0.1:{closed}"]
    line = failed(cli_run(*closed_args, "get", "wf", cwd=tmp_path, env=env), 5, "backend unavailable")
    assert ":pw@" not in line
    missing = ["STATESTORE_BUCKET", "--bucket", "--url s3://"]  # each way to name the bucket
    failed(cli_run("--backend", "s3", "get", "wf", cwd=tmp_path, env=env), 2, *missing)


# -- encryption: config and reencrypt --------------------------------------------


def test_reencrypt_after_key_rotation_and_config_shows_only_key_ids(tmp_path: Path, cli_run: Cli) -> None:
    old, new = generate_key(), generate_key()
    r = ["--root", str(tmp_path / "root"), "--type", "credentials"]
    path = tmp_path / "root" / KEY.format(type="credentials", id="db")
    stored = {"host": "db", "password": "hunter2"}
    written = ok(
        cli_run(
            *r, "merge", "db", orjson.dumps(stored).decode(), cwd=tmp_path, env=clean_env(STATESTORE_ENCRYPTION_KEY=old)
        )
    )
    assert orjson.loads(written) == {"host": "db", "password": REDACTED}
    assert b"hunter2" not in path.read_bytes()

    rotated = clean_env(STATESTORE_ENCRYPTION_KEY=new, STATESTORE_ENCRYPTION_OLD_KEYS=old)
    config = ok(cli_run(*r, "config", cwd=tmp_path, env=rotated))
    assert old not in config and new not in config
    assert "settings.encryption_key: <set>" in config and "settings.encryption_old_keys: <1 set>" in config
    old_id, new_id = key_id(base64.b64decode(old)), key_id(base64.b64decode(new))
    assert new_id in config and old_id in config  # the codec line names key ids, never keys

    assert ok(cli_run("--root", str(tmp_path / "root"), "reencrypt", cwd=tmp_path, env=rotated)) == (
        "credentials: 1 rewritten\nworkflows: 0 rewritten\n"
    )
    assert ok(cli_run(*r, "--json", "reencrypt", cwd=tmp_path, env=rotated)) == '{"rewritten":{"credentials":0}}\n'
    only_new = clean_env(STATESTORE_ENCRYPTION_KEY=new)
    assert orjson.loads(ok(cli_run(*r, "get", "db", "--show-secrets", cwd=tmp_path, env=only_new))) == stored
    failed(cli_run(*r, "get", "db", cwd=tmp_path, env=clean_env(STATESTORE_ENCRYPTION_KEY=old)), 3, "cannot decrypt")
    failed(cli_run(*r, "get", "db", cwd=tmp_path), 3, "cannot decrypt")


def test_url_option_and_statestore_url_name_the_store(tmp_path: Path, moto_server: MotoServer, cli_run: Cli) -> None:
    """``--url`` and ``STATESTORE_URL`` replace the backend flags and variables; the two cannot be mixed."""
    root = tmp_path / "by-url"
    round_trip(cli_run, ["--url", f"file://{root}"], tmp_path)
    ok(cli_run("set", "wf-u", "k", "1", cwd=tmp_path, env=clean_env(STATESTORE_URL=f"file:{root.name}")))
    assert (root / KEY.format(type="workflows", id="wf-u")).is_file()
    bucket = moto_server.create_bucket()
    url = f"s3://{bucket}/tenant?endpoint_url={moto_server.endpoint_url}&region=us-east-1"
    env = clean_env(**moto_server.fake_credentials(), STATESTORE_BACKEND="local", STATESTORE_LOCAL_ROOT="ignored")
    ok(cli_run("--url", url, "set", "wf-s3", "k", "2", cwd=tmp_path, env=env))
    client = moto_server.client()
    try:
        body = client.get_object(Bucket=bucket, Key="tenant/" + KEY.format(type="workflows", id="wf-s3"))["Body"]
        assert orjson.loads(body.read()) == {"k": 2}
    finally:
        client.close()
    assert not (tmp_path / "ignored").exists()
    failed(cli_run("--url", f"file://{root}", "--root", "x", "get", "wf-u", cwd=tmp_path), 2, "--root")
    failed(cli_run("--url", "ftp://host/x", "get", "wf-u", cwd=tmp_path), 2, "unknown store URL scheme 'ftp'")
    line = failed(cli_run("--url", "s3://AK:s3cr3t@bucket", "get", "wf-u", cwd=tmp_path), 2, "user name")
    assert "s3cr3t" not in line
