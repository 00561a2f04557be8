"""``LRU``: a small thread-safe mapping that drops its least recently used entries past a count (and a byte) bound."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from . import forks

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``size`` entries (``size <= 0`` keeps none); safe to share between threads.

    With ``max_bytes`` and ``weigh`` (an entry's size in bytes), the entries also
    weigh at most ``max_bytes`` in all, and an entry heavier than ``max_item``
    (default ``max_bytes // 8``) is not kept at all: putting it drops what the key held.
    """

    def __init__(
        self,
        size: int,
        *,
        max_bytes: int | None = None,
        weigh: Callable[[V], int] | None = None,
        max_item: int | None = None,
    ) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.max_item = max_item if max_item is not None else (max_bytes // 8 if max_bytes is not None else None)
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = forks.lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """What the entries weigh now (0 without ``weigh``)."""
        return self._bytes

    def get(self, key: K) -> V | None:
        found = self._items.get(key)  # each step is one atomic dict operation: no lock needed to read
        if found is None:
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager on every read)
            self._items.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile: still the value it held
            pass
        return found[0]

    def put(self, key: K, item: V) -> None:
        if self.size <= 0:
            return
        weight = self._weigh(item) if self._weigh is not None else 0
        items = self._items
        with self._lock:
            found = items.pop(key, None)
            if found is not None:
                self._bytes -= found[1]
            if self.max_item is not None and weight > self.max_item:
                return
            items[key] = (item, weight)
            self._bytes += weight
            while len(items) > self.size or (self.max_bytes is not None and self._bytes > self.max_bytes):
                self._bytes -= items.popitem(last=False)[1][1]

    def discard(self, key: K) -> None:
        with self._lock:
            found = self._items.pop(key, None)
            if found is not None:
                self._bytes -= found[1]
