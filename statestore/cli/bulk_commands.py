"""The commands on many states: list, reencrypt, prune and copy, with progress on stderr."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click
import orjson

from ..api import build_store
from ..config.settings import Settings, with_key_from
from ..config.url import parse_store_url
from ..core.store import Store
from ..errors import InvalidInputError, InvalidStateTypeError
from ..keys.statetype import StateType
from .exit_codes import EXIT_FAILED, EXIT_OK, describe_error
from .options import (
    TYPE_NAMES,
    Options,
    pass_options,
    progress_option,
    refuse_memory,
    run_on_store,
    type_option,
    type_option_with,
)
from .parsing import parse_duration
from .progress import progress_reporter
from .render import INFO_HEADER, echo, echo_json, echo_table, info_cells, info_json, info_line

if TYPE_CHECKING:
    from ..copying import CopyReport


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
    on a failure). With --long each state has its id, size in bytes, last
    modified (UTC, ISO 8601) and version (the ETag; '-' where the listing
    has none), from the listing alone: tab-separated lines where stdout is
    not a terminal; on a terminal aligned columns under a header, printed
    once the listing is complete. With --json each entry is then an object
    with those fields. Progress goes to stderr, never among the ids.

    \b
    Example:
      statestore list --type credentials
      statestore --json list
      statestore list --long
    """
    stype = opts.resolve_type(state_type)
    table = long_format and not opts.json and sys.stdout.isatty()  # aligned: printed once complete

    async def stream(store: Store) -> None:
        listed: list[Any] = []  # --json and the table: the whole listing, printed only once complete
        count = 0
        items: AsyncIterator[Any] = store.iter_state_info(stype) if long_format else store.iter_states(stype)
        streams = not (opts.json or table)
        with progress_reporter(opts, f"listing {stype.value}", force_progress, prints_meanwhile=streams) as advance:
            try:
                async for item in items:
                    if opts.json:
                        listed.append(info_json(item) if long_format else item)
                    elif table:
                        listed.append(info_cells(item))
                    else:
                        echo(info_line(item) if long_format else item)
                    count += 1
                    if advance is not None:
                        advance(count, 0)
            except Exception as exc:
                if count and streams:
                    exc.add_note(f"the listing stopped after {count} ids: the ids printed above are incomplete")
                raise
            if advance is not None:
                advance(count, count)
        if opts.json:
            echo(orjson.dumps(listed).decode())
        elif table and listed:
            echo_table(INFO_HEADER, listed, right=(1,))

    run_on_store(opts.settings(), stream)


@click.command()
@type_option_with("State type to rewrite (overrides the global --type; default both types).")
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
    run, and safe to run again (then it rewrites 0). Without --type (its
    own or the global one) both types are done. A state no configured key
    opens stops it with exit 3, and
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

    async def go(store: Store) -> list[str]:
        with contextlib.ExitStack() as stack:  # no bar for a dry run: it deletes nothing and is quick
            advance = None if dry_run else stack.enter_context(progress_reporter(opts, f"pruning {stype.value}", False))
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
    noun = "workflow" if stype is StateType.WORKFLOWS else "credential"
    echo(f"{verb} {len(ids)} {noun} state{'' if len(ids) == 1 else 's'}", err=True)


# -- copy ------------------------------------------------------------------------


def _side_args(opts: Options, given: str) -> list[str]:
    """The global options that name one side of ``copy`` (``-``: those given; a URL: ``--url URL``), for a hint."""
    if given == "-":
        return opts.store_args()
    return ["--url", given, *(["--app", str(opts.overrides["app_name"])] if "app_name" in opts.overrides else [])]


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
@type_option_with("States to copy (overrides the global --type; default all).", (*TYPE_NAMES, "all"))
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
    try:
        types = "all" if chosen == "all" else [opts.resolve_type(chosen)]
    except InvalidStateTypeError as exc:
        raise InvalidStateTypeError(f"{exc}; copy --type also takes 'all'") from None
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
                    types=types,
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
    sides = {"source": _side_args(opts, source), "destination": _side_args(opts, destination)}
    for failure in report.failed:
        message = " ".join(describe_error(failure.error, sides[failure.side])[0].split())
        echo(f"failed\t{failure.type}\t{failure.id}\t{type(failure.error).__name__}: {message}")
    echo(
        f"{would} {len(report.copied)}, skipped {len(report.skipped)}, failed {len(report.failed)}"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    return code
