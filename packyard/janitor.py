"""``packyard serve``'s garbage collection: once at start, then every ``PACKYARD_GC_INTERVAL_SECONDS``.

It runs in a daemon thread so that a large bucket listing never delays start-up or a request.
Every process of a scaled-out deployment may run one: the collector deletes only what is
unreferenced and older than the grace period, checked under the catalog's write lock, so two
collectors (or a collector and ``packyard gc``) never take anything a live change needs.
"""

from __future__ import annotations

import logging
import threading

from packyard.store.collector import describe
from packyard.store.core import Store
from packyard.store.errors import PackyardError

log = logging.getLogger("packyard.gc")


class Janitor:
    def __init__(self, store: Store, *, grace_seconds: float, interval_seconds: float) -> None:
        self.store = store
        self.grace_seconds = grace_seconds
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="packyard-gc", daemon=True)

    def start(self) -> None:
        if self.interval_seconds > 0:
            self._thread.start()

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
