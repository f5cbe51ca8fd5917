"""The hot path's memory for small downloads: an LRU whose bound is in bytes, not entries."""

from __future__ import annotations

from packyard.blob_send import BlobCache


def test_the_byte_bound_holds_and_the_least_recently_used_goes_first() -> None:
    cache = BlobCache(max_bytes=1000, max_item=400)
    for i in range(50):  # a storm of distinct files
        cache.put(f"{i:064x}", bytes([i]) * 300)
        assert cache.used <= 1000
        assert cache.used == sum(len(cache.get(k) or b"") for k in list(cache._entries))
    assert len(cache) == 3
    assert cache.get(f"{47:064x}") == bytes([47]) * 300

    cache.get(f"{47:064x}")  # now the most recent: 48 is the oldest and goes first
    cache.put("a" * 64, b"x" * 300)
    assert cache.get(f"{48:064x}") is None
    assert cache.get(f"{47:064x}") is not None
    assert cache.used == 900


def test_an_entry_over_the_item_size_or_the_bound_is_not_kept() -> None:
    cache = BlobCache(max_bytes=1000, max_item=400)
    cache.put("b" * 64, b"y" * 401)
    assert (len(cache), cache.used) == (0, 0)
    nothing = BlobCache(max_bytes=0, max_item=400)  # answered in one piece, but nothing kept
    nothing.put("c" * 64, b"z" * 10)
    assert (len(nothing), nothing.used) == (0, 0)
