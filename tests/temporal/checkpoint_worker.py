"""A worker process for the checkpoint activity: ``python -m temporal.checkpoint_worker --address H:P --task-queue Q``.

(Run from ``tests/``, or with ``tests/`` on ``PYTHONPATH``, as the harness does.)

It reaches the store through the ``STATESTORE_*`` variables of its
environment, and opens it before it takes work. One activity slot by default, so a worker busy with an attempt
(or stopped in the middle of one) never polls for the retry: the retry goes to
another process. With ``--request-log PATH`` every backend request it makes is
appended to ``PATH`` as a JSON line (``op``, ``key``), before the request, so a
worker killed later has still counted it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from temporalio.client import Client
from temporalio.worker import Worker

from statestore import ObjectBackend, Settings, StateStore, StateType, Store, set_default_store
from statestore.backends import WrapperBackend
from statestore.config.build import store_options

from .checkpoint_activities import process_with_checkpoint

T = TypeVar("T")


class RequestLogBackend(WrapperBackend):
    """Appends each ``get``, ``put`` and ``delete`` (operation and key) to a file as it starts."""

    def __init__(self, inner: ObjectBackend, path: str) -> None:
        super().__init__(inner)
        self.path = path

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        line = json.dumps({"pid": os.getpid(), "op": op, "key": key}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return await call()


def install_request_log(path: str) -> None:
    """Make the default store the one the environment describes, its backend wrapped in ``RequestLogBackend``."""
    options = store_options(Settings.from_env())
    options["backend"] = RequestLogBackend(options["backend"], path)
    set_default_store(Store(**options))


async def run(args: argparse.Namespace) -> None:
    if args.request_log:
        install_request_log(args.request_log)
    # Open the store before taking work: the first S3 call of a process imports and builds the client, which can
    # block the event loop for seconds on a loaded machine -- past a 2 s heartbeat timeout, so the server would
    # time the first attempt out before it began (its first heartbeat then answers "not found").
    await StateStore.get_state("worker-warm-up", StateType.WORKFLOWS)
    client = await Client.connect(args.address)
    worker = Worker(
        client,
        task_queue=args.task_queue,
        activities=[process_with_checkpoint],
        max_concurrent_activities=args.slots,
        # Heartbeat often: a loaded machine must not time out a healthy attempt (0.8 x timeout leaves too little).
        max_heartbeat_throttle_interval=timedelta(seconds=0.5),
        default_heartbeat_throttle_interval=timedelta(seconds=0.5),
    )
    async with worker:
        if args.ready_file:
            Path(args.ready_file).write_text(str(os.getpid()))
        await asyncio.Event().wait()  # until the test stops the process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--ready-file")
    parser.add_argument("--request-log")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
