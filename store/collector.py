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

Both walk the blob listing and the catalog's references side by side, each sorted by digest
and read a page at a time (a sorted merge), so memory stays flat however many blobs the
store holds; deletions go in batches, one write transaction each. A referenced digest the
listing did not show is checked once more at the end: a row committed during the walk may
name a blob stored after the listing passed it; only a blob still absent is reported missing
(nothing deletes a referenced blob, so that is real damage, not a race with a write).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


LISTED = 1000
"""Collectable objects a report lists by name; beyond that only counted (``collectable_total``)."""

BATCH = 200
"""Blobs checked and deleted per catalog write transaction: few enough that writers wait at
most a few hundred deletions, many enough that a million blobs are not a million transactions."""


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
    """Past the grace and unreferenced: kind (blob, temp, scratch), name, size; the first
    :data:`LISTED` only, so a report stays small on a store with millions of blobs."""
    collectable_total: Tally = field(default_factory=Tally)
    """Every collectable object, listed or not."""
    removed: Tally = field(default_factory=Tally)

    @property
    def damaged(self) -> bool:
        return bool(self.dangling or self.missing)

    def note(self, kind: str, name: str, size: int) -> None:
        self.collectable_total.add(size)
        if len(self.collectable) < LISTED:
            self.collectable.append({"kind": kind, "name": name, "size": size})

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

    def _walk(self, report: Report, cutoff: float, collect: Callable[[list[StoredEntry]], None] | None) -> None:
        """Merge the sorted blob listing with the sorted references, one page of each at a
        time: memory flat in the number of blobs. ``collect`` takes each batch of abandoned
        blobs as it fills (gc), or None (fsck, dry run)."""
        references = self.refs.sorted_referenced()
        ref = next(references, None)
        unseen: list[str] = []  # referenced, not (yet) seen in the listing
        batch: list[StoredEntry] = []
        for entry in self.blobs.entries():
            report.blobs.add(entry.size)
            while ref is not None and ref < entry.name:
                unseen.append(ref)
                report.referenced += 1
                ref = next(references, None)
            if ref == entry.name:
                report.referenced += 1
                ref = next(references, None)
                continue
            if entry.modified < cutoff:
                report.unreferenced.add(entry.size)
                report.note("blob", entry.name, entry.size)
                if collect is not None:
                    batch.append(entry)
                    if len(batch) >= BATCH:
                        collect(batch)
                        batch = []
            else:
                report.unreferenced_young.add(entry.size)
        while ref is not None:
            unseen.append(ref)
            report.referenced += 1
            ref = next(references, None)
        if batch and collect is not None:
            collect(batch)
        # a row committed while the listing ran may name a blob stored after the listing
        # passed its name: stored all the same, so only a blob absent now is missing
        missing = {sha for sha in unseen if not self.blobs.exists(sha)}
        report.missing = sorted(missing)
        report.dangling = list(self.refs.rows_referencing(missing))

    def _temps(self, report: Report, cutoff: float) -> list[tuple[str, StoredEntry]]:
        old = []
        temps = [("temp", e) for e in self.blobs.temps()] + [("scratch", e) for e in self._scratch()]
        for kind, entry in temps:
            if entry.modified < cutoff:
                report.temps.add(entry.size)
                report.note(kind, entry.name, entry.size)
                old.append((kind, entry))
            else:
                report.temps_young.add(entry.size)
        return old

    def scan(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> Report:
        """fsck: references, blobs, temporary objects; changes nothing."""
        report = Report(grace_seconds=grace_seconds)
        cutoff = time.time() - grace_seconds
        self._walk(report, cutoff, None)
        self._temps(report, cutoff)
        return report

    def collect(self, grace_seconds: float = DEFAULT_GRACE_SECONDS, *, apply: bool = True) -> Report:
        """gc: remove what is provably abandoned (a dry run with ``apply=False``)."""
        report = Report(grace_seconds=grace_seconds, applied=apply)
        cutoff = time.time() - grace_seconds

        def remove(batch: list[StoredEntry]) -> None:
            with self.catalog.write():
                # under the write lock no change can commit a reference to them meanwhile
                held = self.refs.referenced_among(entry.name for entry in batch)
                sizes = {entry.name: entry.size for entry in batch if entry.name not in held}
                for name in self.blobs.delete_many_if_older(list(sizes), cutoff):
                    report.removed.add(sizes[name])

        self._walk(report, cutoff, remove if apply else None)
        for kind, entry in self._temps(report, cutoff):
            if not apply:
                continue
            if kind == "temp":
                self.blobs.delete_temp(entry.name)
                report.removed.add(entry.size)
                continue
            path = self.scratch / entry.name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    report.removed.add(entry.size)
            except FileNotFoundError:
                pass
        return report


def describe(report: Report) -> str:
    """One log line for a collection run."""
    verb = "removed" if report.applied else "would remove"
    return (
        f"gc: {verb} {report.removed.count if report.applied else report.collectable_total.count} objects "
        f"({report.removed.bytes if report.applied else report.collectable_total.bytes} bytes); "
        f"{report.unreferenced_young.count} unreferenced blobs and {report.temps_young.count} temporary files "
        f"inside the {report.grace_seconds:.0f}s grace kept; {len(report.dangling)} dangling rows"
    )


def scratch_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
