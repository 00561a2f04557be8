"""Listings: ListObjectsV2 pages and a key's kept versions (ListObjectVersions), never outside the prefix asked.

A page that answers a key outside the prefix asked for (the server or a proxy
ignored it) is refused whole, before anything of it is used: whatever a caller
would do with such a listing (prune, copy, clean up) could touch objects that
are not this store's.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from ...errors import ListingOutOfPrefixError
from ..base import ObjectMeta, ObjectVersion
from .transport import ListPage, Transport, VersionEntry, VersionsPage

T = TypeVar("T")


class Caller(Protocol):
    """What the listings need of the backend: its bucket, page size, and one call with retries and error mapping."""

    bucket: str
    list_page_size: int

    def object_key(self, key: str) -> str: ...

    async def call(self, op: str, key: str, fn: Callable[[Transport], Awaitable[T]]) -> T: ...


def check_listed(bucket: str, op: str, full_prefix: str, keys: Iterable[str]) -> None:
    """``ListingOutOfPrefixError`` if a listed key is outside ``full_prefix``: the server ignored the prefix."""
    if all(key.startswith(full_prefix) for key in keys):
        return
    raise ListingOutOfPrefixError(
        f"S3 {op} of prefix {full_prefix!r} in bucket {bucket!r} answered keys outside that prefix: the "
        "server (or a proxy in front of it) ignored the prefix asked for, so the listing cannot be trusted and "
        "nothing was done with it ('statestore check' reports such a server as unsafe)",
        prefix=full_prefix,
    )


async def list_objects(backend: Caller, prefix: str, strip: int) -> AsyncIterator[ObjectMeta]:
    """Every object under ``prefix`` (a backend key), page by page; keys with ``strip`` chars removed."""
    full_prefix = backend.object_key(prefix)
    token: str | None = None
    while True:

        async def page_of(t: Transport, token: str | None = token) -> ListPage:
            return await t.list_page(full_prefix, max_keys=backend.list_page_size, token=token)

        page = await backend.call("list", prefix, page_of)
        check_listed(backend.bucket, "list", full_prefix, (item.key for item in page.items))
        for item in page.items:
            etag = item.etag
            quoted = None if not etag else etag if etag.startswith('"') else f'"{etag}"'
            yield ObjectMeta(item.key[strip:], item.size, item.last_modified, quoted)
        if page.next_token is None:
            return
        token = page.next_token


def _version(item: VersionEntry) -> ObjectVersion:
    return ObjectVersion(item.version_id, item.etag, item.last_modified, item.size, item.deleted)


async def _versions_page(
    backend: Caller, key: str, full_key: str, key_marker: str | None, version_id_marker: str | None
) -> VersionsPage:
    page = await backend.call(
        "versions",
        key,
        lambda t: t.list_versions_page(
            full_key, max_keys=backend.list_page_size, key_marker=key_marker, version_id_marker=version_id_marker
        ),
    )
    check_listed(backend.bucket, "versions", full_key, page.every_key())
    return page


async def list_versions(backend: Caller, key: str) -> builtins.list[ObjectVersion]:
    """The kept versions of ``key``, newest first, delete markers included, in the listing's own order.

    S3 lists a key's versions and delete markers as one sequence, but botocore (and moto)
    split each page into two lists, which ``_interleave`` merges back (docs/decisions/0037).
    """
    full_key = backend.object_key(key)
    found: list[ObjectVersion] = []
    markers: tuple[str | None, str | None] = (None, None)
    while True:
        page = await _versions_page(backend, key, full_key, *markers)
        mine = [_version(v) for v in page.versions if v.key == full_key]
        deleted = [_version(v) for v in page.delete_markers if v.key == full_key]
        found += await _interleave(backend, key, full_key, mine, deleted)
        beyond = any(k > full_key for k in page.every_key())
        if beyond or not page.truncated or not page.next_key_marker:
            return found
        markers = (page.next_key_marker, page.next_version_id_marker)


async def _interleave(
    backend: Caller, key: str, full_key: str, found: list[ObjectVersion], deleted: list[ObjectVersion]
) -> list[ObjectVersion]:
    """One page's versions and delete markers (each newest first) as one list in the listing's order.

    Their times order them where they differ. Where a delete marker and a version share a time
    (moto lists whole seconds), the server's order decides: a listing that starts after the
    marker (``VersionIdMarker``) shows which of those versions follow it. One request per such
    marker; none where times differ.
    """
    following: dict[str, set[str]] = {}
    for marker in deleted:
        tied = {v.version_id for v in found if v.last_modified == marker.last_modified}
        if tied:
            following[marker.version_id] = await _following(backend, key, full_key, marker, tied)
    merged: list[ObjectVersion] = []
    v = d = 0
    while v < len(found) and d < len(deleted):
        version, marker = found[v], deleted[d]
        if version.last_modified == marker.last_modified:
            marker_first = version.version_id in following[marker.version_id]
        else:
            marker_first = marker.last_modified > version.last_modified
        merged.append(marker if marker_first else version)
        d, v = (d + 1, v) if marker_first else (d, v + 1)
    return merged + found[v:] + deleted[d:]


async def _following(backend: Caller, key: str, full_key: str, marker: ObjectVersion, tied: set[str]) -> set[str]:
    """Which of the ``tied`` version ids the server lists after the delete ``marker``."""
    found: set[str] = set()
    markers: tuple[str | None, str | None] = (full_key, marker.version_id)
    while True:
        page = await _versions_page(backend, key, full_key, *markers)
        entries = [*page.versions, *page.delete_markers]
        listed = [item for item in entries if item.key == full_key]
        found |= tied & {item.version_id for item in page.versions if item.key == full_key}
        older = any(item.last_modified < marker.last_modified for item in listed)
        everything = len(listed) == len(entries)
        if found == tied or older or not everything or not page.truncated or not page.next_key_marker:
            return found  # the tied versions all follow the marker; after them come older ones, then other keys
        markers = (page.next_key_marker, page.next_version_id_marker)
