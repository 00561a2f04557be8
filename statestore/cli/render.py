"""What the commands print: JSON, states with their secrets redacted, the configuration, the check report, errors.

Secrets and URLs go through ``statestore.hygiene``: the same rule as the secret
policy, and the one URL redactor. Every line the command prints goes through
``echo``, which escapes what a terminal would act on (``terminal_safe``): text
from a server, a stored key or an exception never reaches a terminal raw.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import orjson

from ..check import CheckReport, Outcome, Verdict
from ..codec.jsonio import dumps
from ..codec.secrets import is_secret_key, is_secret_text, mask_secret_text, redact, redact_url
from ..config.settings import AWS_PUBLIC_VARIABLES, AWS_SECRET_VARIABLES, Settings
from ..core.store import State, StateInfo, StateVersion, Store
from ..keys.paths import state_key, state_path
from ..keys.statetype import StateType
from .options import Options

# What a terminal acts on: C0 controls but tab and newline, DEL, C1 controls (U+0080-U+009F: 8-bit CSI, OSC...),
# the bidi controls, and the line and paragraph separators. ``_FIELD`` adds tab and newline, for one field.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_FIELD = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def terminal_safe(text: str) -> str:
    """``text`` with what a terminal would act on written as ``\\u001b`` escapes; tabs and newlines stay.

    The escape is JSON's, so JSON text stays valid JSON that decodes to the same value (raw
    control characters can only be inside its strings).
    """
    return _UNSAFE.sub(_escape, text)


def field(text: str) -> str:
    """One field of a line (a version id, an ETag: text a server sent): ``terminal_safe``, tabs and newlines too."""
    return _FIELD.sub(_escape, text)


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Print ``text`` on stdout (or stderr), made ``terminal_safe``: every output line of the command goes here."""
    click.echo(terminal_safe(text), err=err, nl=nl)


class SafeFormatter(logging.Formatter):
    """The ``--debug`` log lines, made ``terminal_safe`` (a record may quote what a server sent)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


def echo_json(opts: Options, value: Any) -> None:
    """Compact JSON with ``--json`` (one line per result, for machines), indented otherwise."""
    echo(dumps(value, indent=not opts.json).decode())


def echo_state(opts: Options, state: State, stype: StateType, show_secrets: bool) -> None:
    """A state as JSON; credentials with their secrets redacted unless ``show_secrets``."""
    echo_json(opts, state if show_secrets or stype is not StateType.CREDENTIALS else redact(state))


def report_error(opts: Options, kind: str, message: str, code: int) -> None:
    """A failure as one line on stderr (a JSON object with ``--json``)."""
    line = " ".join(message.split())  # one line, whatever the message held
    if opts.json:
        echo(orjson.dumps({"error": kind, "message": line, "exit_code": code}).decode(), err=True)
    else:
        echo(f"statestore: {line}", err=True)


# -- config --------------------------------------------------------------------


def _setting(name: str, value: Any) -> Any:
    """A setting as ``config`` shows it: secret-named or binary values only say whether they are set.

    Secret-named means the rule of ``statestore.hygiene``, the one the secret policy uses.
    """
    if is_secret_key(name) or isinstance(value, (bytes, bytearray)):
        if isinstance(value, (tuple, list)):
            return f"<{len(value)} set>"
        return "<set>" if value else None
    if isinstance(value, str) and "url" in name:
        return redact_url(value)
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


def effective_config(settings: Settings, store: Store, environ: Mapping[str, str]) -> dict[str, Any]:
    """What ``statestore config`` prints: settings, the built store, and the AWS environment, secrets redacted."""
    aws: dict[str, Any] = {name: "<set>" if environ.get(name) else None for name in AWS_SECRET_VARIABLES}
    aws.update({name: redact_url(environ[name]) if environ.get(name) else None for name in AWS_PUBLIC_VARIABLES})
    return {
        "settings": {f.name: _setting(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)},
        "store": {"backend": store.backend.describe(), "codec": _describe_codec(store), "app_name": store.app_name},
        "aws": aws,
    }


def echo_config(opts: Options, shown: dict[str, Any]) -> None:
    """The configuration as ``section.name: value`` lines (``-`` when unset), or as JSON."""
    if opts.json:
        echo_json(opts, shown)
        return
    for section, values in shown.items():
        for name, value in values.items():
            text = "-" if value is None else value if isinstance(value, str) and value else orjson.dumps(value).decode()
            echo(f"{section}.{name}: {field(text)}")


# -- check ---------------------------------------------------------------------

_OUTCOME_STYLE = {Outcome.OK: "green", Outcome.FAIL: "yellow", Outcome.SKIPPED: "dim", Outcome.UNSAFE: "bold red"}
_VERDICT_STYLE = {
    Verdict.SAFE: "bold green",
    Verdict.UNSAFE: "bold red",
    Verdict.UNREACHABLE: "bold red",
    Verdict.MISCONFIGURED: "bold yellow",
}


def render_check(report: CheckReport) -> None:
    """The report: a table of probes, the verdict and the settings to use; no line padded, none wrapped but the table.

    On a terminal the table fits its width; elsewhere each probe is one line. The settings are one
    ``export ...`` line, printed as is: a terminal may show it over two rows, but it copies as one line.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if tty else _UNBOUNDED
    console = Console(highlight=False, markup=False, emoji=False, width=width, force_terminal=tty)
    echo(f"statestore check: {field(report.backend)}")
    table = Table()
    table.add_column("probe", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for probe in report.probes:  # rich styles what it is given, but passes control characters through
        outcome = Text(probe.outcome.value, style=_OUTCOME_STYLE[probe.outcome])
        table.add_row(field(probe.name), outcome, field(probe.detail))
    console.print(table)
    verdict = Text("verdict: ")
    verdict.append(report.verdict.value.upper(), style=_VERDICT_STYLE[report.verdict])
    verdict.append(f" - {field(report.message)}")
    for line in verdict.wrap(console, console.width):  # rich would end a wrapped line with its space
        line.rstrip()
        console.print(line, soft_wrap=True)
    if report.verdict is Verdict.SAFE:
        if report.settings:
            echo("settings to use:")
            echo("export " + " ".join(f"{name}={shlex.quote(str(value))}" for name, value in report.settings.items()))
        else:
            echo("settings to use: none needed")


#: The width output is laid out to where it is not a terminal: none (a line per row, never folded).
_UNBOUNDED = 100_000


def echo_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, right: Sequence[int] = ()) -> None:
    """``rows`` under ``header`` as aligned columns, for a terminal: laid out to its width, no trailing spaces.

    A row wider than the terminal gives up room in this order: its last column (a version: cut to no
    fewer than 6 characters, ending with an ellipsis; piped output and --json hold it whole), then its first
    (an id: folded within its column, never cut). No value runs into another column. Cells go through
    ``field``.
    """
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    cells = [[field(cell) for cell in row] for row in rows]
    natural = [max(cell_len(text) for text in column) for column in zip(header, *cells, strict=False)]
    last = len(natural) - 1
    spare = shutil.get_terminal_size().columns - (sum(natural) + 2 * last)
    widths = list(natural)
    if spare < 0:  # the last column first, down to 6
        cut = min(-spare, max(natural[last] - 6, 0))
        widths[last] -= cut
        spare += cut
    if spare < 0:  # then the first, down to 8
        widths[0] = max(natural[0] + spare, 8)
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style=None)
    for index, name in enumerate(header):
        table.add_column(
            name,
            justify="right" if index in right else "left",
            width=widths[index],
            no_wrap=index != 0,
            overflow="ellipsis" if index == last else "fold",
        )
    for row in cells:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=_UNBOUNDED, color_system=None, highlight=False, markup=False, emoji=False).print(table)
    for line in buffer.getvalue().splitlines():
        echo(line.rstrip())


# -- list --long -------------------------------------------------------------------


def info_json(info: StateInfo) -> dict[str, Any]:
    """One ``list --long --json`` entry."""
    modified = info.last_modified.isoformat().replace("+00:00", "Z")
    return {"id": info.id, "size": info.size, "last_modified": modified, "version": info.version}


#: The columns of ``list --long``: its header on a terminal.
INFO_HEADER = ("id", "size", "last modified (UTC)", "version")


def info_cells(info: StateInfo) -> tuple[str, str, str, str]:
    """One ``list --long`` row: id, size, last modified (UTC), version ('-' if unknown)."""
    return info.id, str(info.size), info.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ"), info.version or "-"


def info_line(info: StateInfo) -> str:
    """One ``list --long`` line where stdout is not a terminal: the row's cells, tab-separated."""
    return "\t".join(field(cell) for cell in info_cells(info))


# -- where a state lives -------------------------------------------------------------


def state_location(settings: Settings, state_id: str, stype: StateType) -> str:
    """Where the state of ``state_id`` lives: a file under the local root, or ``s3://bucket/prefix/key``.

    The S3 form names the bucket and the key only, never the endpoint (which may carry credentials).
    Memory: ``memory://`` and the key.
    """
    key = state_key(settings.app_name, stype, state_id).object_key
    if settings.backend == "s3":
        prefix = settings.s3_prefix.strip("/")
        return f"s3://{settings.bucket}/{prefix + '/' if prefix else ''}{key}"
    if settings.backend == "memory":
        return f"memory://{key}"
    return state_path(settings.local_root, settings.app_name, state_id, stype)


# -- history -------------------------------------------------------------------------


def version_json(version: StateVersion) -> dict[str, Any]:
    """One ``history --json`` entry."""
    modified = version.last_modified.isoformat().replace("+00:00", "Z")
    return {"version": version.version, "last_modified": modified, "size": version.size, "deleted": version.deleted}


#: The columns of ``history``, its header.
VERSION_HEADER = ("version", "time", "size")
#: S3's id of the version an object had before versioning was enabled on its bucket.
BEFORE_VERSIONING = "null"


def version_cells(version: StateVersion) -> tuple[str, str, str]:
    """One ``history`` row: version, time (UTC), size ('deleted' for a deletion)."""
    modified = version.last_modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return version.version, modified, "deleted" if version.deleted else str(version.size)


def version_line(version: StateVersion) -> str:
    """One ``history`` line where stdout is not a terminal: the row's cells, tab-separated."""
    return "\t".join(field(cell) for cell in version_cells(version))
