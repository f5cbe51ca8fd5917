"""Which blobs the catalog references: the one place that knows every column holding a hash.

Garbage collection removes only what nothing here references (and only past a grace
period, see ``store/collector.py``); fsck reports rows whose blob is missing. Both ask here,
so a new table that holds blob hashes is added in one place. No request deletes a blob:
a failed or removing change leaves its blobs to the collector, because another change may
have found the same bytes stored and be about to reference them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from packyard.store.catalog import Catalog

PAGE = 5000
"""Digests read per query when walking a column: memory stays flat in the size of the store."""

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

    def referenced_among(self, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` (a batch of the collector's) some row references: one query per column."""
        batch = sorted(set(hashes))
        if not batch:
            return set()
        marks = ", ".join("?" for _ in batch)
        sql = " UNION ".join(
            f"SELECT {column} AS sha256 FROM {table} WHERE {column} IN ({marks})" for table, column, _ in COLUMNS
        )
        return {row["sha256"] for row in self.catalog.query(sql, batch * len(COLUMNS))}

    def _column(self, table: str, column: str) -> Iterator[str]:
        last = ""
        while True:
            rows = self.catalog.query(
                f"SELECT DISTINCT {column} AS sha256 FROM {table} WHERE {column} > ? ORDER BY {column} LIMIT {PAGE}",
                (last,),
            )
            for row in rows:
                yield row["sha256"]
            if len(rows) < PAGE:
                return
            last = rows[-1]["sha256"]

    def sorted_referenced(self) -> Iterator[str]:
        """Every referenced digest once, in ascending order, a page per column at a time (each
        column is indexed): what the collector merges against the sorted blob listing."""
        previous = None
        for sha256 in heapq.merge(*(self._column(table, column) for table, column, _ in COLUMNS)):
            if sha256 != previous:
                yield sha256
                previous = sha256

    def all_referenced(self) -> set[str]:
        sql = " UNION ".join(
            f"SELECT {column} AS sha256 FROM {table} WHERE {column} IS NOT NULL" for table, column, _ in COLUMNS
        )
        return {row["sha256"] for row in self.catalog.query(sql)}

    def rows_referencing(self, hashes: set[str]) -> Iterator[dict]:
        """Each catalog row that references one of ``hashes``: table, column, its key, sha256."""
        if not hashes:
            return
        batch = sorted(hashes)
        for start in range(0, len(batch), 500):
            part = batch[start : start + 500]
            marks = ", ".join("?" for _ in part)
            for table, column, key in COLUMNS:
                for row in self.catalog.query(
                    f"SELECT {', '.join(key)}, {column} AS referenced FROM {table} WHERE {column} IN ({marks})", part
                ):
                    sha256 = row.pop("referenced")
                    yield {"table": table, "column": column, "row": row, "sha256": sha256}
