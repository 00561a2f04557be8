"""The commands on one state: get, set, merge, replace, delete, path, and history, show, restore (S3 versioning)."""

from __future__ import annotations

import sys

import click

from ..keys.paths import state_key
from .options import Options, pass_options, refuse_memory, run_on_store, show_secrets_option, type_option
from .parsing import parse_value, read_object
from .render import (
    BEFORE_VERSIONING,
    VERSION_HEADER,
    echo,
    echo_json,
    echo_state,
    echo_table,
    state_location,
    version_cells,
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
        echo(f"deleted {stype.value} state {state_id!r}")


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@pass_options
def path(opts: Options, state_id: str, state_type: str | None) -> None:
    """Print where the state of ID lives: a file, or s3://bucket/prefix/key.

    On the local backend the file under the root (build_state_store_path);
    on S3 the bucket and object key (never the endpoint or credentials).
    --json prints it and the object key.

    \b
    Example:
      statestore path wf-123
    """
    stype = opts.resolve_type(state_type)
    settings = opts.settings()
    refuse_memory(settings)
    where = state_location(settings, state_id, stype)
    if opts.json:
        echo_json(opts, {"path": where, "object_key": state_key(settings.app_name, stype, state_id).object_key})
    else:
        echo(where)


# -- history and restore (S3 buckets with versioning) ----------------------------------


@click.command()
@click.argument("state_id", metavar="ID")
@type_option
@pass_options
def history(opts: Options, state_id: str, state_type: str | None) -> None:
    """List the kept versions of ID's state, newest first: version, time (UTC), size in bytes.

    A deletion shows as 'deleted'; the version 'null' is the state as it
    was when versioning was enabled. Needs a store that keeps versions: an S3
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
        echo(f"no versions kept of {stype.value} state {state_id!r}", err=True)
        return
    if sys.stdout.isatty():
        echo_table(VERSION_HEADER, [version_cells(v) for v in versions], right=(2,))
    else:
        echo("\t".join(VERSION_HEADER))
        for version in versions:
            echo(version_line(version))
    if any(v.version == BEFORE_VERSIONING for v in versions):
        echo(
            f"version {BEFORE_VERSIONING} is the state as it was stored when versioning was enabled on the bucket "
            f"(S3's id for it); show and restore take it: --version {BEFORE_VERSIONING}",
            err=True,
        )


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
