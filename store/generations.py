"""Change counters, kept in the catalog, that let every process serve pre-rendered pages
without queries and still never serve a stale one for longer than a known bound.

Every committed change to a namespace's distributions bumps that namespace's row in the
``generations`` table, and every settings change bumps the settings row — inside the
change's own transaction, so a counter moves exactly when the change becomes visible. A
cached page remembers the counters it was rendered under; a reader takes the counters
*before* it reads the catalog, so a page rendered during a concurrent write is stored under
the old counters and is re-rendered on the next request.

Each process keeps a copy of the counters and reloads it (one small query) only when a
cheap "anything changed?" signal flips:

- SQLite: ``PRAGMA data_version`` on a connection kept for this purpose. It changes when
  any other connection — of this process or another — commits, and in WAL mode it reads
  the shared-memory index (no file read), so it is checked at most every 2 ms by a
  look-up: a change is seen within milliseconds by every process on the machine (and at
  once by the process that made it).
- PostgreSQL: a listener thread holds ``LISTEN packyard_generations``; every bump sends
  ``NOTIFY`` in its transaction, which PostgreSQL delivers on commit. The listener also
  forces a reload every :data:`RECHECK_SECONDS` and whenever its connection drops, so a lost
  notification delays a change by at most that long.

The counters survive restarts, and the catalog's random ``epoch`` (set when it is created)
tells two catalogs apart, so :meth:`Generations.state` is the same on every server that
shares a catalog and changes whenever what an index lists may have changed.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packyard.store.catalog import Catalog

log = logging.getLogger("packyard.generations")

SETTINGS = "*settings"
"""The row every settings change bumps (``*`` is never part of a namespace name)."""
CREATED = "*created"
"""The row bumped when namespaces are created (see ``bump_created``)."""
EPOCH = "*epoch"
"""A random number chosen when the catalog is made: counters of two catalogs never match."""
CHANNEL = "packyard_generations"
SQLITE_CHECK_SECONDS = 0.002
"""SQLite: the longest another process's commit goes unnoticed (the bound, with SQLite)."""
RECHECK_SECONDS = 1.0
"""PostgreSQL: reload the counters at least this often, whatever the listener heard."""


def new_epoch() -> int:
    return secrets.randbelow(2**31)


class _SqliteSignal:
    """``PRAGMA data_version`` on a connection of its own: True once after any other commit.

    A check costs two ``fcntl`` lock calls on the WAL's shared-memory file and no read
    (measured with strace); it runs at most every :data:`SQLITE_CHECK_SECONDS`, so a busy
    hot path pays for it once per interval, not once per request.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None  # opened by the first look-up
        self._seen: int | None = None
        self._next = 0.0

    def quiet(self) -> bool:
        """True while ``changed`` would answer False without looking (checked lately)."""
        return time.monotonic() < self._next

    def changed(self) -> bool:
        clock = time.monotonic()
        if clock < self._next:
            return False
        self._next = clock + SQLITE_CHECK_SECONDS
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._seen:
            return False
        self._seen = version
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _PostgresSignal:
    """A LISTEN thread: raises a flag on every notification, every RECHECK_SECONDS, and on
    any trouble with its connection (then reconnects)."""

    def __init__(self, url: str, alive: Callable[[], bool]) -> None:
        self._url = url
        self._alive = alive
        """False once the catalog is closed: the listener then ends (and its connection)."""
        self._flag = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_listening(self) -> None:
        """Started by the first look-up, not with the store: a store that never serves pages
        (a CLI command, a test) holds no listener connection."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._listen, name="packyard-generations", daemon=True)
                    self._thread.start()

    def _running(self) -> bool:
        return not self._stop.is_set() and self._alive()

    def _listen(self) -> None:
        import psycopg  # only with a PostgreSQL catalog

        failing = False
        while self._running():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._flag = True  # anything may have happened while not listening
                    failing = False
                    while self._running():
                        for _ in conn.notifies(timeout=RECHECK_SECONDS, stop_after=1):
                            break
                        self._flag = True
            except Exception as exc:  # noqa: BLE001 - keep listening whatever the database does
                if not failing:
                    # the type only: a driver message may quote the connection string
                    log.warning("generation listener lost its connection (%s); reconnecting", type(exc).__name__)
                failing = True
                self._flag = True
                self._stop.wait(0.5)
            else:
                failing = False

    def quiet(self) -> bool:
        """True while nothing was heard since the last reload (and the listener runs)."""
        return not self._flag and self._thread is not None

    def changed(self) -> bool:
        self._ensure_listening()
        if not self._flag:
            return False
        self._flag = False
        return True

    def close(self) -> None:
        self._stop.set()


class Generations:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._dirty = True
        url = getattr(catalog, "url", None) or getattr(getattr(catalog, "dialect", None), "url", None)
        if getattr(catalog, "engine", "sqlite") == "postgresql" and url:
            pool = getattr(getattr(catalog, "dialect", None), "pool", None)
            self._signal: _SqliteSignal | _PostgresSignal = _PostgresSignal(
                url, lambda: not getattr(pool, "closed", False)
            )
        else:
            self._signal = _SqliteSignal(str(catalog.path))

    # -- writing (inside the change's transaction) ----------------------------------------

    def bump(self, namespace: str) -> None:
        """Record a change to ``namespace``'s index; call inside the change's transaction."""
        self._record(namespace)

    def bump_settings(self) -> None:
        """Record a settings change; call inside the change's transaction."""
        self._record(SETTINGS)

    def _record(self, scope: str) -> None:
        with self.catalog.write():
            self.catalog.query(
                "INSERT INTO generations (scope, generation) VALUES (?, 1) "
                "ON CONFLICT (scope) DO UPDATE SET generation = generations.generation + 1",
                (scope,),
            )
            if getattr(self.catalog, "engine", "sqlite") == "postgresql":
                self.catalog.query(f"NOTIFY {CHANNEL}")
        self._dirty = True  # this process sees its own change at once, whatever the signal

    # -- reading (no query unless something changed) --------------------------------------

    def _current(self) -> dict[str, int]:
        if not self._dirty and self._signal.quiet():
            return self._values  # the hot path's case: no lock, no call into the signal's work
        with self._lock:
            if self._signal.changed() or self._dirty:
                self._dirty = True  # until the reload succeeds (a lost database raises here)
                rows = self.catalog.query("SELECT scope, generation FROM generations")
                self._values = {row["scope"]: row["generation"] for row in rows}
                self._dirty = False
            return self._values

    def invalidate(self) -> None:
        """Reload at the next look-up (after a change this process committed)."""
        self._dirty = True

    @property
    def settings(self) -> int:
        return self._current().get(SETTINGS, 0)

    def bump_created(self) -> None:
        """Record that namespaces were created; call inside the change's transaction. The
        chain of a namespace that did not exist (read as its nearest existing ancestor's)
        may now start with it."""
        self._record(CREATED)

    @property
    def created(self) -> int:
        return self._current().get(CREATED, 0)

    def stamp(self, chain: list[str]) -> tuple[int, ...]:
        """The counters a page over ``chain`` depends on."""
        return stamp_of(self._current(), chain)

    def snapshot(self) -> dict[str, int]:
        """Every counter at once, for a caller that reads several (a download on the hot path:
        one look at the signal instead of three)."""
        return self._current()

    def state(self, chain: list[str]) -> str:
        """The same string on every server for the same catalog state (task runs compare it)."""
        values = self._current()
        return f"{values.get(EPOCH, 0):x}:" + ".".join(str(n) for n in self.stamp(chain))

    def close(self) -> None:
        self._signal.close()


def stamp_of(values: dict[str, int], chain: list[str]) -> tuple[int, ...]:
    """:meth:`Generations.stamp` from a :meth:`Generations.snapshot`."""
    return (values.get(SETTINGS, 0), *(values.get(ns, 0) for ns in chain))
