"""The commands on the set-up: config (the effective configuration) and check (is the backend safe?)."""

from __future__ import annotations

from typing import Any

import click

from ..check import configuration_report
from ..config.settings import aws_environment, requested_backend
from ..core.store import Store
from ..errors import InvalidInputError
from .exit_codes import CHECK_EXIT
from .options import Options, pass_options, run_on_store
from .render import echo_config, echo_json, effective_config, render_check


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
