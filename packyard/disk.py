"""Free space on the disk that holds the data folder: what ``/healthz`` reports and what a
write checks before it reads a byte.

A full disk used to surface as a plain-text 500 half-way through an upload. Refusing a
write up front (507) while free space is under ``PACKYARD_MIN_FREE_BYTES`` keeps a margin
for the catalog's own writes, and the blob store and catalog turn a full disk met anyway
into the same 507 (``store.errors.StorageFull``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from packyard.store.errors import storage_full


class DiskSpace:
    def __init__(self, data: Path, min_free: int, *, blobs_local: bool) -> None:
        self.data, self.min_free, self.blobs_local = data, min_free, blobs_local

    def free(self) -> int:
        return shutil.disk_usage(self.data).free

    def check(self, incoming: int = 0) -> None:
        """Raise ``StorageFull`` unless ``incoming`` more bytes leave the margin free."""
        need = self.min_free + (incoming if self.blobs_local else 0)
        if self.free() < max(need, 1):
            raise storage_full()

    def report(self) -> dict:
        free = self.free()
        return {
            "path": str(self.data),
            "free_bytes": free,
            "min_free_bytes": self.min_free,
            "writable": free >= max(self.min_free, 1),
        }
