"""The commands on states (get, set, merge, replace, delete, list, path, reencrypt) and on the setup (config, check)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from ..check import configuration_report
from ..config import aws_environment, requested_backend
from ..errors import InvalidInputError
from ..paths import state_key, state_path
from ..statetype import StateType
from ..store import Store
from .exit_codes import CHECK_EXIT
from .options import Options, pass_options, run_on_store, show_secrets_option, type_option
from .parsing import parse_value, read_object
from .render import echo_config, echo_json, echo_state, effective_config, render_check


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@show_secrets_option
@pass_options
def get(opts: Options, state_id: str, state_type: str | None, show_secrets: bool) -> None:
    """Print the state of ID as a JSON object ({} if none is stored).

    Credentials are printed with secret-looking values (password, token,
    api_key, private_key, ..., and the password in a connection string such
    as postgres://user:pass@host/db) replaced by <redacted> unless --show-secrets.

    \b
    Example:
      statestore get wf-123
      statestore get --type credentials cred-db-1
    """
    stype = opts.resolve_type(state_type)
    state = run_on_store(opts.settings(), lambda store: store.get_state(state_id, stype))
    echo_state(opts, state, stype, show_secrets)


@click.command(name="set")
@click.argument("state_id", metavar="ID")
@click.argument("key")
@click.argument("value")
@type_option
@show_secrets_option
@pass_options
def set_(opts: Options, state_id: str, key: str, value: str, state_type: str | None, show_secrets: bool) -> None:
    """Set one top-level KEY of ID's state to VALUE and print the whole state.

    VALUE is JSON (50, true, null, "text", [1, 2], {"a": 1}); a bare word
    without spaces is taken as a string. Every other key is kept.

    \b
    Example:
      statestore set wf-123 status running
      statestore set wf-123 progress 50
    """
    stype = opts.resolve_type(state_type)
    parsed = parse_value(value)
    state = run_on_store(opts.settings(), lambda store: store.save_state_object(state_id, {key: parsed}, stype))
    echo_state(opts, state, stype, show_secrets)


@click.command()
@click.argument("state_id", metavar="ID")
@click.argument("json_text", metavar="[JSON|-]", required=False)
@type_option
@show_secrets_option
@pass_options
def merge(opts: Options, state_id: str, json_text: str | None, state_type: str | None, show_secrets: bool) -> None:
    """Shallow-merge a JSON object into ID's state and print the merged state.

    The object comes from the argument, or from stdin with '-' (or no
    argument). Top-level keys of the object replace those stored.

    \b
    Example:
      statestore merge wf-123 '{"status": "running", "progress": 25}'
      echo '{"status": "done"}' | statestore merge wf-123 -
    """
    stype = opts.resolve_type(state_type)
    update = read_object(json_text)
    state = run_on_store(opts.settings(), lambda store: store.save_state_object(state_id, update, stype))
    echo_state(opts, state, stype, show_secrets)


@click.command()
@click.argument("state_id", metavar="ID")
@click.argument("json_text", metavar="[JSON|-]", required=False)
@type_option
@show_secrets_option
@pass_options
def replace(opts: Options, state_id: str, json_text: str | None, state_type: str | None, show_secrets: bool) -> None:
    """Store a JSON object as the whole state of ID, whatever is stored now.

    This is how to repair a corrupt state (exit code 3) and keep the id:
    nothing stored is read or merged. The object comes from the argument,
    or from stdin with '-' (or no argument).

    \b
    Example:
      statestore replace wf-123 '{"status": "restarted"}'
    """
    stype = opts.resolve_type(state_type)
    value = read_object(json_text)
    state = run_on_store(opts.settings(), lambda store: store.replace_state(state_id, stype, value))
    echo_state(opts, state, stype, show_secrets)


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@pass_options
def delete(opts: Options, state_id: str, state_type: str | None) -> None:
    """Delete the state of ID (also a corrupt one); deleting a missing state is not an error.

    \b
    Example:
      statestore delete wf-123
    """
    stype = opts.resolve_type(state_type)
    run_on_store(opts.settings(), lambda store: store.delete_state(state_id, stype))
    if opts.json:
        echo_json(opts, {"deleted": state_id, "type": stype.value})
    else:
        click.echo(f"deleted {stype.value} state {state_id!r}")


@click.command(name="list")
@type_option
@pass_options
def list_(opts: Options, state_type: str | None) -> None:
    """List the ids of all states of one type, one per line, unsorted.

    Ids stream as the backend lists them: nothing is loaded into memory
    all at once. With --json the output is one JSON array.

    \b
    Example:
      statestore list --type credentials
      statestore --json list
    """
    stype = opts.resolve_type(state_type)

    async def stream(store: Store) -> None:
        first = True
        if opts.json:
            click.echo("[", nl=False)
        async for state_id in store.iter_states(stype):
            if opts.json:
                click.echo(("" if first else ",") + orjson.dumps(state_id).decode(), nl=False)
            else:
                click.echo(state_id)
            first = False
        if opts.json:
            click.echo("]")

    run_on_store(opts.settings(), stream)


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@pass_options
def path(opts: Options, state_id: str, state_type: str | None) -> None:
    """Print where the state of ID lives (build_state_store_path).

    The path is under the local root; on S3 the same key, without the root,
    is the object key in the bucket (--json prints both).

    \b
    Example:
      statestore path wf-123
    """
    stype = opts.resolve_type(state_type)
    settings = opts.settings()
    local = state_path(settings.local_root, settings.app_name, state_id, stype)
    if opts.json:
        echo_json(opts, {"path": local, "object_key": state_key(settings.app_name, stype, state_id).object_key})
    else:
        click.echo(local)


@click.command()
@pass_options
def config(opts: Options) -> None:
    """Print the effective configuration: environment plus options, secrets redacted.

    Encryption keys, AWS secret keys and session tokens are never printed,
    only whether they are set; the backend line is the backend's describe().

    \b
    Example:
      statestore --backend s3 --bucket my-bucket config
    """
    settings = opts.settings()

    async def describe(store: Store) -> dict[str, Any]:
        return effective_config(settings, store, aws_environment())

    echo_config(opts, run_on_store(settings, describe))


@click.command()
@type_option
@click.option(
    "--concurrency", default=8, show_default=True, type=click.IntRange(min=1), help="States rewritten at once."
)
@pass_options
def reencrypt(opts: Options, state_type: str | None, concurrency: int) -> None:
    """Rewrite every state whose stored form is outdated, and print how many per type.

    Outdated: encrypted under an old key (after a key rotation), plain JSON
    where encryption is now on, or encrypted where it is now off. Each
    rewrite is a compare-and-swap write, so it is safe while applications
    run, and safe to run again (then it rewrites 0). Without --type both
    types are done. A state no configured key opens stops it with exit 3, and
    so does a plain one while STATESTORE_REQUIRE_ENCRYPTION is on: migrate
    with it off, then turn it on.

    \b
    Example: a rotation, the new key in, the old one kept for reading
      STATESTORE_ENCRYPTION_KEY=$NEW STATESTORE_ENCRYPTION_OLD_KEYS=$OLD statestore reencrypt
    """
    chosen = state_type or opts.state_type
    types = [opts.resolve_type(chosen)] if chosen else [StateType.CREDENTIALS, StateType.WORKFLOWS]

    async def rewrite(store: Store) -> dict[str, int]:
        return {t.value: await store.reencrypt_states(t, concurrency=concurrency) for t in types}

    counts = run_on_store(opts.settings(), rewrite)
    if opts.json:
        echo_json(opts, {"rewritten": counts})
        return
    for name, count in counts.items():
        click.echo(f"{name}: {count} rewritten")


@click.command()
@click.option("--json", "json_output", is_flag=True, help="Print the report as one JSON object (as the global --json).")
@pass_options
def check(opts: Options, json_output: bool) -> int:
    """Probe the configured backend: is it safe to keep state on?

    Works on scratch objects under the app's prefix
    (persistent-artifacts/apps/<app>/.statestore-check/) and removes them;
    nothing stored is touched. On S3: reachable, bucket, permissions,
    create-if-absent, If-Match in both forms, stale If-Match, If-Match on a
    missing key, conditional delete, user metadata, SSE. On a local root:
    writable, locking, file modes, no symbolic links. Prints a table, the
    verdict and the settings to use (e.g. STATESTORE_S3_IF_MATCH=unquoted).

    Exit codes: 0 safe, 4 unsafe (concurrent updates would be lost),
    1 unreachable, 2 bad configuration.

    \b
    Example:
      statestore --backend s3 --bucket my-bucket --endpoint-url http://ceph:7480 check
      statestore --root /var/lib/app/state check --json
    """
    opts.json = opts.json or json_output
    try:
        settings = opts.settings()
        report = run_on_store(settings, lambda store: store.check())
    except InvalidInputError as exc:  # no store can be built from this configuration
        backend = opts.overrides.get("backend") or requested_backend()
        report = configuration_report(str(backend), str(exc))
    code = CHECK_EXIT[report.verdict]
    if opts.json:
        echo_json(opts, {**report.to_dict(), "exit_code": code})
    else:
        render_check(report)
    return code
