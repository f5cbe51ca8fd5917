"""The catalog: SQLite through sqlite-utils, in WAL mode.

It records what the blobs mean (which namespace holds which path at which revision, who
may do what) and never holds content. Every change is one ``write()`` transaction taken
with ``BEGIN IMMEDIATE``, so writers queue instead of failing half-way and readers always
see a whole change or none of it. Each thread gets its own connection: WAL lets readers
run beside the one writer.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from store.errors import is_disk_full, storage_full

MAX_INT = 2**63 - 1
"""SQLite's largest integer: ids, revisions and offsets beyond it are refused where they enter."""


def now() -> str:
    """UTC timestamp in ISO 8601, as stored in every ``created``/``updated`` column."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _v1(db: sqlite_utils.Database) -> None:
    db["namespaces"].create(
        {"name": str, "created": str, "created_by": str, "settings": str},
        pk="name",
        not_null={"created", "settings"},
    )
    db["file_revisions"].create(
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
    db["file_revisions"].create_index(["namespace", "path", "revision"], unique=True)
    db["file_revisions"].create_index(["sha256"])
    db["file_heads"].create(
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
    db["tokens"].create(
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
    db["tokens"].create_index(["secret_hash"], unique=True)
    db["audit"].create(
        {"id": int, "at": str, "actor": str, "action": str, "namespace": str, "detail": str},
        pk="id",
    )


def _v2(db: sqlite_utils.Database) -> None:
    db["dists"].create(
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
    db["dists"].create_index(["namespace", "project"])
    db["dists"].create_index(["sha256"])
    db["dists"].create_index(["metadata_sha256"])


def _v3(db: sqlite_utils.Database) -> None:
    db["syncs"].create(
        {"name": str, "namespace": str, "spec": str, "created": str, "created_by": str},
        pk="name",
        not_null={"namespace", "spec", "created"},
    )
    db["sync_runs"].create(
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
    db["sync_runs"].create_index(["sync"])


def _v4(db: sqlite_utils.Database) -> None:
    db["sync_runs"].add_column("commit_time", int)
    db["builds"].create(
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
    db["builds"].create_index(["state"])
    db["builds"].create_index(["key", "state"])
    db["builds"].create_index(["namespace"])


def _v5(db: sqlite_utils.Database) -> None:
    db["upstream_pages"].create(
        {"upstream": str, "project": str, "page": str, "fetched": float},
        pk=("upstream", "project"),
        not_null={"page", "fetched"},
    )
    db["upstream_files"].create(
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
    db["upstream_files"].create_index(["sha256"])


def _v6(db: sqlite_utils.Database) -> None:
    db["bundles"].create(
        {"key": str, "sha256": str, "size": int, "namespace": str, "created": str, "created_by": str},
        pk="key",
        not_null={"sha256", "size", "created"},
    )


def _v7(db: sqlite_utils.Database) -> None:
    """Bundles become finished environments, trusted along the index chain of the namespace
    that stored them; resolutions are shared so a fresh worker skips the resolver.

    The v6 bundles were zips of wheels, which no client reads any more: their rows go, and
    their blobs become garbage for ``collect_garbage``.
    """
    db["bundles"].drop()
    db["bundles"].create(
        {"key": str, "namespace": str, "sha256": str, "size": int, "created": str, "created_by": str},
        pk=("key", "namespace"),
        not_null={"sha256", "size", "created"},
    )
    db["resolutions"].create(
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


def _v8(db: sqlite_utils.Database) -> None:
    """Registered syncs and builds record the token whose authority they run under, so the
    write right is checked again when the work runs (a webhook, a worker publishing).

    Rows made before this step get the id their ``created_by`` names (``token:ID (name)``);
    any other row keeps none, and refuses to run until it is registered again.
    """
    for table in ("syncs", "builds"):
        db[table].add_column("token_id", str)
        db.execute(
            f"UPDATE {table} SET token_id = substr(created_by, 7, "
            "CASE WHEN instr(created_by, ' ') > 0 THEN instr(created_by, ' ') - 7 ELSE length(created_by) END) "
            "WHERE created_by LIKE 'token:%'"
        )


def _v9(db: sqlite_utils.Database) -> None:
    """Webhook deliveries already taken, so a replayed delivery id does not run its sync again."""
    db["webhook_deliveries"].create(
        {"sync": str, "delivery": str, "received": str, "state": str},
        pk=("sync", "delivery"),
        not_null={"received", "state"},
    )
    db["webhook_deliveries"].create_index(["received"])


def _v10(db: sqlite_utils.Database) -> None:
    """Whether a file's core metadata is advertised (PEP 658): always for wheels; for an sdist
    only when its PKG-INFO binds the build (``store.artifacts.reliable_metadata``).

    Stored sdists are left NULL here (deciding needs their metadata blobs) and decided by
    ``Dists.decide_core_metadata`` when the store opens; until then NULL is not advertised.
    """
    db["dists"].add_column("core_metadata", int)
    db.execute("UPDATE dists SET core_metadata = 1 WHERE filetype = 'bdist_wheel'")


_LOCKED_HASH = re.compile(r"--hash[= ]sha256:([0-9a-f]{64})")


def locked_hashes(lock: str) -> set[str]:
    """The sha256 of every file a hashed lock (``uv pip compile --generate-hashes``) pins."""
    return set(_LOCKED_HASH.findall(lock))


def _v11(db: sqlite_utils.Database) -> None:
    """Web UI sessions, kept server-side: the browser holds only a random id (stored here
    hashed, so reading the catalog does not hand out live sessions) and the row names the
    token it signed in with, so revoking the token ends its sessions."""
    db["ui_sessions"].create(
        {"id_hash": str, "token_id": str, "csrf": str, "created": str, "expires": float},
        pk="id_hash",
        not_null={"token_id", "csrf", "created", "expires"},
    )
    db["ui_sessions"].create_index(["token_id"])
    # provenance look-ups the UI makes on every page of a file or a commit: a build's files
    # (uploader 'build:N') and what a sync of one commit wrote (origin 'sync:<sha>')
    db["dists"].create_index(["uploader"])
    db["file_revisions"].create_index(["namespace", "origin", "path", "revision", "deleted"])  # covering
    # which shared resolutions pin which file ("used by"): the sha256 of each --hash in a lock
    db["resolution_files"].create(
        {"namespace": str, "key": str, "sha256": str}, pk=("namespace", "key", "sha256"), not_null={"sha256"}
    )
    db["resolution_files"].create_index(["sha256"])
    for row in db.execute("SELECT namespace, key, lock FROM resolutions").fetchall():
        db["resolution_files"].insert_all(
            ({"namespace": row[0], "key": row[1], "sha256": sha} for sha in locked_hashes(row[2])), ignore=True
        )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11]
"""Schema steps in order; ``PRAGMA user_version`` records how many have run."""


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection, opened on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite_utils.Database(self._connect())
            self._local.db = db
        return db

    def _migrate(self) -> None:
        with self.write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[version:]:
                step(db)
            if version < len(MIGRATIONS):
                db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One atomic change. Nested calls join the outer transaction (as savepoints)."""
        db = self.db
        if db.conn.in_transaction:
            with db.atomic():
                yield db
            return
        self._local.after = []
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                raise storage_full("the catalog") from exc
            raise
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
        if pending is not None and self.db.conn.in_transaction:
            pending.append(callback)
        else:
            callback()

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(row) for row in self.db.execute(sql, params).fetchall()]

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:
        row = self.db.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def audit(self, actor: str, action: str, namespace: str | None, detail: str = "{}") -> None:
        """Record who did what; called inside the change's own transaction."""
        self.db["audit"].insert(
            {"at": now(), "actor": actor, "action": action, "namespace": namespace, "detail": detail}
        )

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
