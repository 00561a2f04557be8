"""Write ids: every put remembers, in user metadata, the ids of the last ``HISTORY`` writes to its object.

A put that comes back 412/409 although it landed (its response was lost and the
client or our retry loop resent it) finds its own id in that history and reports
success, so a change is neither reported failed nor applied twice. A conditional
put that gave up on a transient failure looks the same way before it reports one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ...errors import PreconditionFailed
from ...util.lru import LRU
from ..base import Versioned, md5_etag, same_etag
from .transport import S3Object

logger = logging.getLogger(__name__)

#: User-metadata key (header ``x-amz-meta-statestore-writes``) holding the recent write ids.
WRITES_METADATA = "statestore-writes"
#: How many write ids an object remembers; see docs/s3-and-minio.md for what this bounds.
HISTORY = 100  # 17 + 100 * 17 - 1 bytes: inside S3's 2 KB user-metadata limit

#: Reads an object in full (None if missing).
Reader = Callable[[str], Awaitable[S3Object | None]]


class RejectedUnchanged(Exception):
    """A conditional request failed although the object still has the ETag it named (a refused If-Match form)."""


def parse_history(header: str) -> tuple[str, ...]:
    return tuple(part for part in header.split(",") if part)


def next_history(write_id: str, previous: str | None) -> str:
    """The write-id header of a put: ``write_id`` first, then at most ``HISTORY - 1`` of ``previous`` (a header)."""
    if not previous:
        return write_id
    history = f"{write_id},{previous}"
    for _ in range(history.count(",") + 1 - HISTORY):  # over by the oldest id (by more only if HISTORY shrank)
        history = history[: history.rfind(",")]
    return history


class Histories:
    """(key, ETag unquoted) -> the write-id header stored with that version, for the next put's header.

    Keyed by the key too: objects with the same bytes share an ETag but not a history.
    """

    def __init__(self) -> None:
        self._seen: LRU[tuple[str, str], str] = LRU(4096)

    def header_after(self, key: str, write_id: str, if_match: str | None) -> str:
        return next_history(write_id, self._seen.get((key, if_match.strip('"'))) if if_match else None)

    def remember(self, key: str, etag: str, header: str) -> None:
        self._seen.put((key, etag.strip('"')), header)


def _landed_etag(current: S3Object, write_id: str, data: bytes) -> str:
    """Our write landed: its ETag if it is still the current version, else one that is surely stale."""
    history = parse_history(current.writes)
    if history[0] == write_id and current.data == data:
        return current.etag
    # landed, and another write has replaced it since: a non-current ETag makes the caller's next
    # compare-and-swap fail and re-read instead of overwriting that write
    return md5_etag(data)


async def reconcile(read: Reader, key: str, data: bytes, write_id: str, refused: str | None, answer: str) -> str:
    """After a failed condition: did our own (resent) write land? Its ETag if so, else ``PreconditionFailed``.

    ``RejectedUnchanged`` when the 412 was to If-Match ``refused`` and the object still has that ETag.
    """
    current = await read(key)
    if current is not None:
        if write_id in parse_history(current.writes):
            logger.info("S3 put of %r answered %s, but it was our own write landing: success", key, answer)
            return _landed_etag(current, write_id, data)
        if refused is not None and same_etag(current.etag, refused):
            raise RejectedUnchanged(key)
    shown = None if current is None or current.data is None else Versioned(current.data, current.etag)
    raise PreconditionFailed(key, current=shown, current_known=True)


async def settle(read: Reader, key: str, data: bytes, write_id: str) -> str | None:
    """A conditional put gave up on a transient failure: its ETag if an earlier try had landed, else None."""
    current = await read(key)
    if current is not None and write_id in parse_history(current.writes):
        logger.info("S3 put of %r gave up, but an earlier try had landed: success", key)
        return _landed_etag(current, write_id, data)
    return None
