"""The catalog: SQLite (the embedded default) or PostgreSQL, behind one small adapter.

It records what the blobs mean (which namespace holds which path at which revision, who
may do what) and never holds content. Every change is one ``write()`` transaction, and
writers queue instead of failing half-way: SQLite takes ``BEGIN IMMEDIATE``, PostgreSQL a
transaction-scoped advisory lock, so a change reads and writes as if it were alone on both
engines (and on PostgreSQL across every server that shares the database). Readers always
see a whole change or none of it.

All SQL is written once, in the dialect both engines share (``?`` placeholders, ``ON
CONFLICT`` upserts, ``RETURNING``); what differs between them lives in ``store/dialects.py``.
Store modules read with :meth:`Catalog.query`/:meth:`Catalog.one` and change rows through the
:class:`Tx` that ``write()`` yields.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packyard.store.dialects import Dialect, open_dialect

MAX_INT = 2**63 - 1
"""The largest integer both engines store (SQLite's INTEGER, PostgreSQL's BIGINT): ids,
revisions and offsets beyond it are refused where they enter."""


def now() -> str:
    """UTC timestamp in ISO 8601, as stored in every ``created``/``updated`` column."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _value(value: Any) -> Any:
    """Rows may carry dicts and lists (stored as JSON text) and bools (stored as 0/1)."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=repr, ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def _where(key: dict[str, Any]) -> tuple[str, list]:
    return " AND ".join(f'"{c}" = ?' for c in key), list(key.values())


class Tx:
    """One open change: raw SQL plus the few row operations the store modules need."""

    def __init__(self, dialect: Dialect, conn: Any) -> None:
        self.dialect = dialect
        self.conn = conn

    def execute(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        """Run one statement in this transaction; its rows (if it returns any) as dicts."""
        return self.dialect.execute(self.conn, sql, params)

    def insert(self, table: str, row: dict[str, Any], *, returning: str | None = None, ignore: bool = False) -> Any:
        """Add a row; ``returning`` names a column (an autoincrement ``id``) whose new value is returned.

        ``ignore`` leaves an existing row with the same key alone (and returns None).
        """
        columns = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        sql = f'INSERT INTO "{table}" ({columns}) VALUES ({marks})'
        if ignore:
            sql += " ON CONFLICT DO NOTHING"
        if returning:
            sql += f' RETURNING "{returning}"'
        rows = self.execute(sql, [_value(v) for v in row.values()])
        return rows[0][returning] if returning and rows else None

    def insert_all(self, table: str, rows: Iterable[dict[str, Any]], *, ignore: bool = False) -> None:
        for row in rows:
            self.insert(table, row, ignore=ignore)

    def update(self, table: str, key: dict[str, Any], values: dict[str, Any]) -> None:
        """Set ``values`` on the row(s) whose columns equal ``key``."""
        where, params = _where(key)
        sets = ", ".join(f'"{c}" = ?' for c in values)
        self.execute(f'UPDATE "{table}" SET {sets} WHERE {where}', [*map(_value, values.values()), *params])

    def upsert(self, table: str, row: dict[str, Any], pk: Sequence[str]) -> None:
        """Insert the row, or set its other columns on the row with the same primary key."""
        columns = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        rest = [c for c in row if c not in pk]
        action = "DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in rest) if rest else "DO NOTHING"
        keys = ", ".join(f'"{c}"' for c in pk)
        self.execute(
            f'INSERT INTO "{table}" ({columns}) VALUES ({marks}) ON CONFLICT ({keys}) {action}',
            [_value(v) for v in row.values()],
        )

    def delete(self, table: str, key: dict[str, Any]) -> None:
        where, params = _where(key)
        self.execute(f'DELETE FROM "{table}" WHERE {where}', params)


class Schema:
    """DDL for migrations, written once: column types are Python types, mapped per engine."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.types = tx.dialect.types

    def create_table(
        self,
        name: str,
        columns: dict[str, type],
        pk: str | tuple[str, ...],
        not_null: Sequence[str] = (),
        defaults: dict[str, Any] | None = None,
        foreign_keys: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        defaults = defaults or {}
        references = {column: (table, other) for column, table, other in foreign_keys}
        lines = []
        for column, kind in columns.items():
            if pk == column and kind is int:
                lines.append(f'"{column}" {self.tx.dialect.serial_pk}')
                continue
            line = f'"{column}" {self.types[kind]}'
            if pk == column:
                line += " PRIMARY KEY"
            if column in not_null:
                line += " NOT NULL"
            if column in defaults:
                line += f" DEFAULT {defaults[column]!r}"
            if column in references:
                table, other = references[column]
                line += f' REFERENCES "{table}"("{other}")'
            lines.append(line)
        if isinstance(pk, tuple):
            lines.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in pk) + ")")
        self.tx.execute(f'CREATE TABLE "{name}" (\n   ' + ",\n   ".join(lines) + "\n)")

    def create_index(self, table: str, columns: Sequence[str], *, unique: bool = False) -> None:
        name = f"idx_{table}_{'_'.join(columns)}"
        cols = ", ".join(f'"{c}"' for c in columns)
        self.tx.execute(f'CREATE {"UNIQUE " if unique else ""}INDEX "{name}" ON "{table}" ({cols})')

    def add_column(self, table: str, column: str, kind: type) -> None:
        self.tx.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {self.types[kind]}')

    def drop_table(self, table: str) -> None:
        self.tx.execute(f'DROP TABLE "{table}"')


def _v1(db: Schema) -> None:
    db.create_table(
        "namespaces",
        {"name": str, "created": str, "created_by": str, "settings": str},
        pk="name",
        not_null={"created", "settings"},
    )
    db.create_table(
        "file_revisions",
        {
            "id": int,
            "namespace": str,
            "path": str,
            "revision": int,
            "sha256": str,
            "size": int,
            "deleted": int,
            "created": str,
            "author": str,
            "origin": str,
            "git_blob": str,
        },
        pk="id",
        not_null={"namespace", "path", "revision", "deleted", "created"},
        foreign_keys=[("namespace", "namespaces", "name")],
    )
    db.create_index("file_revisions", ["namespace", "path", "revision"], unique=True)
    db.create_index("file_revisions", ["sha256"])
    db.create_table(
        "file_heads",
        {
            "namespace": str,
            "path": str,
            "revision": int,
            "sha256": str,
            "size": int,
            "deleted": int,
            "updated": str,
            "git_blob": str,
        },
        pk=("namespace", "path"),
        not_null={"revision", "deleted", "updated"},
    )
    db.create_table(
        "tokens",
        {
            "id": str,
            "name": str,
            "secret_hash": str,
            "scope": str,
            "role": str,
            "created": str,
            "created_by": str,
            "revoked": str,
        },
        pk="id",
        not_null={"secret_hash", "scope", "role", "created"},
    )
    db.create_index("tokens", ["secret_hash"], unique=True)
    db.create_table(
        "audit",
        {"id": int, "at": str, "actor": str, "action": str, "namespace": str, "detail": str},
        pk="id",
    )


def _v2(db: Schema) -> None:
    db.create_table(
        "dists",
        {
            "namespace": str,
            "filename": str,
            "project": str,
            "name": str,
            "version": str,
            "filetype": str,
            "sha256": str,
            "size": int,
            "metadata_sha256": str,
            "requires_python": str,
            "summary": str,
            "upload_time": str,
            "uploader": str,
            "yanked": int,
            "yanked_reason": str,
            "yanked_by": str,
            "yanked_at": str,
        },
        pk=("namespace", "filename"),
        not_null={"project", "version", "sha256", "size", "metadata_sha256", "upload_time", "yanked"},
        foreign_keys=[("namespace", "namespaces", "name")],
        defaults={"yanked": 0},
    )
    db.create_index("dists", ["namespace", "project"])
    db.create_index("dists", ["sha256"])
    db.create_index("dists", ["metadata_sha256"])


def _v3(db: Schema) -> None:
    db.create_table(
        "syncs",
        {"name": str, "namespace": str, "spec": str, "created": str, "created_by": str},
        pk="name",
        not_null={"namespace", "spec", "created"},
    )
    db.create_table(
        "sync_runs",
        {
            "id": int,
            "sync": str,
            "namespace": str,
            "url": str,
            "ref": str,
            "commit_sha": str,
            "dry_run": int,
            "added": int,
            "updated": int,
            "deleted": int,
            "unchanged": int,
            "skipped": int,
            "started": str,
            "finished": str,
            "duration": float,
            "error": str,
            "actor": str,
        },
        pk="id",
    )
    db.create_index("sync_runs", ["sync"])


def _v4(db: Schema) -> None:
    db.add_column("sync_runs", "commit_time", int)
    db.create_table(
        "builds",
        {
            "id": int,
            "namespace": str,
            "path": str,
            "publish_to": str,
            "key": str,
            "state": str,
            "snapshot": str,
            "settings": str,
            "source_date_epoch": int,
            "python_version": str,
            "created": str,
            "created_by": str,
            "started": str,
            "finished": str,
            "worker": str,
            "heartbeat": float,
            "cancel_requested": int,
            "error": str,
            "log_sha256": str,
            "artifacts": str,
            "backend": str,
        },
        pk="id",
        not_null={"namespace", "path", "publish_to", "key", "state", "snapshot", "settings", "created"},
        defaults={"cancel_requested": 0},
    )
    db.create_index("builds", ["state"])
    db.create_index("builds", ["key", "state"])
    db.create_index("builds", ["namespace"])


def _v5(db: Schema) -> None:
    db.create_table(
        "upstream_pages",
        {"upstream": str, "project": str, "page": str, "fetched": float},
        pk=("upstream", "project"),
        not_null={"page", "fetched"},
    )
    db.create_table(
        "upstream_files",
        {
            "upstream": str,
            "filename": str,
            "url": str,
            "sha256": str,
            "size": int,
            "metadata_sha256": str,
            "fetched": str,
        },
        pk=("upstream", "filename"),
    )
    db.create_index("upstream_files", ["sha256"])


def _v6(db: Schema) -> None:
    db.create_table(
        "bundles",
        {"key": str, "sha256": str, "size": int, "namespace": str, "created": str, "created_by": str},
        pk="key",
        not_null={"sha256", "size", "created"},
    )


def _v7(db: Schema) -> None:
    """Bundles become finished environments, trusted along the index chain of the namespace
    that stored them; resolutions are shared so a fresh worker skips the resolver.

    The v6 bundles were zips of wheels, which no client reads any more: their rows go, and
    their blobs become garbage for ``collect_garbage``.
    """
    db.drop_table("bundles")
    db.create_table(
        "bundles",
        {"key": str, "namespace": str, "sha256": str, "size": int, "created": str, "created_by": str},
        pk=("key", "namespace"),
        not_null={"sha256", "size", "created"},
    )
    db.create_table(
        "resolutions",
        {
            "namespace": str,
            "key": str,
            "state": str,
            "lock": str,
            "env_key": str,
            "python": str,
            "platform": str,
            "requirements": str,
            "created": float,
            "created_by": str,
        },
        pk=("namespace", "key"),
        not_null={"state", "lock", "env_key", "created"},
    )


def _v8(db: Schema) -> None:
    """Registered syncs and builds record the token whose authority they run under, so the
    write right is checked again when the work runs (a webhook, a worker publishing).

    Rows made before this step get the id their ``created_by`` names (``token:ID (name)``);
    any other row keeps none, and refuses to run until it is registered again.
    """
    for table in ("syncs", "builds"):
        db.add_column(table, "token_id", str)
        key = "name" if table == "syncs" else "id"
        for row in db.tx.execute(
            f"SELECT {key} AS key, created_by FROM {table} WHERE substr(created_by, 1, 6) = 'token:'"
        ):
            token_id = row["created_by"][len("token:") :].split(" ", 1)[0]
            db.tx.update(table, {key: row["key"]}, {"token_id": token_id})


def _v9(db: Schema) -> None:
    """Webhook deliveries already taken, so a replayed delivery id does not run its sync again."""
    db.create_table(
        "webhook_deliveries",
        {"sync": str, "delivery": str, "received": str, "state": str},
        pk=("sync", "delivery"),
        not_null={"received", "state"},
    )
    db.create_index("webhook_deliveries", ["received"])


def _v10(db: Schema) -> None:
    """Whether a file's core metadata is advertised (PEP 658): always for wheels; for an sdist
    only when its PKG-INFO binds the build (``store.artifacts.reliable_metadata``).

    Stored sdists are left NULL here (deciding needs their metadata blobs) and decided by
    ``Dists.decide_core_metadata`` when the store opens; until then NULL is not advertised.
    """
    db.add_column("dists", "core_metadata", int)
    db.tx.execute("UPDATE dists SET core_metadata = 1 WHERE filetype = 'bdist_wheel'")


_LOCKED_HASH = re.compile(r"--hash[= ]sha256:([0-9a-f]{64})")


def locked_hashes(lock: str) -> set[str]:
    """The sha256 of every file a hashed lock (``uv pip compile --generate-hashes``) pins."""
    return set(_LOCKED_HASH.findall(lock))


def _v11(db: Schema) -> None:
    """Web UI sessions, kept server-side: the browser holds only a random id (stored here
    hashed, so reading the catalog does not hand out live sessions) and the row names the
    token it signed in with, so revoking the token ends its sessions."""
    db.create_table(
        "ui_sessions",
        {"id_hash": str, "token_id": str, "csrf": str, "created": str, "expires": float},
        pk="id_hash",
        not_null={"token_id", "csrf", "created", "expires"},
    )
    db.create_index("ui_sessions", ["token_id"])
    # provenance look-ups the UI makes on every page of a file or a commit: a build's files
    # (uploader 'build:N') and what a sync of one commit wrote (origin 'sync:<sha>')
    db.create_index("dists", ["uploader"])
    db.create_index("file_revisions", ["namespace", "origin", "path", "revision", "deleted"])  # covering
    # which shared resolutions pin which file ("used by"): the sha256 of each --hash in a lock
    db.create_table(
        "resolution_files",
        {"namespace": str, "key": str, "sha256": str},
        pk=("namespace", "key", "sha256"),
        not_null={"sha256"},
    )
    db.create_index("resolution_files", ["sha256"])
    for row in db.tx.execute("SELECT namespace, key, lock FROM resolutions"):
        db.tx.insert_all(
            "resolution_files",
            ({"namespace": row["namespace"], "key": row["key"], "sha256": sha} for sha in locked_hashes(row["lock"])),
            ignore=True,
        )


def _v12(db: Schema) -> None:
    """Scale-out: nothing a user sees may live in one server's memory or on its disk.

    ``generations`` holds the change counters every server's page cache checks (plus the
    catalog's random epoch); ``build_log_chunks`` the log of a running build, appended by
    whichever server its worker talks to and read by any; ``sync_leases`` who is running a
    registered sync, so two deliveries on two servers never run it side by side.
    """
    from packyard.store.generations import EPOCH, new_epoch

    db.create_table("generations", {"scope": str, "generation": int}, pk="scope", not_null={"generation"})
    db.tx.insert("generations", {"scope": EPOCH, "generation": new_epoch()})
    db.create_table(
        "build_log_chunks",
        {"build_id": int, "position": int, "data": str, "size": int},
        pk=("build_id", "position"),
        not_null={"data", "size"},
    )
    db.create_table(
        "sync_leases",
        {"sync": str, "holder": str, "expires": float, "pending": int},
        pk="sync",
        not_null={"expires", "pending"},
        defaults={"pending": 0},
    )


def _v13(db: Schema) -> None:
    """Retention: when a mirrored upstream file was last requested (``kind`` mirrored, ``key``
    its sha256) and when an environment bundle or a resolution was last used (``bundle`` /
    ``resolution``, their namespace and key), in epoch seconds. ``store/touches.py`` writes a
    row at most once a day, in batches; no row means not used since stored. A table of its
    own rather than columns, so the tables existing catalogs have keep their DDL."""
    db.create_table(
        "last_used",
        {"kind": str, "namespace": str, "key": str, "at": float},
        pk=("kind", "namespace", "key"),
        not_null={"at"},
    )


def _v14(db: Schema) -> None:
    """Usage and a streaming collector.

    ``builds.log_size`` lets ``ns usage`` sum build logs in SQL (logs sealed before this step
    count 0 bytes). The indexes let the collector walk every blob-holding column in sha256
    order, a page at a time, instead of loading all references into memory
    (``store/refs.py``); the other such columns are indexed already.
    """
    db.add_column("builds", "log_size", int)
    db.create_index("builds", ["log_sha256"])
    db.create_index("upstream_files", ["metadata_sha256"])
    db.create_index("bundles", ["sha256"])


MIGRATIONS: list[Callable[[Schema], None]] = [
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
    _v11,
    _v12,
    _v13,
    _v14,
]
"""Schema steps in order; the dialect records how many have run (``PRAGMA user_version`` on
SQLite, the ``packyard_schema`` table on PostgreSQL)."""


class Catalog:
    """The catalog at ``path`` (SQLite), or in the PostgreSQL database ``url`` names.

    ``timeout`` bounds how long a request waits for a PostgreSQL connection before it fails
    with :class:`~store.errors.BackendUnavailable` (503) instead of hanging; ``pool_size`` is
    how many connections this process opens at most.
    """

    def __init__(
        self, path: Path | None = None, *, url: str | None = None, timeout: float = 10.0, pool_size: int = 10
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.dialect: Dialect = open_dialect(self.path, url, timeout, pool_size)
        self._local = threading.local()
        self._migrate()

    @property
    def engine(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.dialect.name

    def _migrate(self) -> None:
        with self.write() as tx:
            version = self.dialect.schema_version(tx.conn)
            for step in MIGRATIONS[version:]:
                step(Schema(tx))
            if version < len(MIGRATIONS):
                self.dialect.set_schema_version(tx.conn, len(MIGRATIONS))

    @property
    def schema_version(self) -> int:
        with self.dialect.reading() as conn:
            return self.dialect.schema_version(conn)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One atomic change. Nested calls join the outer transaction (as savepoints).

        Reads through :meth:`query`/:meth:`one` inside the block see the change so far.
        """
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            depth = self._local.depth = self._local.depth + 1
            tx.execute(f"SAVEPOINT sp{depth}")
            try:
                yield tx
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection fails the whole change anyway
                    tx.execute(f"ROLLBACK TO SAVEPOINT sp{depth}")
                    tx.execute(f"RELEASE SAVEPOINT sp{depth}")
                raise
            finally:
                self._local.depth = depth - 1
            tx.execute(f"RELEASE SAVEPOINT sp{depth}")
            return
        self._local.after = []
        try:
            with self.dialect.transaction() as conn:
                self._local.tx, self._local.depth = Tx(self.dialect, conn), 0
                try:
                    yield self._local.tx
                finally:
                    self._local.tx = None
        finally:
            callbacks, self._local.after = self._local.after, None
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction has committed (now, outside of one).

        For in-memory counters that readers compare against: bumped before the commit, a
        reader could take the new counter, read the old rows and keep them as current.
        """
        pending = getattr(self._local, "after", None)
        if pending is not None and getattr(self._local, "tx", None) is not None:
            pending.append(callback)
        else:
            callback()

    def query(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            return tx.execute(sql, params)
        with self.dialect.reading() as conn:
            return self.dialect.execute(conn, sql, params)

    def one(self, sql: str, params: Sequence | dict = ()) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def audit(self, actor: str, action: str, namespace: str | None, detail: str = "{}") -> None:
        """Record who did what; called inside the change's own transaction."""
        row = {"at": now(), "actor": actor, "action": action, "namespace": namespace, "detail": detail}
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            tx.insert("audit", row)
            return
        with self.write() as tx:
            tx.insert("audit", row)

    def close(self) -> None:
        self.dialect.close()
