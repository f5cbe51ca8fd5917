"""The collector deletes only unreferenced blobs past the grace, whatever table references them."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from packyard.store.blobs import LocalBlobStore
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.refs import COLUMNS

MIRRORS = {("file_heads", "sha256"), ("resolution_files", "sha256")}
"""Columns that only repeat another referencing column's hash: a head is always a revision, and
a shared lock's pinned files are distributions' blobs (a lock naming a deleted file keeps nothing
alive: nothing would serve it)."""


def table_info(store: Store, table: str) -> list[dict]:
    """SQLite's description of a table's columns (these tests run on the SQLite catalog)."""
    return store.catalog.query(f"PRAGMA table_info({table})")


def hash_columns(store: Store) -> set[tuple[str, str]]:
    """Every catalog column that holds a blob digest, found in the schema (not in refs.py)."""
    found = set()
    for row in store.catalog.query("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for column in table_info(store, row["name"]):
            if "sha256" in column["name"]:
                found.add((row["name"], column["name"]))
    return found


def test_every_blob_column_is_known_to_the_collector(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", LocalBlobStore(tmp_path / "blobs"))
    assert hash_columns(store) - MIRRORS == {(table, column) for table, column, _ in COLUMNS}


def _row_for(store: Store, table: str, column: str, sha256: str, n: int) -> dict:
    """A row of ``table`` with every NOT NULL column filled and ``column`` = ``sha256``."""
    row: dict = {}
    for info in table_info(store, table):
        name, kind = info["name"], info["type"].upper()
        if name == column or ("sha256" in name and info["notnull"]):
            row[name] = sha256
        elif name == "namespace":
            row[name] = "company"
        elif info["pk"] or info["notnull"]:
            row[name] = n if kind in ("INTEGER", "FLOAT", "REAL") else f"{name}-{n}"
    return row


def test_gc_keeps_every_referenced_blob_and_takes_the_rest(tmp_path: Path, blob_store: BlobStore) -> None:
    store = Store(tmp_path / "data", blob_store)
    store.namespaces.ensure("company", "me")
    kept = {}
    with store.catalog.write() as db:
        for n, (table, column, _) in enumerate(COLUMNS):
            blob = blob_store.put(io.BytesIO(f"{table}.{column}".encode()))
            db.insert(table, _row_for(store, table, column, blob.sha256, n))
            kept[(table, column)] = blob.sha256
    stray = blob_store.put(io.BytesIO(b"nothing references me")).sha256
    temp = store.scratch / "export-crashed.zip"
    temp.write_bytes(b"a zip a crash left")

    assert store.collector.collect(3600).removed.count == 0  # everything is inside the grace
    report = store.collector.collect(grace_seconds=0)
    assert report.removed.count == 2 and not report.damaged
    assert not blob_store.exists(stray) and not temp.exists()
    assert {key: blob_store.exists(sha) for key, sha in kept.items()} == dict.fromkeys(kept, True)
    assert store.collector.scan(0).to_dict()["unreferenced"]["count"] == 0


def test_a_put_of_stored_bytes_makes_the_blob_young_again(tmp_path: Path) -> None:
    """What protects a change that found its bytes already stored and has not committed yet."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    store = Store(tmp_path / "data", blobs)
    sha = blobs.put(io.BytesIO(b"old bytes")).sha256
    old = time.time() - 7200
    os.utime(blobs.local_path(sha), (old, old))  # type: ignore[arg-type]
    assert store.collector.scan(3600).unreferenced.count == 1  # past the grace: collectable
    assert blobs.put(io.BytesIO(b"old bytes")).created is False  # a change finds it stored...
    assert store.collector.collect(3600).removed.count == 0  # ...and the collector keeps it
    assert blobs.exists(sha)


@pytest.mark.parametrize("young", [False, True])
def test_delete_if_older_judges_the_file_it_removes(tmp_path: Path, young: bool) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha = blobs.put(io.BytesIO(b"bytes")).sha256
    stamp = time.time() - (0 if young else 7200)
    os.utime(blobs.local_path(sha), (stamp, stamp))  # type: ignore[arg-type]
    assert blobs.delete_if_older(sha, time.time() - 3600) is not young
    assert blobs.exists(sha) is young
    assert blobs.temp_count() == 0  # nothing left aside
