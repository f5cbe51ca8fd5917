"""Which blobs the catalog references: the one place that knows every column holding a hash.

Garbage collection removes only what nothing here references (and only past a grace
period, see ``store/collector.py``); fsck reports rows whose blob is missing. Both ask here,
so a new table that holds blob hashes is added in one place. No request deletes a blob:
a failed or removing change leaves its blobs to the collector, because another change may
have found the same bytes stored and be about to reference them.
"""

from __future__ import annotations

from collections.abc import Iterator

from packyard.store.catalog import Catalog

COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (table, column holding a sha256, the columns that name a row in a report)
    ("file_revisions", "sha256", ("namespace", "path", "revision")),
    ("dists", "sha256", ("namespace", "filename")),
    ("dists", "metadata_sha256", ("namespace", "filename")),
    ("builds", "log_sha256", ("id",)),
    ("upstream_files", "sha256", ("upstream", "filename")),
    ("upstream_files", "metadata_sha256", ("upstream", "filename")),
    ("bundles", "sha256", ("namespace", "key")),
)
"""``file_heads`` repeats a ``file_revisions`` hash; build artifacts are ``dists`` rows (the
build names them by filename); build logs still spooling are files, not blobs."""


class BlobRefs:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def referenced(self, sha256: str) -> bool:
        return any(
            self.catalog.one(f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", (sha256,)) is not None
            for table, column, _ in COLUMNS
        )

    def all_referenced(self) -> set[str]:
        sql = " UNION ".join(
            f"SELECT {column} AS sha256 FROM {table} WHERE {column} IS NOT NULL" for table, column, _ in COLUMNS
        )
        return {row["sha256"] for row in self.catalog.query(sql)}

    def rows_referencing(self, hashes: set[str]) -> Iterator[dict]:
        """Each catalog row that references one of ``hashes``: table, column, its key, sha256."""
        if not hashes:
            return
        for table, column, key in COLUMNS:
            for row in self.catalog.query(f"SELECT {', '.join(key)}, {column} AS referenced FROM {table}"):
                sha256 = row.pop("referenced")
                if sha256 in hashes:
                    yield {"table": table, "column": column, "row": row, "sha256": sha256}
