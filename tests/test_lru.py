"""``LRU``: reads take no lock; a read racing a drop still answers, and the bounds hold under threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from statestore.util.lru import LRU


def test_a_read_racing_a_drop_returns_what_it_found() -> None:
    lru: LRU[str, int] = LRU(4)
    lru.put("k", 1)

    class DroppedMeanwhile(OrderedDict[str, Any]):
        def move_to_end(self, key: str, last: bool = True) -> None:
            self.pop(key)  # another thread drops the entry between the read and the move
            super().move_to_end(key, last)

    lru._items = DroppedMeanwhile(lru._items)
    assert lru.get("k") == 1
    assert lru.get("k") is None


def test_threads_reading_and_writing_keep_both_bounds() -> None:
    lru: LRU[int, bytes] = LRU(32, max_bytes=4096, weigh=len)

    def work(seed: int) -> None:
        for i in range(3000):
            key = (seed * 7 + i) % 64
            if i % 5 == 0:
                lru.discard(key)
            elif i % 2:
                lru.put(key, b"x" * (key * 4))
            else:
                lru.get(key)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lru) <= 32
    assert lru.nbytes <= 4096
    assert lru.nbytes == sum(weight for _, weight in lru._items.values())
