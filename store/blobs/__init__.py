"""Content-addressed blob storage: one small interface, a local and an S3 backend."""

from packyard.store.blobs.base import BlobStore, StoredBlob
from packyard.store.blobs.local import LocalBlobStore
from packyard.store.blobs.s3 import S3BlobStore

__all__ = ["BlobStore", "StoredBlob", "LocalBlobStore", "S3BlobStore"]
