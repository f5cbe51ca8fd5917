"""Environment bundles: the wheels an environment was installed from, keyed by its lock.

A task run that builds an environment uploads the wheelhouse it installed from; a fresh
worker with an empty cache then materialises the same environment from this one blob,
without contacting any index. A bundle is immutable: the first upload for a key wins, and
uploading again is a no-op, so concurrent runs cannot fight over it.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO

from store.blobs.base import BlobStore
from store.catalog import Catalog, now
from store.errors import InvalidInput, NotFound
from store.names import validate_namespace
from store.refs import BlobRefs

_KEY = re.compile(r"[0-9a-f]{64}")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidInput(f"{key!r} is not a bundle key (the sha256 of a lock)")
    return key


class Bundles:
    def __init__(self, catalog: Catalog, blobs: BlobStore, refs: BlobRefs, max_bytes: int | None) -> None:
        self.catalog, self.blobs, self.refs, self.max_bytes = catalog, blobs, refs, max_bytes

    def get(self, key: str) -> dict:
        row = self.catalog.one("SELECT * FROM bundles WHERE key = ?", (check_key(key),))
        if row is None:
            raise NotFound(f"no environment bundle {key}")
        return row

    def put(self, key: str, stream: BinaryIO, *, namespace: str, actor: str) -> tuple[dict, bool]:
        check_key(key)
        validate_namespace(namespace)
        blob = self.blobs.put(stream, limit=self.max_bytes)
        try:
            with self.catalog.write() as db:
                existing = self.catalog.one("SELECT * FROM bundles WHERE key = ?", (key,))
                if existing is not None:
                    if blob.created:
                        self.refs.discard([blob.sha256])
                    return existing, False
                row = {
                    "key": key,
                    "sha256": blob.sha256,
                    "size": blob.size,
                    "namespace": namespace,
                    "created": now(),
                    "created_by": actor,
                }
                db["bundles"].insert(row)
                self.catalog.audit(actor, "bundle.put", namespace, json.dumps({"key": key}))
                return row, True
        except BaseException:
            if blob.created:
                self.refs.discard([blob.sha256])
            raise
