"""Which blobs the catalog references: the one place that knows every column holding a hash.

A failed change deletes the blobs it created only if nothing references them, and garbage
collection removes what nothing references; both ask here, so a new table that holds blob
hashes is added in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from store.blobs.base import BlobStore
from store.catalog import Catalog

COLUMNS = (
    ("file_revisions", "sha256"),
    ("dists", "sha256"),
    ("dists", "metadata_sha256"),
    ("builds", "log_sha256"),
    ("upstream_files", "sha256"),
    ("upstream_files", "metadata_sha256"),
    ("bundles", "sha256"),
)


class BlobRefs:
    def __init__(self, catalog: Catalog, blobs: BlobStore) -> None:
        self.catalog = catalog
        self.blobs = blobs

    def referenced(self, sha256: str) -> bool:
        return any(
            self.catalog.one(f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", (sha256,)) is not None
            for table, column in COLUMNS
        )

    def discard(self, hashes: Iterable[str]) -> None:
        """Delete blobs that a failed or removing change leaves unreferenced."""
        for sha256 in set(hashes):
            if not self.referenced(sha256):
                self.blobs.delete(sha256)

    def all_referenced(self) -> Iterator[str]:
        sql = " UNION ".join(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL" for table, column in COLUMNS)
        for row in self.catalog.db.execute(sql):
            yield row[0]
