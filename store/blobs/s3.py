"""Blobs in an S3-compatible bucket (MinIO in production) through the ``minio`` SDK.

A body that fits in one part is hashed in memory and put straight to ``blobs/<sha256>``
(one stat and one PUT). A larger one streams to a unique temporary key (multipart, one
part buffered at a time), and only once the digest is known is the object copied
server-side to ``blobs/<sha256>`` and the temporary key removed. Readers therefore never
see a partial object; a crash leaves at worst a ``tmp/`` key, which garbage collection
removes.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from store.blobs.base import HashingReader, StoredBlob, check_sha256
from store.errors import BackendUnavailable, NotFound

PART_SIZE = 8 * 1024 * 1024
COPY_LIMIT = 5 * 1024**3
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


log = logging.getLogger("packyard.blobs")


def _unavailable(operation: str, exc: Exception) -> BackendUnavailable:
    """What a client is told: the operation failed. The endpoint, bucket and object key the
    exception names (urllib3 puts them all in its message) go to the server log only."""
    log.warning("S3 %s failed: %r", operation, exc)
    return BackendUnavailable(f"the blob store (S3) is unavailable ({operation} failed); see the server log")


class _Body:
    """A minio/urllib3 response as a file-like object whose close returns the connection."""

    def __init__(self, response) -> None:  # noqa: ANN001 - urllib3 response
        self._response = response

    def read(self, n: int = -1) -> bytes:
        return self._response.read(None if n is None or n < 0 else n)

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FullReads:
    """Answers each ``read(n)`` with exactly ``n`` bytes (less only at the end).

    minio builds a part by appending whatever each read returns to a ``bytes`` object, which
    copies the whole part on every append; request bodies arrive in ~64-256 KiB chunks, so
    handing it whole parts (joined once) keeps a put's memory at about one part.
    """

    def __init__(self, reader: HashingReader) -> None:
        self._reader = reader

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = PART_SIZE
        pieces, wanted = [], n
        while wanted > 0:
            data = self._reader.read(wanted)
            if not data:
                break
            pieces.append(data)
            wanted -= len(data)
        return b"".join(pieces)


class _Prefixed:
    """Chunks already read, then the rest of a stream, still answering reads with whole parts.

    A chunk that is exactly what is asked for is handed over as it is (no copy), so the first
    part costs no more memory than on the plain multipart path.
    """

    def __init__(self, chunks: list[bytes], rest: _FullReads) -> None:
        self._chunks, self._rest = [c for c in chunks if c], rest

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = PART_SIZE
        pieces, wanted = [], n
        while self._chunks and wanted > 0:
            chunk = self._chunks.pop(0)
            if len(chunk) > wanted:
                self._chunks.insert(0, chunk[wanted:])
                chunk = chunk[:wanted]
            pieces.append(chunk)
            wanted -= len(chunk)
        if wanted > 0:
            pieces.append(self._rest.read(wanted))
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class S3BlobStore:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool | None = None,
        region: str | None = None,
        prefix: str = "",
        create_bucket: bool = True,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if secure is None:
            secure = parts.scheme == "https"
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = Minio(parts.netloc, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        if create_bucket:
            try:
                if not self.client.bucket_exists(bucket):
                    self.client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise BackendUnavailable(f"S3 bucket {bucket!r} is not usable: {exc.code}") from exc
            except HTTPError as exc:
                raise BackendUnavailable(f"S3 endpoint {endpoint} is unreachable: {exc}") from exc

    def _key(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}"

    def put(self, stream: BinaryIO, *, limit: int | None = None, durable: bool = True) -> StoredBlob:
        reader = HashingReader(stream, limit)
        parts = _FullReads(reader)
        first = parts.read(PART_SIZE)
        more = parts.read(1)
        if not more:
            # the whole body is in memory and its digest is known: one PUT straight to the final
            # key (atomic for readers, like every S3 PUT) instead of tmp put + copy + remove
            sha256 = reader.hexdigest()
            if self.exists(sha256):
                return StoredBlob(sha256, reader.size, created=False)
            try:
                self.client.put_object(self.bucket, self._key(sha256), io.BytesIO(first), length=len(first))
            except HTTPError as exc:
                raise _unavailable("write", exc) from exc
            return StoredBlob(sha256, reader.size, created=True)
        body = _Prefixed([first, more], parts)
        del first  # the body holds the first part until minio takes it: no second reference
        tmp = f"{self.prefix}tmp/{uuid.uuid4().hex}"
        try:
            # one part in flight: parallel part uploads would each hold a part in memory
            self.client.put_object(self.bucket, tmp, body, length=-1, part_size=PART_SIZE, num_parallel_uploads=1)
        except HTTPError as exc:
            raise _unavailable("write", exc) from exc
        try:
            sha256 = reader.hexdigest()
            final = self._key(sha256)
            if self.exists(sha256):
                return StoredBlob(sha256, reader.size, created=False)
            if reader.size > COPY_LIMIT:
                self.client.compose_object(self.bucket, final, [ComposeSource(self.bucket, tmp)])
            else:
                self.client.copy_object(self.bucket, final, CopySource(self.bucket, tmp))
            return StoredBlob(sha256, reader.size, created=True)
        finally:
            self.client.remove_object(self.bucket, tmp)

    def open(self, sha256: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        try:
            response = self.client.get_object(self.bucket, self._key(sha256), offset=offset, length=length or 0)
            return _Body(response)  # type: ignore[return-value]
        except S3Error as exc:
            if exc.code in _MISSING:
                raise NotFound(f"blob {sha256} is not in the store") from exc
            raise BackendUnavailable(f"S3 read failed: {exc.code}") from exc

    def _stat(self, sha256: str):  # noqa: ANN202 - minio Object
        try:
            return self.client.stat_object(self.bucket, self._key(sha256))
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise BackendUnavailable(f"S3 stat failed: {exc.code}") from exc

    def exists(self, sha256: str) -> bool:
        return self._stat(sha256) is not None

    def size(self, sha256: str) -> int:
        stat = self._stat(sha256)
        if stat is None:
            raise NotFound(f"blob {sha256} is not in the store")
        return int(stat.size)

    def delete(self, sha256: str) -> None:
        self.client.remove_object(self.bucket, self._key(sha256))

    def hashes(self) -> Iterator[str]:
        for obj in self.client.list_objects(self.bucket, prefix=f"{self.prefix}blobs/", recursive=True):
            yield obj.object_name.rsplit("/", 1)[-1]

    def temp_count(self) -> int:
        """Temporary keys in flight or left by a crash (tests assert none are left)."""
        objects = self.client.list_objects(self.bucket, prefix=f"{self.prefix}tmp/", recursive=True)
        return sum(1 for _ in objects)

    def local_path(self, sha256: str) -> Path | None:
        return None

    def presigned_url(self, sha256: str, expires_seconds: int = 3600) -> str | None:
        return self.client.presigned_get_object(
            self.bucket, self._key(sha256), expires=timedelta(seconds=expires_seconds)
        )

    def check(self) -> None:
        try:
            self.client.bucket_exists(self.bucket)
        except (S3Error, HTTPError) as exc:
            raise _unavailable("check", exc) from exc
