"""Which transport, and one open transport per event loop: opened lazily, closed with its loop or at exit.

``choose`` is the one place a transport is picked: ``auto`` is ``boto3`` (botocore's
client in threads) while moto's in-process ``mock_aws`` is on, else ``aioboto3``.
``LoopClients`` keeps one transport per event loop (aiohttp sessions belong to one
loop), closes it when its loop shuts down (``asyncio.run`` closes async generators
before the loop), when ``aclose`` is called, or at interpreter exit -- also the
transport of a loop still running in another thread (a ``SyncStore`` never closed),
so no "Unclosed client session" is ever printed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ...errors import InvalidInputError
from ...util import forks
from .transport import ClientOptions, Transport

logger = logging.getLogger(__name__)

#: ``client`` / ``STATESTORE_S3_CLIENT``: the transport. ``auto`` is ``boto3`` while moto's ``mock_aws`` is
#: active, else ``aioboto3``; ``obstore`` is Rust's object_store (the ``obstore`` extra).
S3_CLIENTS = ("auto", "aioboto3", "boto3", "obstore")
#: How long closing at exit waits for a loop running in another thread.
_EXIT_WAIT = 5.0


def moto_mock_active() -> bool:
    """Whether moto's in-process mock is on; never imports moto (a dict look-up when it is not loaded)."""
    models = sys.modules.get("moto.core.models")
    if models is None:
        return False
    stubber = getattr(models, "botocore_stubber", None)
    return getattr(stubber, "enabled", False) is True


def choose(setting: str) -> str:
    """The transport a ``client`` setting means now: ``auto`` follows moto's mock (it can start and stop)."""
    if setting != "auto":
        return setting
    return "boto3" if moto_mock_active() else "aioboto3"


async def open_transport(name: str, options: ClientOptions) -> Transport:
    """Open a transport of ``name``; the client library is imported and the client built off the event loop."""
    if name == "obstore":
        from .obstore_transport import open_obstore

        return await open_obstore(options)
    from .botocore_transport import open_aioboto3, open_threaded

    if name == "boto3":
        return await open_threaded(options, mocked=moto_mock_active())
    return await open_aioboto3(options)


@dataclass
class LoopClient:
    """The transport of one event loop and its loop-shutdown hook."""

    loop: asyncio.AbstractEventLoop
    transport: Transport
    closer: AsyncGenerator[None, None] | None = None
    closed: bool = False


_live: weakref.WeakSet[LoopClients] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = forks.lock()


def _close_at_exit() -> None:
    """Close every transport still open at interpreter exit, on its own loop, wherever that loop is."""
    for clients in list(_live):
        for entry in clients.entries():
            loop = entry.loop
            if entry.closed or loop.is_closed():
                continue
            try:
                if loop.is_running():  # another thread's loop (a SyncStore never closed): ask it
                    future = asyncio.run_coroutine_threadsafe(clients.shutdown(entry), loop)
                    future.result(timeout=_EXIT_WAIT)
                else:  # an idle loop (run_until_complete users)
                    loop.run_until_complete(clients.shutdown(entry))
            except Exception:  # exit must go on
                logger.debug("closing an S3 client at exit failed", exc_info=True)


class LoopClients:
    """One transport per event loop for one backend's ``options`` and ``setting``."""

    def __init__(self, setting: str, options: ClientOptions, describe: str) -> None:
        self.setting = setting
        self._options = options
        self._describe = describe
        self._clients: dict[asyncio.AbstractEventLoop, LoopClient] = {}
        self._open_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = forks.lock()
        _live.add(self)
        forks.in_child(self, LoopClients._forget_parent_clients)

    @property
    def name(self) -> str:
        """The transport in use now (``auto`` resolved)."""
        return choose(self.setting)

    def entries(self) -> list[LoopClient]:
        with self._lock:
            return list(self._clients.values())

    def _forget_parent_clients(self) -> None:
        """In a forked child: every client belongs to the parent (shared connections); drop them unclosed."""
        entries = list(self._clients.values())
        self._clients, self._open_locks = {}, {}
        for entry in entries:
            entry.closed = True
            forks.disown_loop(entry.loop, entry)

    def current(self) -> Transport | None:
        """This loop's open transport of the right kind, without awaiting anything (the common case)."""
        entry = self._clients.get(asyncio.get_running_loop())
        if entry is not None and not entry.closed and entry.transport.name == choose(self.setting):
            return entry.transport
        return None

    async def get(self) -> Transport:
        """This event loop's transport, opened on first use."""
        transport = self.current()
        if transport is not None:
            return transport
        loop = asyncio.get_running_loop()
        name = choose(self.setting)
        with self._lock:
            lock = self._open_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            entry = self._clients.get(loop)
            if entry is not None and not entry.closed and entry.transport.name != name:
                await self.shutdown(entry)  # moto's mock_aws started or stopped since it was opened
            if entry is None or entry.closed or entry.transport.name != name:
                entry = await self._register(LoopClient(loop, await open_transport(name, self._options)))
        return entry.transport

    async def _register(self, entry: LoopClient) -> LoopClient:
        global _atexit_registered
        closer = self._close_with_loop(entry)
        await closer.__anext__()
        entry.closer = closer
        with self._lock:  # forget closed loops: their clients and locks
            for old in [lp for lp in (*self._clients, *self._open_locks) if lp.is_closed()]:
                self._clients.pop(old, None)
                self._open_locks.pop(old, None)
            self._clients[entry.loop] = entry
        with _atexit_lock:
            if not _atexit_registered:
                atexit.register(_close_at_exit)
                _atexit_registered = True
        logger.debug("opened the %s S3 client for %s", entry.transport.name, self._describe)
        return entry

    async def _close_with_loop(self, entry: LoopClient) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close_entry(entry)

    async def _close_entry(self, entry: LoopClient) -> None:
        if entry.closed:
            return
        entry.closed = True
        with self._lock:
            if self._clients.get(entry.loop) is entry:
                del self._clients[entry.loop]
        try:
            await entry.transport.close()
        except Exception:
            logger.debug("closing an S3 client failed", exc_info=True)

    async def shutdown(self, entry: LoopClient) -> None:
        """Close ``entry``'s transport and its loop-shutdown hook; runs on ``entry.loop``."""
        await self._close_entry(entry)
        if entry.closer is not None:
            await entry.closer.aclose()

    async def aclose(self, wait: float) -> None:
        """Close every transport: this loop's here, a running loop's on that loop (waiting up to ``wait`` s)."""
        current = asyncio.get_running_loop()
        for entry in self.entries():
            if entry.loop is current:
                await self.shutdown(entry)
            elif entry.loop.is_running() and not entry.loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self.shutdown(entry), entry.loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(future), timeout=wait)
                except Exception:
                    logger.debug("closing the S3 client of another loop failed", exc_info=True)
            # a loop neither current nor running closes its client when it shuts down


def safe_endpoint(url: str | None) -> str | None:
    """``url`` without any user:password part, for logs and ``describe``."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def check_transport_options(client: str, conditional_delete: str, profile: str | None) -> None:
    """Refuse, at construction, what the chosen transport cannot honour."""
    if client not in S3_CLIENTS:
        raise InvalidInputError(f"client must be one of {', '.join(S3_CLIENTS)}, got {client!r}")
    if client != "obstore":
        return
    if profile is not None:
        raise InvalidInputError(
            "the obstore S3 transport reads no AWS profiles: give the keys (or use the environment or an "
            "instance role), or use client='aioboto3'"
        )
    if conditional_delete == "true":
        raise InvalidInputError(
            "conditional_delete='true' needs If-Match on DeleteObject, which the obstore S3 transport cannot "
            "send: use client='aioboto3' (STATESTORE_S3_CLIENT=aioboto3)"
        )
