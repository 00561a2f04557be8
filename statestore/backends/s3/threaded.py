"""A second S3 transport: botocore's synchronous client, run in worker threads.

moto's in-process mock (``@mock_aws``, ``with mock_aws():``) hooks botocore's
synchronous HTTP layer, which aiobotocore does not use. ``ThreadedS3Client``
exposes the async methods ``S3Backend`` and ``statestore check`` call on an
aiobotocore client, with the same arguments and response shapes, and runs each
call of a botocore client through ``asyncio.to_thread``. Errors are botocore's
own classes (``ClientError`` and the rest), so ``S3Backend``'s classification,
write-id history, lost-response reconciliation and If-Match form learning
apply unchanged.

``S3Backend(client="auto")`` uses it while moto's mock is active
(``moto_mock_active``), ``client="boto3"`` (``STATESTORE_S3_CLIENT=boto3``)
always. Nothing here is imported otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# moto checks If-Match and then stores, in two steps: calls into the mock are serialised
# so that two threads cannot both pass the check (a real server does this atomically).
_MOCK_LOCK = threading.Lock()


def moto_mock_active() -> bool:
    """Whether moto's in-process mock is on; never imports moto (a dict look-up when it is not loaded)."""
    models = sys.modules.get("moto.core.models")
    if models is None:
        return False
    stubber = getattr(models, "botocore_stubber", None)
    return getattr(stubber, "enabled", False) is True


class ReadBody:
    """A GetObject ``Body`` already read (in the worker thread; by obstore), shaped like aiobotocore's stream."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aenter__(self) -> ReadBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self._data


class ThreadedS3Client:
    """The aiobotocore S3 client methods statestore uses, on a botocore client in worker threads."""

    def __init__(self, client: Any, *, serialise: bool) -> None:
        self._client = client
        self._serialise = serialise

    def _run(self, fn: Callable[[], T]) -> T:
        if not self._serialise:
            return fn()
        with _MOCK_LOCK:
            return fn()

    async def _call(self, method: str, args: dict[str, Any]) -> Any:
        bound = getattr(self._client, method)
        return await asyncio.to_thread(self._run, lambda: bound(**args))

    async def get_object(self, **args: Any) -> Any:
        def call() -> Any:
            response = self._client.get_object(**args)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            return {**response, "Body": ReadBody(data)}

        return await asyncio.to_thread(self._run, call)

    async def put_object(self, **args: Any) -> Any:
        return await self._call("put_object", args)

    async def delete_object(self, **args: Any) -> Any:
        return await self._call("delete_object", args)

    async def head_object(self, **args: Any) -> Any:
        return await self._call("head_object", args)

    async def list_objects_v2(self, **args: Any) -> Any:
        return await self._call("list_objects_v2", args)

    async def head_bucket(self, **args: Any) -> Any:
        return await self._call("head_bucket", args)

    async def list_object_versions(self, **args: Any) -> Any:
        return await self._call("list_object_versions", args)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    async def get_bucket_versioning(self, **args: Any) -> Any:
        return await self._call("get_bucket_versioning", args)


async def open_threaded_client(
    *,
    loader: Any,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    credentials: tuple[str | None, str | None, str | None],
    connect_timeout: float,
    read_timeout: float,
    max_pool_connections: int,
    path_style: bool,
    mocked: bool,
) -> ThreadedS3Client:
    """A botocore S3 client configured as ``S3Backend._open`` configures aiobotocore's (one attempt, timeouts)."""
    import botocore.session
    from botocore.config import Config

    def create() -> Any:
        session = botocore.session.Session(profile=profile)
        session.register_component("data_loader", loader)
        key_id, secret, token = credentials
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            s3={"addressing_style": "path"} if path_style else None,
        )
        return session.create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=config,
        )

    return ThreadedS3Client(await asyncio.to_thread(create), serialise=mocked)
