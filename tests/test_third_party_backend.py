"""The third-party backend of docs/testing.md, proven: a SQLite backend passes ``BackendTests`` with one fixture.

Everything below this docstring is the docs' example, verbatim (tests/test_backend_conformance.py checks it).
"""

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from statestore import ObjectBackend, PutMode
from statestore.backends import ObjectMeta, PutResult, Update, Versioned
from statestore.backends.base import md5_etag
from statestore.errors import PreconditionFailed, StoredStateTooLargeError
from statestore.testing import BackendTests


def quoted(etag: str) -> str:
    return '"' + etag.strip('"') + '"'


class SQLiteBackend(ObjectBackend):
    """Objects as rows of one SQLite table; each condition is in the statement that writes, so it is atomic."""

    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement, one transaction
        self.db.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, data BLOB, etag TEXT, at REAL)")

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | None:
        # answering NotModified to if_none_match is optional: returning the whole object is always correct
        size = self.db.execute("SELECT length(data), etag FROM objects WHERE key = ?", (key,)).fetchone()
        if size is not None and max_bytes is not None and size[0] > max_bytes:  # refused before it is read
            raise StoredStateTooLargeError(key, size[0], max_bytes, size[1])
        row = self.db.execute("SELECT data, etag FROM objects WHERE key = ?", (key,)).fetchone()
        return Versioned(*row) if row else None

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        etag = md5_etag(data)
        if isinstance(mode, Update):  # only over the version named
            sql, args = "UPDATE objects SET data=?, etag=?, at=? WHERE key=? AND etag=?", (quoted(mode.etag),)
        else:  # CREATE: only a new key; OVERWRITE: any
            verb = "IGNORE" if mode == PutMode.CREATE else "REPLACE"
            sql, args = f"INSERT OR {verb} INTO objects (data, etag, at, key) VALUES (?, ?, ?, ?)", ()
        if self.db.execute(sql, (data, etag, time.time(), key, *args)).rowcount == 0:
            raise PreconditionFailed(key)
        return PutResult(etag)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        where, args = ("key=?", (key,)) if if_match is None else ("key=? AND etag=?", (key, quoted(if_match)))
        if self.db.execute(f"DELETE FROM objects WHERE {where}", args).rowcount == 0 and if_match is not None:
            raise PreconditionFailed(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        sql = "SELECT key, length(data), at, etag FROM objects WHERE substr(key, 1, ?) = ? ORDER BY key"
        for key, size, at, etag in self.db.execute(sql, (len(prefix), prefix)).fetchall():
            yield ObjectMeta(key, size, datetime.fromtimestamp(at, UTC), etag)


class TestSQLiteBackend(BackendTests):
    @pytest.fixture
    def backend(self) -> SQLiteBackend:
        return SQLiteBackend()
