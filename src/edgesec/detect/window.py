"""Sliding time windows of distinct keys, bounded in size (pure)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from typing import Any


class DistinctWindow:
    """Distinct keys seen in the last ``span_us`` microseconds.

    At most ``cap`` observations are kept: beyond that the oldest go first,
    so a flood costs bounded memory and still counts as at least ``cap``
    recent observations.  ``groups`` counts distinct second parts per first
    part of a pair key (distinct ports per host).
    """

    __slots__ = ("_count", "_items", "cap", "groups", "span_us")

    def __init__(self, span_us: int, cap: int = 4096) -> None:
        self.span_us = span_us
        self.cap = cap
        self._items: deque[tuple[int, Hashable]] = deque()
        self._count: Counter[Hashable] = Counter()
        self.groups: Counter[Hashable] = Counter()

    def add(self, ts: int, key: Hashable) -> None:
        self._items.append((ts, key))
        self._count[key] += 1
        if self._count[key] == 1 and isinstance(key, tuple):
            self.groups[key[0]] += 1
        self.prune(ts)

    def prune(self, now: int) -> None:
        limit = now - self.span_us
        items = self._items
        while items and (items[0][0] < limit or len(items) > self.cap):
            _, key = items.popleft()
            n = self._count[key] - 1
            if n:
                self._count[key] = n
            else:
                del self._count[key]
                if isinstance(key, tuple):
                    g = self.groups[key[0]] - 1
                    if g:
                        self.groups[key[0]] = g
                    else:
                        del self.groups[key[0]]

    def distinct(self) -> int:
        return len(self._count)

    def events(self) -> int:
        return len(self._items)

    def keys(self, limit: int = 16) -> list[Any]:
        return list(self._count)[:limit]

    def clear(self) -> None:
        self._items.clear()
        self._count.clear()
        self.groups.clear()


class Sum:
    """A sum over the last ``span_us`` microseconds, in one-second buckets."""

    __slots__ = ("_buckets", "span_us", "total")

    def __init__(self, span_us: int) -> None:
        self.span_us = span_us
        self._buckets: deque[list[int]] = deque()
        self.total = 0

    def add(self, ts: int, value: int) -> None:
        sec = ts // 1_000_000
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += value
        else:
            self._buckets.append([sec, value])
        self.total += value
        limit = (ts - self.span_us) // 1_000_000
        while self._buckets and self._buckets[0][0] < limit:
            self.total -= self._buckets.popleft()[1]

    def clear(self) -> None:
        self._buckets.clear()
        self.total = 0
