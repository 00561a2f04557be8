"""The ``statestore`` command: inspect, change and repair state from a shell.

Every command builds one ``Store`` from ``Settings.from_env()`` with the global
options laid over it, runs one operation and closes the store. A failure is one
line on stderr (a traceback only with ``--debug``) and an exit code that says
what kind of failure it was (``exit_codes``): 2 invalid input, 3 corrupt or
undecryptable state, 1 the backend failed or other writers kept winning.

Modules: ``options`` (global options, running an operation on a store); the
commands by theme: ``state_commands`` (one state: get, set, merge, replace,
delete, path, history, show, restore), ``bulk_commands`` (many states: list,
reencrypt, prune, copy), ``setup_commands`` (config, check) and ``demo``;
``parsing`` (JSON arguments), ``progress`` (progress on stderr), ``render``
(output, redacted through ``statestore.hygiene``), ``exit_codes``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ..codec.secrets import mask_secret_text
from ..config.settings import BACKENDS, DEFAULT_BACKEND
from . import bulk_commands, setup_commands, state_commands
from .demo import demo
from .exit_codes import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, cause_chain, describe_error
from .options import TYPE_NAMES, Options, pass_options
from .parsing import parse_value
from .render import SafeFormatter, echo, effective_config, report_error

__all__ = ["cli", "effective_config", "main", "parse_value", "run"]


class _DebugHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The ``--debug`` log handler; ``run`` removes it when the command ends (``run`` may be called again)."""

    def __init__(self, stream: Any, previous_level: int) -> None:
        super().__init__(stream)
        self.previous_level = previous_level  # the package logger's level, restored with the handler's removal


class _StdoutClosed(Exception):
    """The reader of stdout went away (``statestore list | head``)."""


class _Group(click.Group):
    """Lets a broken pipe reach ``run`` (click itself would turn it into exit code 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _StdoutClosed from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first sentence (click would cut it to the width with '...'); lines wrap."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help=f"Backend (env STATESTORE_BACKEND; default {DEFAULT_BACKEND}; memory: demo, config, check only).",
)
@click.option(
    "--url",
    help="The store as one URL (env STATESTORE_URL): file:///path, file:relative/path, memory://, "
    "or s3://BUCKET[/PREFIX] with ?endpoint_url=URL and &region=NAME.",
)
@click.option("--root", help="Root directory of the local backend (env STATESTORE_LOCAL_ROOT).")
@click.option("--app", help="Application name, the <app> in every key (env STATESTORE_APP_NAME).")
@click.option("--bucket", help="Bucket of the s3 backend (env STATESTORE_BUCKET; or --url s3://bucket).")
@click.option("--endpoint-url", help="S3 endpoint for MinIO or moto (env STATESTORE_S3_ENDPOINT_URL).")
@click.option("--type", "state_type", metavar="|".join(TYPE_NAMES), help="State type for every command.")
@click.option("--json", "json_output", is_flag=True, help="Machine output: compact JSON on stdout and stderr.")
@click.option("--debug", is_flag=True, help="Log statestore's debug messages and print tracebacks.")
@pass_options
def cli(
    opts: Options,
    backend: str | None,
    url: str | None,
    root: str | None,
    app: str | None,
    bucket: str | None,
    endpoint_url: str | None,
    state_type: str | None,
    json_output: bool,
    debug: bool,
) -> None:
    """Inspect, change and repair statestore state from a shell.

    Options given here override the STATESTORE_* environment variables.
    Exit codes: 0 ok, 1 backend failure or conflict, 2 invalid input,
    3 corrupt or undecryptable state, 4 'check' found the backend unsafe,
    5 backend unavailable (retry later), 6 access denied, 7 backend misconfigured.

    \b
    Example:
      statestore --root /var/lib/app/state get wf-123
    """
    given = {"backend": backend, "local_root": root, "app_name": app, "bucket": bucket, "s3_endpoint_url": endpoint_url}
    opts.overrides = {name: value for name, value in given.items() if value is not None}
    opts.url = url
    opts.state_type = state_type
    opts.json = json_output
    opts.debug = debug
    if debug:
        package = logging.getLogger("statestore")  # only ours: SDK debug logs carry request headers
        handler = _DebugHandler(sys.stderr, package.level)
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.DEBUG)


for _command in (
    state_commands.get,
    state_commands.set_,
    state_commands.merge,
    state_commands.replace,
    state_commands.delete,
    bulk_commands.list_,
    state_commands.path,
    setup_commands.config,
    demo,
    bulk_commands.reencrypt,
    setup_commands.check,
    setup_commands.init,
    bulk_commands.prune,
    bulk_commands.copy,
    state_commands.history,
    state_commands.show,
    state_commands.restore,
):
    cli.add_command(_command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    opts = Options()
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="statestore", standalone_mode=False, obj=opts
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        echo(exc.format_message(), err=True)
        return EXIT_INVALID
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        report_error(opts, "UsageError", f"{exc.format_message()}{where}", EXIT_INVALID)
        return EXIT_INVALID
    except click.ClickException as exc:
        report_error(opts, type(exc).__name__, exc.format_message(), exc.exit_code)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        report_error(opts, "Interrupted", "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except _StdoutClosed:
        # The reader went away (``| head``): stop quietly, and keep the flush at exit from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if opts.debug:
            echo("".join(traceback.format_exception(exc)), err=True, nl=False)
            for cause in cause_chain(exc):
                shown = mask_secret_text(" ".join(str(cause).split()))
                echo(f"statestore: caused by {type(cause).__name__}: {shown}", err=True)
        message, code = describe_error(exc, opts.store_args())
        notes = getattr(exc, "__notes__", None)  # what the command adds, e.g. how much it printed before
        report_error(opts, type(exc).__name__, "; ".join([message, *notes]) if notes else message, code)
        return code
    finally:
        _remove_debug_handlers()
    return result if isinstance(result, int) else EXIT_OK


def _remove_debug_handlers() -> None:
    package = logging.getLogger("statestore")
    for handler in [h for h in package.handlers if isinstance(h, _DebugHandler)]:
        package.removeHandler(handler)
        package.setLevel(handler.previous_level)


def main() -> NoReturn:
    """The ``statestore`` console script."""
    sys.exit(run())
