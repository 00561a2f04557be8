"""The write record each write stores with the state, in the state's own object, and the ``Fence``.

A write stores the state's JSON, then its record as insignificant whitespace (RFC 8259 allows any amount after a
JSON text), so every JSON reader -- boto3, s3fs, ``json.load``, the service statestore replaces -- reads exactly
the state's own keys::

    {"progress":50}\n<64 spaces and tabs>[\n<spaces and tabs>]

- the first line after the JSON is the write's id, 64 random bits as spaces (0) and tabs (1). No two writes store
  the same bytes, so an object's ETag (the MD5 of its bytes on S3, local and memory backends) names one write,
  never two: ``if_version``, ``prune_states`` and listings are exact even when a state is rewritten with the same
  content;
- the second line, present once ``acquire_fence`` was called, is the state's fencing epoch in the same binary.
  Every write keeps it, so a fenced update is one conditional PUT like any other.

Where the state is encrypted the record is inside the sealed bytes, covered by the encryption like the state. A
tool that rewrites the JSON drops the record: the next write starts a new one, and a fence is lost (its holders
get ``FencedError``). Decision record: docs/decisions/0039-write-record-in-the-object.md.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import FencedError, InvalidInputError
from ..keys.paths import StateKey
from ..keys.statetype import StateType

__all__ = ["NO_RECORD", "Fence", "Record", "attach", "detach", "new_rev", "next_epoch"]

_TO_BITS = bytes.maketrans(b"01", b" \t")
_FROM_BITS = bytes.maketrans(b" \t", b"01")
_WHITESPACE = b" \t\r\n"
_REV_BITS = 64


class Record(NamedTuple):
    """What the last write stored with the state: its id (None: written by another tool) and the fence epoch."""

    rev: int | None = None
    fence: int = 0


NO_RECORD = Record()


_revs = random.Random(os.urandom(32))  # not the global one: a caller's random.seed() must not repeat our ids
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _revs.seed(os.urandom(32)))  # a forked child draws its own


def new_rev() -> int:
    """A fresh write id: 64 random bits (from a generator seeded by the OS, anew in each forked child)."""
    return _revs.getrandbits(_REV_BITS)


def attach(plain: bytes, rev: int, fence: int) -> bytes:
    """``plain`` (a JSON text without trailing whitespace) followed by a write's record."""
    record = f"\n{rev:064b}\n{fence:b}" if fence else f"\n{rev:064b}"
    return plain + record.encode("ascii").translate(_TO_BITS)


def detach(stored: bytes) -> tuple[bytes, Record]:
    """The JSON text in ``stored`` and the write record after it (``NO_RECORD`` where there is none)."""
    plain = stored.rstrip(_WHITESPACE)
    if len(plain) == len(stored):
        return stored, NO_RECORD  # written before records existed, or by another tool
    lines = stored[len(plain) :].translate(_FROM_BITS).split(b"\n")
    if len(lines) not in (2, 3) or lines[0] or len(lines[1]) != _REV_BITS or not _binary(lines[1:]):
        return plain, NO_RECORD  # whitespace of another writer: not a record
    return plain, Record(int(lines[1], 2), int(lines[2], 2) if len(lines) == 3 else 0)


def _binary(lines: list[bytes]) -> bool:
    return all(line and not line.strip(b"01") for line in lines)


def next_epoch(stored: int) -> int:
    """The epoch a new fence gets: above the stored one, and at least the time in microseconds.

    The clock makes a fence acquired after the state was deleted (which forgets its epoch) still greater than
    the epochs acquired before, as long as clocks agree to within the time between the two.
    """
    return max(stored + 1, time.time_ns() // 1000)


@dataclass(frozen=True, slots=True)
class Fence:
    """The right to write one state, given by ``acquire_fence``, until a newer fence is acquired for it.

    Pass it as ``fence=`` to the writes of the work that acquired it; once another fence was acquired (a newer
    attempt of the same work), or the state was deleted, those writes raise ``FencedError`` and write nothing.
    """

    app: str
    type: StateType
    id: str
    epoch: int

    def check(self, skey: StateKey) -> Fence:
        """``self`` if it was acquired for the state ``skey``, else ``InvalidInputError``."""
        if (self.app, self.type, self.id) != (skey.app, skey.type, skey.id):
            raise InvalidInputError(f"the fence was acquired for {self.type.value} state {self.id!r}, not for {skey}")
        return self

    def verify(self, skey: StateKey, stored: Record | None) -> None:
        """Raise ``FencedError`` unless the state, whose record is ``stored`` (None: missing), holds this fence."""
        if stored is None or stored.fence != self.epoch:
            raise self._refused(skey, stored)

    def _refused(self, skey: StateKey, stored: Record | None) -> FencedError:
        if stored is not None and stored.fence > self.epoch:
            why = f"a newer fence (epoch {stored.fence}) was acquired since: another attempt owns the state"
        elif stored is None:
            why = "the state is missing or unreadable: it was deleted or replaced since the fence was acquired"
        else:
            why = f"the state holds fence epoch {stored.fence}: it was deleted since the fence was acquired"
        return FencedError(
            f"{skey}: the write's fence (epoch {self.epoch}) no longer holds, {why}; nothing was written",
            epoch=self.epoch,
            stored_epoch=None if stored is None else stored.fence,
        )
