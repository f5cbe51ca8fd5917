"""Usage aggregates and the quota guard on both catalogs, and the collector's sorted merge.

The server tests (tests/packyard/test_usage_quota.py) cover the HTTP side; these check the
SQL itself on SQLite and PostgreSQL (substr subtrees, the blob union, the grouped sums) and
that the streaming collector, reading the references and the listing a page at a time,
takes exactly the garbage however the pages fall.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from packyard.store import refs as refs_module
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.errors import QuotaExceeded
from packyard.store.files import Change


def bundle_row(key: str, namespace: str, sha256: str, size: int) -> dict:
    return {"key": key, "namespace": namespace, "sha256": sha256, "size": size, "created": "2026-01-01T00:00:00Z"}


def build_row(namespace: str, log_sha256: str, log_size: int) -> dict:
    fields = ("path", "publish_to", "key", "state", "snapshot", "settings", "created")
    return {**{f: "x" for f in fields}, "namespace": namespace, "log_sha256": log_sha256, "log_size": log_size}


def open_store(tmp_path: Path, blobs: BlobStore, catalog_url: str | None) -> Store:
    return Store(tmp_path / "data", blobs, database_url=catalog_url)


def test_usage_per_kind_with_and_without_children(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None
) -> None:
    store = open_store(tmp_path, blob_store, catalog_url)
    store.files.put("acme", "a", io.BytesIO(b"1" * 10), author="me")
    store.files.put("acme.ops", "b", io.BytesIO(b"1" * 10), author="me")  # the same blob
    store.files.put("acme.ops", "c", io.BytesIO(b"2" * 20), author="me")
    store.files.put("acmeish", "d", io.BytesIO(b"3" * 40), author="me")  # a prefix, not a child
    bundle = blob_store.put(io.BytesIO(b"b" * 30))
    log = blob_store.put(io.BytesIO(b"2" * 20))  # a log with the bytes of acme.ops:c
    with store.catalog.write() as db:
        db.insert("bundles", bundle_row("k1", "acme.ops", bundle.sha256, 30))
        db.insert("builds", build_row("acme", log.sha256, 20))
    store.namespaces.update_settings("acme", {"upstream": "https://pypi.example/simple/"}, "me")
    with store.catalog.write() as db:
        db.insert(
            "upstream_files",
            {
                "upstream": "https://pypi.example/simple/",
                "filename": "x.whl",
                "url": "u",
                "sha256": "f" * 64,
                "size": 5,
            },
        )

    report = store.namespaces.usage.report("acme")
    assert [row["namespace"] for row in report["namespaces"]] == ["acme", "acme.ops"]
    own, ops = report["own"], report["namespaces"][1]
    assert own["files"] == {"count": 1, "bytes": 10}
    assert own["build_logs"] == {"count": 1, "bytes": 20}
    assert own["mirrored"] == {"count": 1, "bytes": 5}  # reported where the upstream is set
    assert own["stored"] == {"count": 2, "bytes": 30}
    assert ops["bundles"] == {"count": 1, "bytes": 30}
    assert ops["stored"] == {"count": 3, "bytes": 60}
    assert report["subtree"]["revisions"] == {"count": 3, "bytes": 40}
    # 1*10 (two namespaces), 2*20 (a file and a log), the bundle: each once; mirrored in no total
    assert report["subtree"]["stored"] == {"count": 3, "bytes": 60}
    whole = store.namespaces.usage.report(None)
    assert whole["subtree"]["stored"] == {"count": 4, "bytes": 100}  # acmeish's 3*40 too


def test_the_quota_guard_rolls_the_write_back(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> None:
    store = open_store(tmp_path, blob_store, catalog_url)
    store.files.put("acme", "a", io.BytesIO(b"a" * 60), author="me")
    store.namespaces.update_settings("acme", {"quota": 100}, "me")
    before = store.catalog.query("SELECT * FROM file_revisions ORDER BY id")
    with pytest.raises(QuotaExceeded, match="uses 60 bytes of its 100 bytes quota and this change adds 50 bytes"):
        store.files.put("acme.new.deep", "b", io.BytesIO(b"b" * 50), author="me")
    assert store.catalog.query("SELECT * FROM file_revisions ORDER BY id") == before
    assert not store.namespaces.exists("acme.new")  # the namespaces the write made went with it
    store.files.put("acme.new", "b", io.BytesIO(b"b" * 40), author="me")  # exactly the quota

    # racing writers on one store: exactly one of two that each fit alone gets in
    store.namespaces.update_settings("acme", {"quota": 130}, "me")
    results: list[str] = []

    def put(n: int) -> None:
        try:
            store.files.put("acme", f"r{n}", io.BytesIO(bytes([n]) * 30), author="me")
            results.append("ok")
        except QuotaExceeded:
            results.append("refused")

    threads = [threading.Thread(target=put, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    assert store.namespaces.usage.stored("acme").bytes == 130


def test_streaming_gc_takes_exactly_the_garbage_across_pages(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refs_module, "PAGE", 7)  # many pages per column
    monkeypatch.setattr("packyard.store.collector.BATCH", 5)
    store = open_store(tmp_path, blob_store, catalog_url)
    kept, garbage = set(), set()
    for n in range(60):
        blob = blob_store.put(io.BytesIO(f"blob {n}".encode()))
        if n % 4 == 0:
            garbage.add(blob.sha256)
            continue
        kept.add(blob.sha256)
        if n % 3:
            store.files.apply("acme", [Change(f"f{n}", blob.sha256, blob.size)], author="me", origin="t")
        else:
            with store.catalog.write() as db:
                db.insert("bundles", bundle_row(f"k{n}", "acme", blob.sha256, blob.size))
    missing = "0" * 64
    store.files.apply("acme", [Change("lost", missing, 1)], author="me", origin="t")

    scan = store.collector.scan(0)
    assert scan.referenced == len(kept) + 1 and scan.missing == [missing] and scan.unreferenced.count == len(garbage)
    assert [row["row"]["path"] for row in scan.dangling] == ["lost"]
    report = store.collector.collect(0)
    assert report.removed.count == len(garbage) and report.collectable_total.count == len(garbage)
    assert set(blob_store.hashes()) == kept
