"""What differs between the catalog's two engines, and nothing else.

The store writes its SQL once with ``?`` placeholders, ``ON CONFLICT`` upserts and
``RETURNING`` (all of which SQLite >= 3.35 and PostgreSQL share). A dialect supplies:

- connections: SQLite keeps one per thread (WAL lets readers run beside the writer);
  PostgreSQL takes them from a ``psycopg_pool`` pool that checks each one before use, so a
  database that went away and came back is reconnected without a restart;
- the write lock: SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL a transaction-scoped advisory
  lock taken first thing in every change, so changes queue exactly as on SQLite, across all
  servers (and a migration run by several servers starting at once applies once);
- placeholders (``?`` becomes ``%s``), column types and autoincrement ids in DDL, and where
  the schema version is kept (``PRAGMA user_version`` vs the ``packyard_schema`` table);
- errors: a PostgreSQL that cannot be reached becomes :class:`BackendUnavailable` (503 over
  HTTP, one line and exit code 8 in the CLI).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from packyard.store.errors import BackendUnavailable, InvalidInput, is_disk_full, storage_full

log = logging.getLogger("packyard.catalog")

WRITE_LOCK = 0x7061636B79617264
"""The advisory lock key every PostgreSQL change takes (``packyard`` in ASCII)."""


class Dialect(Protocol):
    name: str
    types: dict[type, str]
    serial_pk: str

    def execute(self, conn: Any, sql: str, params: Sequence | dict = ()) -> list[dict]: ...
    def transaction(self) -> contextlib.AbstractContextManager[Any]: ...
    def reading(self) -> contextlib.AbstractContextManager[Any]: ...
    def schema_version(self, conn: Any) -> int: ...
    def set_schema_version(self, conn: Any, version: int) -> None: ...
    def close(self) -> None: ...


def open_dialect(path: Path | None, url: str | None, timeout: float, pool_size: int = 10) -> Dialect:
    if url:
        return PostgresDialect(url, timeout, pool_size)
    if path is None:
        raise InvalidInput("the catalog needs a SQLite file or a PostgreSQL URL")
    return SQLiteDialect(path)


class SQLiteDialect:
    name = "sqlite"
    types = {str: "TEXT", int: "INTEGER", float: "REAL"}
    serial_pk = "INTEGER PRIMARY KEY"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def execute(self, conn: sqlite3.Connection, sql: str, params: Sequence | dict = ()) -> list[dict]:
        cursor = conn.execute(sql, params)
        return [dict(row) for row in cursor.fetchall()] if cursor.description else []

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise storage_full("the catalog") from exc
            raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        yield self._conn()

    def schema_version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders become psycopg's ``%s`` (and a literal ``%`` is doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _reason(exc: BaseException) -> str:
    """psycopg's messages span lines (a hint on the second); the CLI prints one."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


class PostgresDialect:
    name = "postgresql"
    types = {str: 'TEXT COLLATE "C"', int: "BIGINT", float: "DOUBLE PRECISION"}
    """Text compares and sorts by bytes, as SQLite's BINARY does (the store pages by path
    ranges), whatever locale the database was created with."""
    serial_pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, timeout: float, max_size: int = 10) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        usage = "PACKYARD_DATABASE_URL must be a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL"
        if not url.startswith(("postgresql://", "postgres://")):
            raise InvalidInput(usage)
        try:
            info = conninfo_to_dict(url)
        except psycopg.ProgrammingError:  # its message quotes the URL, password and all
            raise InvalidInput(f"{usage}; this one does not parse") from None
        self.url = url
        """For connections outside the pool (a ``LISTEN``er, a test reading the catalog)."""
        self.where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
        self.timeout = timeout
        self._errors: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
        self._disk_full = psycopg.errors.DiskFull
        self._bad_value = psycopg.DataError
        kwargs = {"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, round(timeout))}
        try:  # one plain connection first: its error says what is wrong (refused, password, no database)
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            raise BackendUnavailable(f"cannot open the catalog database at {self.where}: {_reason(exc)}") from None
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs=kwargs,
            timeout=timeout,
            check=ConnectionPool.check_connection,
            name="packyard-catalog",
            open=True,
        )

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._disk_full as exc:
            raise storage_full("the catalog database") from exc
        except self._bad_value as exc:  # a NUL in text, a number past BIGINT: SQLite stores either
            raise InvalidInput(f"a value the catalog cannot store: {_reason(exc)}") from None
        except self._errors as exc:
            # the caller may be anyone: where the database is and why it failed go to the log
            log.warning("the catalog database at %s is unavailable: %s", self.where, _reason(exc))
            raise BackendUnavailable("the catalog database is unavailable; retry once it is back") from None

    def execute(self, conn: Any, sql: str, params: Sequence | dict = ()) -> list[dict]:
        if not isinstance(params, dict):
            params = [int(p) if isinstance(p, bool) else p for p in params]
        with self._unavailable():
            cursor = conn.execute(_pg_sql(sql), params or None)
            return cursor.fetchall() if cursor.description else []

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._unavailable():
            conn = self.pool.getconn()
        try:
            self.execute(conn, "BEGIN")
            self.execute(conn, "SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            yield conn
            self.execute(conn, "COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise
        finally:
            self.pool.putconn(conn)

    @contextmanager
    def reading(self) -> Iterator[Any]:
        with self._unavailable():
            conn = self.pool.getconn()
        try:
            yield conn
        finally:
            self.pool.putconn(conn)

    def schema_version(self, conn: Any) -> int:
        if self.execute(conn, "SELECT to_regclass('packyard_schema') AS t")[0]["t"] is None:
            return 0
        row = self.execute(conn, "SELECT max(version) AS v FROM packyard_schema")
        return row[0]["v"] or 0

    def set_schema_version(self, conn: Any, version: int) -> None:
        self.execute(conn, "CREATE TABLE IF NOT EXISTS packyard_schema (version INTEGER NOT NULL)")
        self.execute(conn, "DELETE FROM packyard_schema")
        self.execute(conn, "INSERT INTO packyard_schema (version) VALUES (?)", (version,))

    def close(self) -> None:
        self.pool.close()
