"""The only code that deletes blobs: a collector with a grace period, and fsck.

A request never deletes a blob. Change X may store blob B and then fail while change Y,
which found B already stored, commits a row pointing at it; had X deleted "its" blob, Y's
acknowledged file would be gone. So failed and removing changes leave their blobs, and this
collector takes a blob only when

- no catalog row references it (``store/refs.py`` knows every column), and
- it was last written longer ago than the grace period. Every ``put`` rewrites its blob
  (same bytes, fresh mtime / LastModified), so the grace covers a change that has stored or
  found its blobs and not committed yet.

Each deletion runs inside a catalog write transaction, so no change can commit a reference
between the check and the delete. Temporary objects (puts in flight, export zips) are
removed only past the same grace, so a collector in one process never takes another live
process's work. Everything is age-based and idempotent: several servers may collect at once.

fsck reads the references first and lists the blobs second: a row committed before the read
had its blob stored before, and nothing deletes a referenced blob, so a blob missing from
the listing is real damage, not a race with a write in progress.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packyard.store.blobs.base import BlobStore, StoredEntry
from packyard.store.catalog import Catalog
from packyard.store.refs import BlobRefs

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class Report:
    """What fsck found and what gc removed (or, in a dry run, would remove)."""

    grace_seconds: float
    applied: bool = False
    blobs: Tally = field(default_factory=Tally)
    referenced: int = 0
    dangling: list[dict] = field(default_factory=list)
    """Catalog rows whose blob is missing: damage (a read of them fails)."""
    missing: list[str] = field(default_factory=list)
    """The referenced digests that are not in the blob store."""
    unreferenced: Tally = field(default_factory=Tally)
    unreferenced_young: Tally = field(default_factory=Tally)
    """Unreferenced but inside the grace period: possibly a change in flight; kept."""
    temps: Tally = field(default_factory=Tally)
    temps_young: Tally = field(default_factory=Tally)
    collectable: list[dict] = field(default_factory=list)
    """Past the grace and unreferenced: kind (blob, temp, scratch), name, size."""
    removed: Tally = field(default_factory=Tally)

    @property
    def damaged(self) -> bool:
        return bool(self.dangling or self.missing)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["damaged"] = self.damaged
        return out


class Collector:
    def __init__(self, catalog: Catalog, blobs: BlobStore, refs: BlobRefs, scratch: Path) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.refs = refs
        self.scratch = scratch
        """Server-side temporary files outside the blob store (export zips)."""

    def _scratch(self) -> list[StoredEntry]:
        found = []
        if self.scratch.is_dir():
            for path in self.scratch.iterdir():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if path.is_file():
                    found.append(StoredEntry(path.name, stat.st_size, stat.st_mtime))
        return found

    def scan(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> Report:
        """fsck: references, blobs, temporary objects; changes nothing."""
        report = Report(grace_seconds=grace_seconds)
        cutoff = time.time() - grace_seconds
        referenced = self.refs.all_referenced()  # first: see the module docstring
        report.referenced = len(referenced)
        stored: set[str] = set()
        for entry in self.blobs.entries():
            stored.add(entry.name)
            report.blobs.add(entry.size)
            if entry.name in referenced:
                continue
            if entry.modified < cutoff:
                report.unreferenced.add(entry.size)
                report.collectable.append({"kind": "blob", "name": entry.name, "size": entry.size})
            else:
                report.unreferenced_young.add(entry.size)
        missing = referenced - stored
        report.missing = sorted(missing)
        report.dangling = list(self.refs.rows_referencing(missing))
        temps = [("temp", e) for e in self.blobs.temps()] + [("scratch", e) for e in self._scratch()]
        for kind, entry in temps:
            if entry.modified < cutoff:
                report.temps.add(entry.size)
                report.collectable.append({"kind": kind, "name": entry.name, "size": entry.size})
            else:
                report.temps_young.add(entry.size)
        return report

    def collect(self, grace_seconds: float = DEFAULT_GRACE_SECONDS, *, apply: bool = True) -> Report:
        """gc: remove what is provably abandoned (a dry run with ``apply=False``)."""
        report = self.scan(grace_seconds)
        report.applied = apply
        if not apply:
            return report
        cutoff = time.time() - grace_seconds
        for item in report.collectable:
            if item["kind"] == "temp":
                self.blobs.delete_temp(item["name"])
                report.removed.add(item["size"])
            elif item["kind"] == "scratch":
                path = self.scratch / item["name"]
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        report.removed.add(item["size"])
                except FileNotFoundError:
                    pass
            else:
                with self.catalog.write():
                    # under the write lock no change can commit a reference to it meanwhile
                    if not self.refs.referenced(item["name"]) and self.blobs.delete_if_older(item["name"], cutoff):
                        report.removed.add(item["size"])
        return report


def describe(report: Report) -> str:
    """One log line for a collection run."""
    verb = "removed" if report.applied else "would remove"
    return (
        f"gc: {verb} {report.removed.count if report.applied else len(report.collectable)} objects "
        f"({report.removed.bytes if report.applied else sum(c['size'] for c in report.collectable)} bytes); "
        f"{report.unreferenced_young.count} unreferenced blobs and {report.temps_young.count} temporary files "
        f"inside the {report.grace_seconds:.0f}s grace kept; {len(report.dangling)} dangling rows"
    )


def scratch_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
