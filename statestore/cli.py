"""The ``statestore`` command: inspect, change and repair state from a shell.

Every command builds one ``Store`` from ``Settings.from_env()`` with the global
options laid over it, runs one operation and closes the store. A failure is one
line on stderr (a traceback only with ``--debug``) and an exit code that says
what kind of failure it was: 2 invalid input, 3 corrupt or undecryptable state,
1 the backend failed or other writers kept winning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import orjson

from .check import CheckReport, Outcome, Verdict, configuration_report
from .codec import dumps, loads
from .config import BACKENDS, Settings
from .errors import BackendError, ConflictError, CorruptStateError, DecryptionError, InvalidInputError, StateStoreError
from .facade import StateStore, build_store, use_store
from .hygiene import REDACTED, is_secret_key, is_secret_text, mask_secret_text, redact
from .paths import build_state_store_path
from .statetype import StateType
from .store import State, Store

EXIT_OK = 0
EXIT_FAILED = 1  # the backend failed, retries ran out, or anything unexpected
EXIT_INVALID = 2  # usage errors and every InvalidInputError
EXIT_CORRUPT = 3  # CorruptStateError, including DecryptionError
EXIT_UNSAFE = 4  # ``check``: the backend would lose concurrent updates
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE (``statestore list | head``)
EXIT_INTERRUPTED = 130

TYPE_NAMES = tuple(t.value for t in StateType)

T = TypeVar("T")

# -- options and the store -----------------------------------------------------


@dataclasses.dataclass
class Options:
    """The global options; ``overrides`` are ``Settings`` fields laid over the environment."""

    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    state_type: str | None = None
    json: bool = False
    debug: bool = False

    def settings(self) -> Settings:
        return dataclasses.replace(Settings.from_env(), **self.overrides)

    def resolve_type(self, per_command: str | None) -> StateType:
        """The command's ``--type``, else the global one, else ``workflows``; a bad name is exit 2."""
        for given in (per_command, self.state_type):
            if given is not None:
                return StateType.coerce(given)
        return StateType.WORKFLOWS


def _run(settings: Settings, operation: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``operation`` on a fresh store built from ``settings``, then close the store."""

    async def go() -> T:
        store = build_store(settings)
        try:
            return await operation(store)
        finally:
            await store.aclose()

    return asyncio.run(go())


def _echo_json(opts: Options, value: Any) -> None:
    """Compact JSON with ``--json`` (one line per result, for machines), indented otherwise."""
    click.echo(dumps(value, indent=not opts.json).decode())


def _echo_state(opts: Options, state: State, stype: StateType, show_secrets: bool) -> None:
    _echo_json(opts, state if show_secrets or stype is not StateType.CREDENTIALS else redact(state))


def _parse_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got a JSON {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "null"


def _read_object(arg: str | None) -> dict[str, Any]:
    """A JSON object from the argument, or from stdin when it is ``-`` or missing."""
    if arg is None or arg == "-":
        if arg is None and sys.stdin.isatty():
            raise InvalidInputError("give the JSON object as an argument, or '-' and pipe it on stdin")
        return _parse_object(sys.stdin.buffer.read(), "stdin")  # bytes: orjson itself rejects invalid UTF-8
    return _parse_object(arg, "the JSON argument")


def parse_value(text: str) -> Any:
    """``set``'s VALUE: JSON if it parses, else a bare word (no spaces, not starting like JSON) is a string."""
    try:
        return loads(text)
    except ValueError as exc:
        if text and text[0] not in '{["' and not any(ch.isspace() for ch in text):
            return text
        raise InvalidInputError(
            f"VALUE is not valid JSON ({exc}); write a string with spaces as JSON, e.g. '\"two words\"'"
        ) from None


# -- the command group ---------------------------------------------------------

_pass_options = click.make_pass_decorator(Options, ensure=True)


class _StdoutClosed(Exception):
    """The reader of stdout went away (``statestore list | head``)."""


class _Group(click.Group):
    """Lets a broken pipe reach ``run`` (click itself would turn it into exit code 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _StdoutClosed from exc


def _type_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--type",
        "state_type",
        metavar="|".join(TYPE_NAMES),
        help="State type (overrides the global --type; default workflows).",
    )(f)


def _show_secrets_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--show-secrets", is_flag=True, help="Print secret-looking credential values instead of <redacted>."
    )(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--backend", type=click.Choice(BACKENDS), help="Backend (env STATESTORE_BACKEND; default local).")
@click.option("--root", help="Root directory of the local backend (env STATESTORE_LOCAL_ROOT).")
@click.option("--app", help="Application name, the <app> in every key (env STATESTORE_APP_NAME).")
@click.option("--bucket", help="Bucket of the s3 backend (env STATESTORE_BUCKET).")
@click.option("--endpoint-url", help="S3 endpoint for MinIO or moto (env STATESTORE_S3_ENDPOINT_URL).")
@click.option("--type", "state_type", metavar="|".join(TYPE_NAMES), help="State type for every command.")
@click.option("--json", "json_output", is_flag=True, help="Machine output: compact JSON on stdout and stderr.")
@click.option("--debug", is_flag=True, help="Log statestore's debug messages and print tracebacks.")
@_pass_options
def cli(
    opts: Options,
    backend: str | None,
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
    3 corrupt or undecryptable state, 4 'check' found the backend unsafe.

    \b
    Example:
      statestore --root /var/lib/app/state get wf-123
    """
    given = {"backend": backend, "local_root": root, "app_name": app, "bucket": bucket, "s3_endpoint_url": endpoint_url}
    opts.overrides = {name: value for name, value in given.items() if value is not None}
    opts.state_type = state_type
    opts.json = json_output
    opts.debug = debug
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package = logging.getLogger("statestore")  # only ours: SDK debug logs carry request headers
        package.addHandler(handler)
        package.setLevel(logging.DEBUG)


@cli.command()
@click.argument("state_id", metavar="ID")
@_type_option
@_show_secrets_option
@_pass_options
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
    state = _run(opts.settings(), lambda store: store.get_state(state_id, stype))
    _echo_state(opts, state, stype, show_secrets)


@cli.command(name="set")
@click.argument("state_id", metavar="ID")
@click.argument("key")
@click.argument("value")
@_type_option
@_show_secrets_option
@_pass_options
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
    state = _run(opts.settings(), lambda store: store.save_state_object(state_id, {key: parsed}, stype))
    _echo_state(opts, state, stype, show_secrets)


@cli.command()
@click.argument("state_id", metavar="ID")
@click.argument("json_text", metavar="[JSON|-]", required=False)
@_type_option
@_show_secrets_option
@_pass_options
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
    update = _read_object(json_text)
    state = _run(opts.settings(), lambda store: store.save_state_object(state_id, update, stype))
    _echo_state(opts, state, stype, show_secrets)


@cli.command()
@click.argument("state_id", metavar="ID")
@click.argument("json_text", metavar="[JSON|-]", required=False)
@_type_option
@_show_secrets_option
@_pass_options
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
    value = _read_object(json_text)
    state = _run(opts.settings(), lambda store: store.replace_state(state_id, stype, value))
    _echo_state(opts, state, stype, show_secrets)


@cli.command()
@click.argument("state_id", metavar="ID")
@_type_option
@_pass_options
def delete(opts: Options, state_id: str, state_type: str | None) -> None:
    """Delete the state of ID (also a corrupt one); deleting a missing state is not an error.

    \b
    Example:
      statestore delete wf-123
    """
    stype = opts.resolve_type(state_type)
    _run(opts.settings(), lambda store: store.delete_state(state_id, stype))
    if opts.json:
        _echo_json(opts, {"deleted": state_id, "type": stype.value})
    else:
        click.echo(f"deleted {stype.value} state {state_id!r}")


@cli.command(name="list")
@_type_option
@_pass_options
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

    _run(opts.settings(), stream)


@cli.command()
@click.argument("state_id", metavar="ID")
@_type_option
@_pass_options
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
    local = build_state_store_path(state_id, stype, root=settings.local_root, app_name=settings.app_name)
    if opts.json:
        object_key = build_state_store_path(state_id, stype, root="", app_name=settings.app_name)
        _echo_json(opts, {"path": local, "object_key": object_key})
    else:
        click.echo(local)


# -- config --------------------------------------------------------------------

_AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_AWS_PUBLIC = ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def safe_url(url: str) -> str:
    """``url`` without a user name or password in it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=REDACTED + "@" + parts.netloc.rsplit("@", 1)[1]))


def _setting(name: str, value: Any) -> Any:
    """A setting as ``config`` shows it: secret-named or binary values only say whether they are set.

    Secret-named means the rule of ``statestore.hygiene``, the one the secret policy uses.
    """
    if is_secret_key(name) or isinstance(value, (bytes, bytearray)):
        if isinstance(value, (tuple, list)):
            return f"<{len(value)} set>"
        return "<set>" if value else None
    if isinstance(value, str) and "url" in name:
        return safe_url(value)
    if isinstance(value, str) and is_secret_text(value):
        return mask_secret_text(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _describe_codec(store: Store) -> str:
    codec = store.codec
    if type(codec).__repr__ is object.__repr__:
        return type(codec).__name__
    return repr(codec)  # codecs never put key material in their repr


def effective_config(settings: Settings, store: Store, environ: dict[str, str]) -> dict[str, Any]:
    """What ``statestore config`` prints: settings, the built store, and the AWS environment, secrets redacted."""
    aws: dict[str, Any] = {name: "<set>" if environ.get(name) else None for name in _AWS_SECRETS}
    aws.update({name: safe_url(environ[name]) if environ.get(name) else None for name in _AWS_PUBLIC})
    return {
        "settings": {f.name: _setting(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)},
        "store": {"backend": store.backend.describe(), "codec": _describe_codec(store), "app_name": store.app_name},
        "aws": aws,
    }


@cli.command()
@_pass_options
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
        return effective_config(settings, store, dict(os.environ))

    shown = _run(settings, describe)
    if opts.json:
        _echo_json(opts, shown)
        return
    for section, values in shown.items():
        for name, value in values.items():
            text = "-" if value is None else value if isinstance(value, str) and value else orjson.dumps(value).decode()
            click.echo(f"{section}.{name}: {text}")


# -- demo ----------------------------------------------------------------------


async def _demo(store: Store, workflow_id: str, items: int) -> State:
    """The API page's checkpointing example, on the ``StateStore`` facade with ``store`` as the default."""
    from rich.console import Console
    from rich.progress import Progress

    with use_store(store):
        state = await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)
        last_processed = state.get("last_processed_index", -1)
        with Progress(console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("checkpointing", total=items, completed=min(last_processed + 1, items))
            for i in range(items):
                if i <= last_processed:
                    continue
                progress.advance(task)
                if (i + 1) % 100 == 0:
                    await StateStore.save_state(
                        key="last_processed_index", value=i, id=workflow_id, type=StateType.WORKFLOWS
                    )
        await StateStore.save_state(key="status", value="completed", id=workflow_id, type=StateType.WORKFLOWS)
        return await StateStore.get_state(id=workflow_id, type=StateType.WORKFLOWS)


@cli.command()
@click.option("--id", "workflow_id", default="demo-workflow", show_default=True, help="Workflow id.")
@click.option("--items", default=1000, show_default=True, type=click.IntRange(min=0), help="Items to process.")
@_pass_options
def demo(opts: Options, workflow_id: str, items: int) -> None:
    """Run the API page's checkpointing example, with a progress bar, on the store.

    Without options that is the local default (./local/tmp/). Run it twice:
    the second run resumes from the stored checkpoint.

    \b
    Example:
      statestore demo --items 500
    """
    settings = opts.settings()
    state = _run(settings, lambda store: _demo(store, workflow_id, items))
    state_file = build_state_store_path(
        workflow_id, StateType.WORKFLOWS, root=settings.local_root, app_name=settings.app_name
    )
    if opts.json:
        _echo_json(opts, {"state_file": state_file, "state": state})
        return
    click.echo(f"state file: {state_file}")
    _echo_json(opts, state)


# -- reencrypt -----------------------------------------------------------------


@cli.command()
@_type_option
@click.option(
    "--concurrency", default=8, show_default=True, type=click.IntRange(min=1), help="States rewritten at once."
)
@_pass_options
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

    counts = _run(opts.settings(), rewrite)
    if opts.json:
        _echo_json(opts, {"rewritten": counts})
        return
    for name, count in counts.items():
        click.echo(f"{name}: {count} rewritten")


# -- check ---------------------------------------------------------------------

CHECK_EXIT = {
    Verdict.SAFE: EXIT_OK,
    Verdict.UNSAFE: EXIT_UNSAFE,
    Verdict.UNREACHABLE: EXIT_FAILED,
    Verdict.MISCONFIGURED: EXIT_INVALID,
}
_OUTCOME_STYLE = {Outcome.OK: "green", Outcome.FAIL: "yellow", Outcome.SKIPPED: "dim", Outcome.UNSAFE: "bold red"}
_VERDICT_STYLE = {
    Verdict.SAFE: "bold green",
    Verdict.UNSAFE: "bold red",
    Verdict.UNREACHABLE: "bold red",
    Verdict.MISCONFIGURED: "bold yellow",
}


def render_check(report: CheckReport) -> None:
    """The report as a table of probes, then the verdict and the settings to use."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"statestore check: {report.backend}", title_justify="left")
    table.add_column("probe", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for probe in report.probes:
        table.add_row(probe.name, Text(probe.outcome.value, style=_OUTCOME_STYLE[probe.outcome]), probe.detail)
    console.print(table)
    verdict = Text("verdict: ")
    verdict.append(report.verdict.value.upper(), style=_VERDICT_STYLE[report.verdict])
    verdict.append(f" - {report.message}")
    console.print(verdict)
    if report.verdict is Verdict.SAFE:
        shown = " ".join(f"{name}={value}" for name, value in report.settings.items())
        console.print(f"settings to use: {shown}" if shown else "settings to use: none needed")


@cli.command()
@click.option("--json", "json_output", is_flag=True, help="Print the report as one JSON object (as the global --json).")
@_pass_options
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
        report = _run(settings, lambda store: store.check())
    except InvalidInputError as exc:  # no store can be built from this configuration
        backend = opts.overrides.get("backend") or os.environ.get("STATESTORE_BACKEND") or "local"
        report = configuration_report(str(backend), str(exc))
    code = CHECK_EXIT[report.verdict]
    if opts.json:
        _echo_json(opts, {**report.to_dict(), "exit_code": code})
    else:
        render_check(report)
    return code


# -- errors and the entry point ------------------------------------------------


def _describe_error(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code of a failure."""
    if isinstance(exc, InvalidInputError):
        return f"invalid input: {exc}", EXIT_INVALID
    if isinstance(exc, DecryptionError):
        return f"cannot decrypt: {exc}", EXIT_CORRUPT
    if isinstance(exc, CorruptStateError):
        return (
            f"corrupt state: {exc}; repair it with 'statestore replace ID JSON' or 'statestore delete ID'",
            EXIT_CORRUPT,
        )
    if isinstance(exc, ConflictError):
        return f"conflict: {exc}", EXIT_FAILED
    if isinstance(exc, BackendError):
        # The cause's own message is left to --debug: SDK messages can hold URLs with credentials in them.
        return f"backend failed: {exc} (--debug shows the cause)", EXIT_FAILED
    if isinstance(exc, StateStoreError):
        return f"error: {exc}", EXIT_FAILED
    return f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)", EXIT_FAILED


def _report(opts: Options, kind: str, message: str, code: int) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    if opts.json:
        click.echo(orjson.dumps({"error": kind, "message": line, "exit_code": code}).decode(), err=True)
    else:
        click.echo(f"statestore: {line}", err=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    opts = Options()
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="statestore", standalone_mode=False, obj=opts
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        return EXIT_INVALID
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _report(opts, "UsageError", f"{exc.format_message()}{where}", EXIT_INVALID)
        return EXIT_INVALID
    except click.ClickException as exc:
        _report(opts, type(exc).__name__, exc.format_message(), exc.exit_code)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        _report(opts, "Interrupted", "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except _StdoutClosed:
        # The reader went away (``| head``): stop quietly, and keep the flush at exit from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if opts.debug:
            traceback.print_exception(exc)
        message, code = _describe_error(exc)
        _report(opts, type(exc).__name__, message, code)
        return code
    return result if isinstance(result, int) else EXIT_OK


def main() -> NoReturn:
    """The ``statestore`` console script."""
    sys.exit(run())


if __name__ == "__main__":
    main()
