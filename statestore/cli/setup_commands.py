"""The commands on the set-up: config (the effective configuration), check (is the backend safe?), init (make it)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..api import build_store
from ..check import CheckReport, check_backend, configuration_report
from ..check.setup import init_backend
from ..config.settings import aws_environment, requested_backend
from ..core.store import Store
from ..errors import InvalidInputError
from .exit_codes import CHECK_EXIT
from .options import Options, pass_options, run_on_store
from .render import echo, echo_config, echo_json, effective_config, render_check


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
@click.option("--versioning", is_flag=True, help="Also turn bucket versioning on (history and restore need it).")
@pass_options
def init(opts: Options, versioning: bool) -> int:
    """Create the configured bucket (or local root) if it is missing, then run 'check'.

    Idempotent: what exists is left as it is. On S3 it creates the bucket
    (STATESTORE_BUCKET) in the configured region; --versioning turns bucket
    versioning on, which 'history' and 'restore' need. On a local root it
    creates the directory (mode 0700). Then it probes the backend as 'check'
    does and exits as 'check' does: 0 safe, 4 unsafe, 1 unreachable,
    2 bad configuration (and 5, 6, 7 when the bucket cannot be made).

    \b
    Example:
      statestore --url s3://my-bucket?endpoint_url=http://localhost:9000 init --versioning
      statestore --root /var/lib/app/state init
    """
    settings = opts.settings()

    async def go() -> tuple[list[str], CheckReport]:
        store = build_store(settings)
        try:
            done = await init_backend(store.backend, versioning=versioning)
            return done, await check_backend(store.backend, store.app_name)
        finally:
            await store.aclose()

    done, report = asyncio.run(go())  # a failure (no permission, unreachable) is reported as every command's
    code = CHECK_EXIT[report.verdict]
    if opts.json:
        echo_json(opts, {"init": done, **report.to_dict(), "exit_code": code})
    else:
        for line in done:
            echo(line)
        render_check(report)
    return code
