"""Content-addressed blob storage: one small interface, a local and an S3 backend."""

from store.blobs.base import BlobStore, StoredBlob
from store.blobs.local import LocalBlobStore
from store.blobs.s3 import S3BlobStore

__all__ = ["BlobStore", "StoredBlob", "LocalBlobStore", "S3BlobStore"]
