"""Last-use marks for retention: when a mirrored file was requested, a bundle or a resolution used.

Retention removes a mirrored upstream file nobody requested for D days, and bundles and
resolutions nobody used for D days, so it needs their last use. Recording it must not cost
the hot path a catalog write per download: a use is noted in memory (a dict look-up), at
most once a day per object and process, and :meth:`Touches.flush` writes what is pending in
one transaction (the server's retention thread calls it every minute and before every pass;
``UPDATE`` only moves a mark forward). A day's precision is all a policy counted in days needs;
a use not flushed yet when a process dies costs at worst a mirrored file fetched again.
"""

from __future__ import annotations

import threading
import time

from packyard.store.catalog import Catalog

DAY = 86400.0
MARK_EVERY = DAY
"""A use is marked at most this often per object: a mark at ``t`` stands for every use until
``t + MARK_EVERY`` (what retention must assume, ``store/retention.py``)."""
MIRRORED, BUNDLE, RESOLUTION = "mirrored", "bundle", "resolution"


class Touches:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._noted: dict[tuple[str, str, str], float] = {}
        """When this process last queued each object: at most one mark a day each."""
        self._pending: dict[tuple[str, str, str], float] = {}

    def note(self, kind: str, namespace: str, key: str) -> None:
        """Record a use (cheap: no catalog access)."""
        clock = time.time()
        item = (kind, namespace, key)
        last = self._noted.get(item)
        if last is not None and clock - last < MARK_EVERY:
            return
        with self._lock:
            self._noted[item] = clock
            self._pending[item] = clock

    def mirrored(self, sha256: str) -> None:
        self.note(MIRRORED, "", sha256)

    def flush(self) -> int:
        """Write the pending marks in one transaction; how many."""
        with self._lock:
            pending, self._pending = self._pending, {}
            horizon = time.time() - DAY
            if len(self._noted) > 10_000:  # forget what may be noted again anyway: memory stays bounded by a day's uses
                self._noted = {item: at for item, at in self._noted.items() if at > horizon}
        if not pending:
            return 0
        try:
            with self.catalog.write() as db:
                for (kind, namespace, key), at in pending.items():
                    db.execute(
                        "INSERT INTO last_used (kind, namespace, key, at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (kind, namespace, key) DO UPDATE SET at = excluded.at "
                        "WHERE last_used.at < excluded.at",
                        (kind, namespace, key, at),
                    )
        except Exception:
            with self._lock:  # the catalog is away: keep them for the next flush
                for item, at in pending.items():
                    self._pending.setdefault(item, at)
            raise
        return len(pending)
