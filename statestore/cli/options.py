"""The global options every command sees, the shared per-command options, and running one operation on a store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..api import build_store
from ..codec.secrets import redact_url
from ..config.settings import Settings
from ..config.url import parse_store_url
from ..core.store import Store
from ..errors import InvalidInputError
from ..keys.statetype import StateType

T = TypeVar("T")

TYPE_NAMES = tuple(t.value for t in StateType)
_FLAGS = {"backend": "backend", "local_root": "root", "bucket": "bucket", "s3_endpoint_url": "endpoint-url"}


@dataclasses.dataclass
class Options:
    """The global options; ``overrides`` are ``Settings`` fields laid over the environment."""

    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    url: str | None = None
    state_type: str | None = None
    json: bool = False
    debug: bool = False

    def settings(self) -> Settings:
        """The environment, then ``--url`` (which decides the backend and its settings), then the other options."""
        if self.url is None:
            return Settings.from_env(**self.overrides)
        backend_options = {"backend", "local_root", "bucket", "s3_endpoint_url"}.intersection(self.overrides)
        if backend_options:
            flags = ", ".join(sorted("--" + _FLAGS[name] for name in backend_options))
            raise InvalidInputError(f"--url names the backend already; drop {flags}")
        return Settings.from_env(**parse_store_url(self.url).settings_fields(), **self.overrides)

    def store_args(self) -> list[str]:
        """The global options that named the store (``--url``, ``--root``, ``--app``...), for a suggested command.

        An endpoint URL is shown redacted (``http://<redacted>@host``); a store URL cannot hold credentials.
        """
        args = ["--url", self.url] if self.url is not None else []
        for name, flag in (*_FLAGS.items(), ("app_name", "app")):
            if name in self.overrides:
                value = str(self.overrides[name])
                args += [f"--{flag}", redact_url(value) if name == "s3_endpoint_url" else value]
        return args

    def resolve_type(self, per_command: str | None) -> StateType:
        """The command's ``--type``, else the global one, else ``workflows``; a bad name is exit 2."""
        for given in (per_command, self.state_type):
            if given is not None:
                return StateType.coerce(given)
        return StateType.WORKFLOWS


pass_options = click.make_pass_decorator(Options, ensure=True)


def type_option_with(help_text: str, names: tuple[str, ...] = TYPE_NAMES) -> Callable[..., Any]:
    """A command's ``--type`` option, with the help that says what its default is, and the ``names`` it takes."""
    return click.option("--type", "state_type", metavar="|".join(names), help=help_text)


type_option = type_option_with("State type (overrides the global --type; default workflows).")


def show_secrets_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--show-secrets", is_flag=True, help="Print secret-looking credential values instead of <redacted>."
    )(f)


def run_on_store(settings: Settings, operation: Callable[[Store], Awaitable[T]], *, one_shot: bool = True) -> T:
    """Run ``operation`` on a fresh store built from ``settings``, then close the store.

    ``one_shot``: the command reads or changes stored states, so the memory backend is refused.
    """
    if one_shot:
        refuse_memory(settings)

    async def go() -> T:
        store = build_store(settings)
        try:
            return await operation(store)
        finally:
            await store.aclose()

    return asyncio.run(go())


def refuse_memory(settings: Settings) -> None:
    """Refuse the memory backend for a command that reads or changes states: it would forget them at exit."""
    if settings.backend == "memory":
        raise InvalidInputError(
            "the memory backend keeps states only while one process runs, and each statestore command is a "
            "process of its own ('set' then 'get' would find nothing): use --root DIR, --url file:DIR or "
            "--url s3://BUCKET (memory is fine for 'demo', 'config' and 'check')"
        )


def progress_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--progress", "force_progress", is_flag=True, help="Show progress on stderr even when not a terminal."
    )(f)
