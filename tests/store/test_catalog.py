"""The catalog adapter on both engines: row operations, transactions, the write lock and
migrations; and an existing SQLite catalog (made by the sqlite-utils migrations packyard
used before the adapter) that must keep working unchanged."""

from __future__ import annotations

import io
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from packyard.store import catalog as catalog_module
from packyard.store.blobs import LocalBlobStore
from packyard.store.catalog import MIGRATIONS, Catalog
from packyard.store.core import Store
from packyard.store.errors import Conflict

OLD_SCHEMA = Path(__file__).parent / "data" / "catalog-v11-sqlite.sql"
"""``sqlite_master`` of a catalog at version 11 as sqlite-utils made it (before the adapter)."""


def statements(sql: str) -> list[str]:
    return [re.sub(r"\s+", " ", s).strip() for s in sql.split(";") if s.strip()]


def test_sqlite_schema_is_the_one_existing_catalogs_have(tmp_path: Path) -> None:
    Catalog(tmp_path / "catalog.db").close()
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        made = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").fetchall()
    made = [re.sub(r"\s+", " ", sql).strip() for (sql,) in made]
    old = statements(OLD_SCHEMA.read_text())
    # v14 adds one column to builds (SQLite records ALTER TABLE in the table's DDL)
    v14_column = ', "log_size" INTEGER)'
    made = [sql.removesuffix(v14_column) + ")" if sql.endswith(v14_column) else sql for sql in made]
    assert made[: len(old)] == old  # the v11 catalog's DDL, as sqlite-utils made it
    # v12 (scale-out) adds three tables, v13 (retention) one, v14 (usage, streaming gc) indexes
    # and a column; none changes anything before it
    assert len(MIGRATIONS) == 14  # a new step extends this test with the step's DDL
    added = [re.match(r'CREATE (TABLE|INDEX) "(\w+)"', sql) for sql in made[len(old) :]]
    assert [m and m[2] for m in added] == [
        "generations",
        "build_log_chunks",
        "sync_leases",
        "last_used",
        # v14: the collector walks every blob column in order (store/refs.py)
        "idx_builds_log_sha256",
        "idx_upstream_files_metadata_sha256",
        "idx_bundles_sha256",
    ]


def test_an_existing_sqlite_catalog_opens_unchanged_and_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "catalog.db") as conn:
        conn.executescript(OLD_SCHEMA.read_text())
        conn.execute("PRAGMA user_version = 11")
        conn.execute("INSERT INTO namespaces VALUES ('team', '2026-01-01T00:00:00Z', 'old', '{}')")
        conn.execute(
            "INSERT INTO file_revisions (namespace, path, revision, sha256, size, deleted, created) "
            "VALUES ('team', 'a.txt', 1, ?, 3, 0, '2026-01-01T00:00:00Z')",
            ("0" * 64,),
        )
        conn.execute(
            "INSERT INTO file_heads VALUES ('team', 'a.txt', 1, ?, 3, 0, '2026-01-01T00:00:00Z', NULL)", ("0" * 64,)
        )
        before = conn.execute("SELECT sql FROM sqlite_master ORDER BY rowid").fetchall()
    store = Store(data, LocalBlobStore(tmp_path / "blobs"))
    assert store.catalog.schema_version == len(MIGRATIONS)  # v12 added its tables
    assert store.namespaces.get("team").files == 1
    applied = store.files.put("team", "a.txt", io.BytesIO(b"new"), author="me")
    assert applied.revision.revision == 2
    assert [r.revision for r in store.files.history("team", "a.txt")] == [1, 2]
    store.catalog.close()
    with sqlite3.connect(data / "catalog.db") as conn:
        after = conn.execute("SELECT sql FROM sqlite_master ORDER BY rowid").fetchall()
    # what was there stays as it was, but for the column v14 appends to builds
    after = [(sql.replace(', "log_size" INTEGER)', ")") if sql else sql,) for (sql,) in after]
    assert after[: len(before)] == before


def test_rows_inserted_updated_upserted_and_deleted(tmp_path: Path, catalog_url: str | None) -> None:
    catalog = Catalog(tmp_path / "catalog.db", url=catalog_url)
    with catalog.write() as tx:
        tx.insert("namespaces", {"name": "a", "created": "t", "created_by": None, "settings": {"x": [1]}})
        first = tx.insert("audit", {"at": "t", "actor": "me", "action": "x", "namespace": "a"}, returning="id")
        second = tx.insert("audit", {"at": "t", "actor": "me", "action": "y", "namespace": "a"}, returning="id")
        assert second > first
        assert tx.insert("namespaces", {"name": "a", "created": "u", "settings": "{}"}, ignore=True) is None
        tx.upsert(
            "upstream_pages", {"upstream": "u", "project": "p", "page": "1", "fetched": 1.5}, pk=("upstream", "project")
        )
        tx.upsert(
            "upstream_pages", {"upstream": "u", "project": "p", "page": "2", "fetched": 2.5}, pk=("upstream", "project")
        )
        tx.update("namespaces", {"name": "a"}, {"created_by": "me"})
    assert catalog.one("SELECT * FROM namespaces WHERE name = ?", ("a",)) == {
        "name": "a", "created": "t", "created_by": "me", "settings": '{"x": [1]}'
    }  # fmt: skip
    assert catalog.query("SELECT page, fetched FROM upstream_pages") == [{"page": "2", "fetched": 2.5}]
    with catalog.write() as tx:
        tx.delete("upstream_pages", {"upstream": "u", "project": "p"})
    assert catalog.query("SELECT * FROM upstream_pages") == []
    # a literal % and a ? inside parameters are data, not placeholders
    assert catalog.one("SELECT ? AS v, '100%' AS w", ("?%s",)) == {"v": "?%s", "w": "100%"}
    catalog.close()


def test_a_failed_change_leaves_nothing_and_a_failed_nested_one_only_itself(
    tmp_path: Path, catalog_url: str | None
) -> None:
    catalog = Catalog(tmp_path / "catalog.db", url=catalog_url)
    with pytest.raises(Conflict), catalog.write() as tx:
        tx.insert("namespaces", {"name": "gone", "created": "t", "settings": "{}"})
        raise Conflict("no")
    with catalog.write() as tx:
        tx.insert("namespaces", {"name": "kept", "created": "t", "settings": "{}"})
        with pytest.raises(Conflict), catalog.write() as inner:
            inner.insert("namespaces", {"name": "inner", "created": "t", "settings": "{}"})
            assert catalog.one("SELECT 1 AS x FROM namespaces WHERE name = 'inner'") == {"x": 1}  # sees its own rows
            raise Conflict("no")
    assert [r["name"] for r in catalog.query("SELECT name FROM namespaces ORDER BY name")] == ["kept"]
    catalog.close()


def test_changes_queue_behind_each_other(tmp_path: Path, catalog_url: str | None) -> None:
    """Read-modify-write in ``write()`` loses no update: writers hold the write lock (SQLite's
    BEGIN IMMEDIATE, PostgreSQL's advisory lock) from their first statement."""
    catalog = Catalog(tmp_path / "catalog.db", url=catalog_url)
    with catalog.write() as tx:
        tx.insert("namespaces", {"name": "n", "created": "0", "settings": "{}"})

    def bump() -> None:
        for _ in range(5):
            with catalog.write() as tx:
                count = int(catalog.one("SELECT created FROM namespaces WHERE name = 'n'")["created"])
                time.sleep(0.01)  # widen the window a lost update would need
                tx.update("namespaces", {"name": "n"}, {"created": str(count + 1)})

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert catalog.one("SELECT created FROM namespaces WHERE name = 'n'")["created"] == "20"
    catalog.close()


def test_servers_starting_at_once_migrate_once(
    tmp_path: Path, catalog_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS[:6])
        Catalog(tmp_path / "catalog.db", url=catalog_url).close()  # an older version to migrate from
    opened: list[Catalog] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(Catalog(tmp_path / "catalog.db", url=catalog_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {c.schema_version for c in opened} == {len(MIGRATIONS)}
    assert opened[0].query("SELECT count(*) AS n FROM webhook_deliveries") == [{"n": 0}]
    for catalog in opened:
        catalog.close()
