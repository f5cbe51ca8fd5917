"""The lease that keeps a registered sync's webhook runs apart, on either catalog: held while
renewed however long the run takes, lapsing when its holder stops renewing (a dead server).

Short time-to-live values stand in for the 900 s default; the margins are wide (renewal every
third of the lease), so a slow machine delays the test rather than failing it.
"""

from __future__ import annotations

import time
from pathlib import Path

from packyard.store.blobs import LocalBlobStore
from packyard.store.core import Store
from packyard.sync.registry import SyncRegistry


def registry(tmp_path: Path, catalog_url: str | None) -> SyncRegistry:
    return SyncRegistry(Store(tmp_path / "data", LocalBlobStore(tmp_path / "blobs"), database_url=catalog_url).catalog)


def test_a_renewed_lease_outlives_its_ttl(tmp_path: Path, catalog_url: str | None) -> None:
    """A run longer than the lease: a delivery arriving after the lease's first end is told
    the sync is running (and asks for one more run), not handed a second lease."""
    syncs = registry(tmp_path, catalog_url)
    assert syncs.take_lease("etl", "server-a", ttl=3)
    with syncs.holding("etl", "server-a", ttl=3):
        time.sleep(4.5)
        assert not syncs.take_lease("etl", "server-b", ttl=3)
    assert syncs.release_lease("etl", "server-a", ttl=3)  # server-b's delivery: run once more
    assert not syncs.release_lease("etl", "server-a", ttl=3)
    assert syncs.take_lease("etl", "server-b", ttl=3)


def test_a_lease_nobody_renews_lapses(tmp_path: Path, catalog_url: str | None) -> None:
    syncs = registry(tmp_path, catalog_url)
    assert syncs.take_lease("etl", "server-a", ttl=0.3)
    time.sleep(0.6)
    assert syncs.take_lease("etl", "server-b", ttl=3)  # server-a died holding it
    assert not syncs.renew_lease("etl", "server-a", ttl=3)  # and cannot take it back by renewing
    with syncs.holding("etl", "server-a", ttl=0.3):  # a keeper that lost its lease stops at once
        time.sleep(0.3)
    assert not syncs.take_lease("etl", "server-c", ttl=3)  # still server-b's
