"""``packyard serve``'s garbage collection: once at start, then every ``PACKYARD_GC_INTERVAL_SECONDS``;
and its retention: the namespaces' policies every ``PACKYARD_RETENTION_INTERVAL_SECONDS``.

It runs in a daemon thread so that a large bucket listing never delays start-up or a request.
Every process of a scaled-out deployment may run one: the collector deletes only what is
unreferenced and older than the grace period, checked under the catalog's write lock, so two
collectors (or a collector and ``packyard gc``) never take anything a live change needs.

Retention runs in a thread of its own, on one server at a time: each pass first takes the
catalog's retention lease (``store/retention.py``), and a server that finds it held skips
the round. The same thread writes the last-use marks the hot path notes in memory
(``store/touches.py``) every minute, so they reach the catalog in batches.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from packyard.store.collector import describe
from packyard.store.core import Store
from packyard.store.errors import PackyardError
from packyard.store.retention import describe as describe_retention

log = logging.getLogger("packyard.gc")


class Janitor:
    MARKS_SECONDS = 60.0

    def __init__(
        self, store: Store, *, grace_seconds: float, interval_seconds: float, retention_seconds: float = 0.0
    ) -> None:
        self.store = store
        self.grace_seconds = grace_seconds
        self.interval_seconds = interval_seconds
        self.retention_seconds = retention_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        """Who holds the retention lease while this server runs a pass."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="packyard-gc", daemon=True)
        self._retention = threading.Thread(target=self._run_retention, name="packyard-retention", daemon=True)

    def start(self) -> None:
        if self.interval_seconds > 0:
            self._thread.start()
        self._retention.start()

    def _run_retention(self) -> None:
        due = time.monotonic() + min(self.retention_seconds, self.MARKS_SECONDS)  # not in start-up's way
        while not self._stop.is_set():
            try:
                self.store.touches.flush()
                if self.retention_seconds > 0 and time.monotonic() >= due:
                    due = time.monotonic() + self.retention_seconds
                    plan = self.store.retention.run(apply=True, holder=self.holder, actor="retention (scheduled)")
                    if plan.items:
                        log.warning(describe_retention(plan))
            except PackyardError as exc:
                log.warning("retention skipped: %s", exc.message)
            except Exception:  # noqa: BLE001 - a retention bug must not take the server down
                log.exception("retention failed")
            wait = self.MARKS_SECONDS
            if self.retention_seconds > 0:
                wait = min(wait, max(due - time.monotonic(), 0.05))
            self._stop.wait(wait)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.store.collector.collect(self.grace_seconds)
                if report.removed.count or report.damaged:
                    log.warning(describe(report))
            except PackyardError as exc:  # the backend is down: try again at the next round
                log.warning("gc skipped: %s", exc.message)
            except Exception:  # noqa: BLE001 - a collector bug must not take the server down
                log.exception("gc failed")
            self._stop.wait(self.interval_seconds)

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self.store.touches.flush()  # the uses noted since the last round
        except Exception:  # noqa: BLE001 - shutting down: the marks are only a day's precision
            log.warning("last-use marks not written at shutdown")
