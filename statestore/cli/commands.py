"""The commands on states (get, set, merge, replace, delete, list, path, reencrypt, prune, history, show, restore)
and on the setup (config, check)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
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
from .parsing import parse_duration, parse_value, read_object
from .render import (
    echo_config,
    echo_json,
    echo_state,
    effective_config,
    info_json,
    info_line,
    render_check,
    version_json,
    version_line,
)


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@show_secrets_option
@click.option("--version", "version", metavar="V", help="An earlier version (from 'statestore history'); as 'show'.")
@pass_options
def get(opts: Options, state_id: str, state_type: str | None, show_secrets: bool, version: str | None) -> None:
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
    if version is not None:
        state = run_on_store(opts.settings(), lambda store: store.get_state_version(state_id, stype, version))
        echo_state(opts, state, stype, show_secrets)
        return
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
@click.option("--long", "-l", "long_format", is_flag=True, help="Also size, last modified (UTC) and version.")
@pass_options
def list_(opts: Options, state_type: str | None, long_format: bool) -> None:
    """List the ids of all states of one type, one per line, unsorted.

    Ids stream as the backend lists them: nothing is loaded into memory
    all at once. With --json the output is one JSON array. With --long each
    line is id, size in bytes, last modified (UTC, ISO 8601) and version
    (the ETag; '-' where the listing has none), from the listing alone; with
    --json each entry is then an object with those fields.

    \b
    Example:
      statestore list --type credentials
      statestore --json list
      statestore list --long
    """
    stype = opts.resolve_type(state_type)

    async def stream(store: Store) -> None:
        first = True
        if opts.json:
            click.echo("[", nl=False)
        items: AsyncIterator[Any] = store.iter_state_info(stype) if long_format else store.iter_states(stype)
        async for item in items:
            if opts.json:
                shown = info_json(item) if long_format else item
                click.echo(("" if first else ",") + orjson.dumps(shown).decode(), nl=False)
            else:
                click.echo(info_line(item) if long_format else item)
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


@click.command()
@type_option
@click.option("--older-than", required=True, metavar="DURATION", help="Age to prune at: 30d, 12h, 15m, 90s, 1d12h.")
@click.option("--dry-run", is_flag=True, help="Delete nothing; print what would be pruned.")
@click.option(
    "--allow-unconditional",
    is_flag=True,
    help="On servers that ignore conditional deletes (MinIO, Ceph RGW): delete anyway, "
    "accepting that an update made during the prune can be lost.",
)
@pass_options
def prune(opts: Options, state_type: str | None, older_than: str, dry_run: bool, allow_unconditional: bool) -> None:
    """Delete the states of one type not changed for DURATION, and print their ids and a count.

    A state is deleted only if it is still the version listed, so one updated
    during the prune is kept. On servers that ignore conditional deletes it
    refuses (exit 1, nothing deleted) unless --allow-unconditional. A progress
    bar shows on a terminal.

    \b
    Example:
      statestore prune --type workflows --older-than 30d --dry-run
      statestore prune --type workflows --older-than 30d
    """
    stype = opts.resolve_type(state_type)
    age = parse_duration(older_than)
    show_bar = sys.stderr.isatty() and not opts.json and not dry_run

    async def go(store: Store) -> list[str]:
        if not show_bar:
            return await store.prune_states(
                stype, older_than=age, dry_run=dry_run, allow_unconditional=allow_unconditional
            )
        from rich.progress import Progress

        with Progress(transient=True, console=_stderr_console()) as bar:
            task = bar.add_task(f"pruning {stype.value}", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return await store.prune_states(
                stype, older_than=age, dry_run=dry_run, allow_unconditional=allow_unconditional, progress=advance
            )

    ids = run_on_store(opts.settings(), go)
    verb = "would prune" if dry_run else "pruned"
    if opts.json:
        echo_json(opts, {"type": stype.value, "dry_run": dry_run, "count": len(ids), "pruned": ids})
        return
    for state_id in ids:
        click.echo(state_id)
    click.echo(f"{verb} {len(ids)} {stype.value} state{'' if len(ids) == 1 else 's'}", err=True)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# -- history and restore (S3 buckets with versioning) ----------------------------------


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@pass_options
def history(opts: Options, state_id: str, state_type: str | None) -> None:
    """List the kept versions of ID's state, newest first: version, time (UTC), size in bytes.

    A deletion shows as 'deleted'. Needs a store that keeps versions: an S3
    bucket with versioning enabled (aws s3api put-bucket-versioning --bucket
    BUCKET --versioning-configuration Status=Enabled); elsewhere it fails
    with exit 7 and says so. Pass a version to 'show' or 'restore'.

    \b
    Example:
      statestore history wf-123
      statestore --json history wf-123
    """
    stype = opts.resolve_type(state_type)
    versions = run_on_store(opts.settings(), lambda store: store.state_history(state_id, stype))
    if opts.json:
        echo_json(opts, {"id": state_id, "type": stype.value, "versions": [version_json(v) for v in versions]})
        return
    if not versions:
        click.echo(f"no versions kept of {stype.value} state {state_id!r}", err=True)
        return
    click.echo("version\ttime\tsize")
    for version in versions:
        click.echo(version_line(version))


@click.command()
@click.argument("state_id", metavar="ID")
@click.option("--version", "version", required=True, metavar="V", help="The version (from 'statestore history').")
@type_option
@show_secrets_option
@pass_options
def show(opts: Options, state_id: str, version: str, state_type: str | None, show_secrets: bool) -> None:
    """Print ID's state as it was at version V (from 'statestore history'), as 'get' prints it.

    Credentials are decrypted with the configured keys and their secrets
    redacted unless --show-secrets. An unknown version fails with exit 2.

    \b
    Example:
      statestore show wf-123 --version 3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY
    """
    stype = opts.resolve_type(state_type)
    state = run_on_store(opts.settings(), lambda store: store.get_state_version(state_id, stype, version))
    echo_state(opts, state, stype, show_secrets)


@click.command()
@click.argument("state_id", metavar="ID")
@click.option("--version", "version", required=True, metavar="V", help="The version to bring back.")
@type_option
@show_secrets_option
@pass_options
def restore(opts: Options, state_id: str, version: str, state_type: str | None, show_secrets: bool) -> None:
    """Store ID's state as it was at version V again, and print it.

    The restore is a new compare-and-swap write, so an update made meanwhile
    by another writer is never overwritten blindly, and the versions in
    between stay in the history. Credentials are sealed anew with the
    current key. An unknown version fails with exit 2 and writes nothing.

    \b
    Example:
      statestore history wf-123
      statestore restore wf-123 --version 3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY
    """
    stype = opts.resolve_type(state_type)
    state = run_on_store(opts.settings(), lambda store: store.restore_state(state_id, stype, version))
    echo_state(opts, state, stype, show_secrets)
