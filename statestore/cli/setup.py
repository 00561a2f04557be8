"""``statestore init``: create the configured bucket (or local root) if it is missing, then ``check``."""

from __future__ import annotations

import asyncio

import click

from ..api import build_store
from ..check import CheckReport, check_backend
from ..check.setup import init_backend
from .exit_codes import CHECK_EXIT
from .options import Options, pass_options
from .render import echo, echo_json, render_check


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
