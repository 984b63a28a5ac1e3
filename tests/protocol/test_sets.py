"""UID sets and bounded batches."""

from __future__ import annotations

from imapproxy.protocol.sets import batches, uid_set


def test_uid_set_is_compact_sorted_and_deduplicated() -> None:
    assert uid_set([9, 1, 2, 3, 7, 3, 10]) == "1:3,7,9:10"
    assert uid_set([]) == ""
    assert uid_set([5]) == "5"


def test_batches_bound_count_and_size_and_keep_order() -> None:
    sizes = [5, 5, 5, 20, 1, 1, 1, 1]
    got = list(batches(sizes, 3, 12, size_of=lambda n: n))
    assert got == [[5, 5], [5], [20], [1, 1, 1], [1]]
    assert [n for batch in got for n in batch] == sizes
