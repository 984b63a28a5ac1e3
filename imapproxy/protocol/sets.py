"""Writing UID sets and cutting work into bounded commands: what every side that builds
``UID FETCH a,b,c:d`` commands needs (the content engine, SEARCH on filtered content,
``imapproxy migrate``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def uid_set(uids: Iterable[int]) -> str:
    """Sorted UIDs as a compact IMAP set: ``1:3,7,9:10``."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def batches(items: Iterable[T], count: int, size: int,
            size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Runs of at most ``count`` items and about ``size`` bytes in all (an item bigger than
    ``size`` goes alone), in order."""
    batch: list[T] = []
    total = 0
    for item in items:
        n = size_of(item)
        if batch and (len(batch) >= count or total + n > size):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch
