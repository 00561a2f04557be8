"""The commands on states (get, set, merge, replace, delete, list, path, reencrypt, prune, history, show, restore)
and on the setup (config, check)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
import orjson

from ..api import build_store
from ..check import configuration_report
from ..config.settings import Settings, aws_environment, requested_backend, with_key_from
from ..config.url import parse_store_url
from ..core.store import Store
from ..errors import InvalidInputError
from ..keys.paths import state_key
from ..keys.statetype import StateType
from .exit_codes import CHECK_EXIT, EXIT_FAILED, EXIT_OK, describe_error
from .options import (
    Options,
    pass_options,
    progress_option,
    refuse_memory,
    run_on_store,
    show_secrets_option,
    type_option,
)
from .parsing import parse_duration, parse_value, read_object
from .render import (
    echo,
    echo_config,
    echo_json,
    echo_state,
    effective_config,
    info_json,
    info_line,
    render_check,
    state_location,
    version_json,
    version_line,
)

if TYPE_CHECKING:
    from ..copying import CopyReport


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


@click.command(name="list")
@type_option
@click.option("--long", "-l", "long_format", is_flag=True, help="Also size, last modified (UTC) and version.")
@progress_option
@pass_options
def list_(opts: Options, state_type: str | None, long_format: bool, force_progress: bool) -> None:
    """List the ids of all states of one type, one per line, unsorted.

    Ids stream as the backend lists them: nothing is loaded into memory
    all at once; if the listing fails midway, the error line says how many
    ids were printed before it (they are incomplete). With --json the
    output is one JSON array, printed once the listing is complete (nothing
    on a failure). With --long each line is id, size in bytes, last
    modified (UTC, ISO 8601) and version (the ETag; '-' where the listing
    has none), from the listing alone; with --json each entry is then an
    object with those fields.

    \b
    Example:
      statestore list --type credentials
      statestore --json list
      statestore list --long
    """
    stype = opts.resolve_type(state_type)

    async def stream(store: Store) -> None:
        listed: list[Any] = []  # --json: the whole array, printed only once complete
        count = 0
        items: AsyncIterator[Any] = store.iter_state_info(stype) if long_format else store.iter_states(stype)
        with progress_reporter(opts, f"listing {stype.value}", force_progress, unknown_total=True) as advance:
            try:
                async for item in items:
                    if opts.json:
                        listed.append(info_json(item) if long_format else item)
                    else:
                        echo(info_line(item) if long_format else item)
                    count += 1
                    if advance is not None:
                        advance(count, 0)
            except Exception as exc:
                if count and not opts.json:
                    exc.add_note(f"the listing stopped after {count} ids: the ids printed above are incomplete")
                raise
            if advance is not None:
                advance(count, count)
        if opts.json:
            echo(orjson.dumps(listed).decode())

    run_on_store(opts.settings(), stream)


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

    echo_config(opts, run_on_store(settings, describe, one_shot=False))


@click.command()
@type_option
@click.option(
    "--concurrency", default=8, show_default=True, type=click.IntRange(min=1), help="States rewritten at once."
)
@progress_option
@pass_options
def reencrypt(opts: Options, state_type: str | None, concurrency: int, force_progress: bool) -> None:
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
        counts: dict[str, int] = {}
        for t in types:
            with progress_reporter(opts, f"reencrypting {t.value}", force_progress) as advance:
                counts[t.value] = await store.reencrypt_states(t, concurrency=concurrency, progress=advance)
        return counts

    counts = run_on_store(opts.settings(), rewrite)
    if opts.json:
        echo_json(opts, {"rewritten": counts})
        return
    for name, count in counts.items():
        echo(f"{name}: {count} rewritten")


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
        report = run_on_store(settings, lambda store: store.check(), one_shot=False)
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
        echo(state_id)
    echo(f"{verb} {len(ids)} {stype.value} state{'' if len(ids) == 1 else 's'}", err=True)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# -- copy ------------------------------------------------------------------------

_COPY_TYPES = {
    "all": None,
    "workflow": StateType.WORKFLOWS,
    "workflows": StateType.WORKFLOWS,
    "credential": StateType.CREDENTIALS,
    "credentials": StateType.CREDENTIALS,
}


def _side_settings(opts: Options, given: str, key_env: str | None, which: str) -> Settings:
    """The settings of one side of ``copy``: ``-`` is the store of the global options, anything else a URL."""
    if given == "-":
        settings = opts.settings()
    else:
        settings = Settings.from_env(
            **parse_store_url(given).settings_fields(),
            **{k: v for k, v in opts.overrides.items() if k == "app_name"},
        )
    refuse_memory(settings)
    if key_env is not None:
        try:
            settings = with_key_from(settings, key_env)
        except InvalidInputError as exc:
            raise InvalidInputError(f"--{which}-key-env: {exc}") from None
    return settings


@click.command(name="copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option(
    "--type",
    "state_type",
    type=click.Choice(sorted(_COPY_TYPES)),
    help="States to copy (default all; overrides the global --type).",
)
@click.option("--overwrite", is_flag=True, help="Replace states the destination has (compare-and-swap, never blind).")
@click.option("--dry-run", is_flag=True, help="Write nothing; report what a run would do.")
@click.option("--progress", "force_progress", is_flag=True, help="Show progress on stderr even when not a terminal.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(min=1), help="States copied at once.")
@click.option("--source-key-env", metavar="VAR", help="Environment variable holding the source's encryption key.")
@click.option("--dest-key-env", metavar="VAR", help="Environment variable holding the destination's encryption key.")
@click.option(
    "--allow-plaintext", is_flag=True, help="Store states the source encrypts in plain JSON where DST has no key."
)
@pass_options
def copy(
    opts: Options,
    source: str,
    destination: str,
    state_type: str | None,
    overwrite: bool,
    dry_run: bool,
    force_progress: bool,
    concurrency: int,
    source_key_env: str | None,
    dest_key_env: str | None,
    allow_plaintext: bool,
) -> int:
    """Copy the app's states from the store SRC to the store DST, and print a summary.

    SRC and DST are store URLs (file:///path, file:relative/path,
    s3://bucket[/prefix][?endpoint_url=...&region=...]), or '-' for the store
    the global options (--root, --bucket, --url...) and the environment name.
    A state DST already has is skipped (--overwrite replaces it with a
    compare-and-swap write of the version just read). Credentials are
    decrypted with the source's key and sealed with the destination's: by
    default both are STATESTORE_ENCRYPTION_KEY; --source-key-env and
    --dest-key-env name other variables (a key never goes on the command
    line; the keys of the environment, STATESTORE_ENCRYPTION_OLD_KEYS too,
    still decrypt). States the source encrypts are never written in plain
    JSON to a DST without a key (exit 2, nothing copied) unless
    --allow-plaintext. A state that fails does not stop the others; the
    exit code is then that of its failure (all alike) or 1. Safe to run
    again: what an earlier run copied is skipped.

    \b
    Example:
      statestore copy file:./local/tmp 's3://my-bucket?endpoint_url=http://minio:9000' --dry-run
      statestore --root ./local/dapr/objectstore copy - file:./local/tmp --type credentials
    """
    from ..copying import copy_states

    chosen = state_type or opts.state_type or "all"
    if chosen not in _COPY_TYPES:
        raise InvalidInputError(f"unknown state type {chosen!r}: expected one of {', '.join(sorted(_COPY_TYPES))}")
    if source != "-" and destination != "-":
        given = {"backend", "local_root", "bucket", "s3_endpoint_url"}.intersection(opts.overrides)
        if given or opts.url is not None:
            raise InvalidInputError("the backend options apply to the side given as '-'; neither SRC nor DST is '-'")
    src_settings = _side_settings(opts, source, source_key_env, "source")
    dst_settings = _side_settings(opts, destination, dest_key_env, "dest")

    async def go() -> CopyReport:
        src, dst = build_store(src_settings), build_store(dst_settings)
        try:
            with progress_reporter(opts, "copying", force_progress) as advance:
                return await copy_states(
                    src,
                    dst,
                    types=_COPY_TYPES[chosen] or "all",
                    overwrite=overwrite,
                    dry_run=dry_run,
                    progress=advance,
                    concurrency=concurrency,
                    allow_plaintext=allow_plaintext,
                )
        finally:
            await src.aclose()
            await dst.aclose()

    report = asyncio.run(go())
    codes = {describe_error(failure.error)[1] for failure in report.failed}
    code = EXIT_OK if not codes else codes.pop() if len(codes) == 1 else EXIT_FAILED
    if opts.json:
        echo_json(opts, {**report.to_dict(), "exit_code": code})
        return code
    would = "would copy" if dry_run else "copied"
    for item in report.copied:
        echo(f"{would}\t{item.type}\t{item.id}" + ("\t(overwrite)" if item in report.overwritten else ""))
    for item in report.skipped:
        echo(f"skipped\t{item.type}\t{item.id}\t({item.reason})")
    for failure in report.failed:
        message = " ".join(describe_error(failure.error)[0].split())
        echo(f"failed\t{failure.type}\t{failure.id}\t{type(failure.error).__name__}: {message}")
    echo(
        f"{would} {len(report.copied)}, skipped {len(report.skipped)}, failed {len(report.failed)}"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    return code


@contextlib.contextmanager
def progress_reporter(
    opts: Options, label: str, force: bool, *, unknown_total: bool = False
) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing on stderr: a bar on a terminal, else lines with ``force``.

    None (no progress) when stderr is not a terminal, or with --json, unless ``force``. With
    ``unknown_total`` the total is given as 0 until the last call (``done == total``).
    """
    tty = sys.stderr.isatty()
    if not force and (opts.json or not tty):
        yield None
        return
    if not tty:
        step = [0]

        def lines(done: int, total: int) -> None:
            if done == total:
                echo(f"{label}: {done}/{total} done", err=True)
                return
            mark = done * 100 // total if total else done // 1000
            if mark >= step[0]:
                step[0] = mark + (10 if total else 1)
                echo(f"{label}: {done}/{total or '?'}", err=True)

        yield lines
        return
    from rich.progress import Progress

    with Progress(transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield advance


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
        echo(f"no versions kept of {stype.value} state {state_id!r}", err=True)
        return
    echo("version\ttime\tsize")
    for version in versions:
        echo(version_line(version))


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
