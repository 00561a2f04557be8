"""``statestore init`` on S3: create the configured bucket if it is missing, and turn versioning on if asked.

Idempotent: a bucket that exists (this account's) is left as it is; versioning that is on stays on.
"""

from __future__ import annotations

from ...errors import BackendError
from .backend import S3Backend
from .classify import Kind, classify
from .transport import S3Error


async def init_bucket(backend: S3Backend, *, versioning: bool) -> list[str]:
    """Create ``backend``'s bucket if need be (and enable versioning); returns what was done, one line each.

    The obstore transport cannot create buckets: botocore does it, this once.
    """
    helper = backend if (await backend.open_transport()).can_list_versions else backend.with_client("aioboto3")
    try:
        done: list[str] = []
        try:
            await helper.call("HeadBucket", "", lambda t: t.head_bucket())
            done.append(f"bucket {backend.bucket!r} exists")
        except BackendError as exc:
            answer = exc.__cause__
            if not isinstance(answer, S3Error) or (
                classify(answer) is not Kind.NOT_FOUND and answer.code != "NoSuchBucket"
            ):
                raise
            created = await helper.call("CreateBucket", "", lambda t: t.create_bucket(backend.region))
            done.append(f"bucket {backend.bucket!r} {'created' if created else 'exists'}")
        if versioning:
            status = await helper.call("GetBucketVersioning", "", lambda t: t.bucket_versioning())
            if status == "Enabled":
                done.append("versioning is on")
            else:
                await helper.call("PutBucketVersioning", "", lambda t: t.put_bucket_versioning(True))
                done.append("versioning turned on (history and restore keep versions from now on)")
        return done
    finally:
        if helper is not backend:
            await helper.aclose()
