"""Blobs in an S3-compatible bucket (MinIO in production) through the ``minio`` SDK.

A body that fits in one part is hashed in memory and put straight to ``blobs/<sha256>``
(one stat and one PUT). A larger one streams to a unique temporary key (multipart, one
part buffered at a time), and only once the digest is known is the object copied
server-side to ``blobs/<sha256>`` and the temporary key removed. Readers therefore never
see a partial object; a crash (or an outage during the clean-up) leaves at worst a ``tmp/``
key, which the collector removes once it is older than its grace period.

Every failure to reach or use the bucket becomes :class:`BackendUnavailable` here (the HTTP
layer answers it 503), so no minio or urllib3 exception escapes to a request.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from packyard.store.blobs.base import HashingReader, StoredBlob, StoredEntry, check_sha256
from packyard.store.errors import BackendUnavailable, NotFound, PackyardError
from urllib3.exceptions import HTTPError

PART_SIZE = 8 * 1024 * 1024
COPY_LIMIT = 5 * 1024**3
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
_FAILURES = (MinioException, HTTPError, OSError, ValueError)
"""What minio raises when the bucket is unreachable or misbehaves (ValueError: a garbled
answer it cannot parse)."""


log = logging.getLogger("packyard.blobs")


def _unavailable(operation: str, exc: Exception) -> BackendUnavailable:
    """What a client is told: the operation failed. The endpoint, bucket and object key the
    exception names (urllib3 puts them all in its message) go to the server log only."""
    log.warning("S3 %s failed: %r", operation, exc)
    return BackendUnavailable(f"the blob store (S3) is unavailable ({operation} failed); see the server log")


@contextlib.contextmanager
def _backend(operation: str) -> Iterator[None]:
    """Turn any S3 failure inside the block into :class:`BackendUnavailable` (a missing key
    stays an :class:`S3Error` for the caller to answer as it should)."""
    try:
        yield
    except PackyardError:
        raise
    except S3Error as exc:
        if exc.code in _MISSING:
            raise
        raise _unavailable(operation, exc) from exc
    except _FAILURES as exc:
        raise _unavailable(operation, exc) from exc


def _http_client(secure: bool) -> urllib3.PoolManager:
    """minio's default pool, with fewer retries: during an outage a request should be told
    so within about a second, not after minio's five retries with back-off."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=300),
        maxsize=10,
        cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


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
        self.client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=_http_client(secure),
        )
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
            # key (atomic for readers, like every S3 PUT) instead of tmp put + copy + remove.
            # Written even when it exists: a fresh LastModified keeps the collector off it.
            sha256 = reader.hexdigest()
            existed = self.exists(sha256)
            with _backend("write"):
                self.client.put_object(self.bucket, self._key(sha256), io.BytesIO(first), length=len(first))
            return StoredBlob(sha256, reader.size, created=not existed)
        body = _Prefixed([first, more], parts)
        del first  # the body holds the first part until minio takes it: no second reference
        tmp = f"{self.prefix}tmp/{uuid.uuid4().hex}"
        try:
            with _backend("write"):
                # one part in flight: parallel part uploads would each hold a part in memory
                self.client.put_object(self.bucket, tmp, body, length=-1, part_size=PART_SIZE, num_parallel_uploads=1)
            sha256 = reader.hexdigest()
            final = self._key(sha256)
            existed = self.exists(sha256)
            with _backend("copy"):
                # copied even when it exists, for a fresh LastModified (see above)
                if reader.size > COPY_LIMIT:
                    self.client.compose_object(self.bucket, final, [ComposeSource(self.bucket, tmp)])
                else:
                    self.client.copy_object(self.bucket, final, CopySource(self.bucket, tmp))
            return StoredBlob(sha256, reader.size, created=not existed)
        finally:
            # an outage here leaves the tmp/ key to the collector (age-based), not to this request
            with contextlib.suppress(*_FAILURES):
                self.client.remove_object(self.bucket, tmp)

    def open(self, sha256: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        try:
            with _backend("read"):
                response = self.client.get_object(self.bucket, self._key(sha256), offset=offset, length=length or 0)
            return _Body(response)  # type: ignore[return-value]
        except S3Error as exc:
            raise NotFound(f"blob {sha256} is not in the store") from exc

    def _stat(self, sha256: str):  # noqa: ANN202 - minio Object
        try:
            with _backend("stat"):
                return self.client.stat_object(self.bucket, self._key(sha256))
        except S3Error:
            return None

    def exists(self, sha256: str) -> bool:
        return self._stat(sha256) is not None

    def size(self, sha256: str) -> int:
        stat = self._stat(sha256)
        if stat is None:
            raise NotFound(f"blob {sha256} is not in the store")
        return int(stat.size)

    def delete(self, sha256: str) -> None:
        with _backend("delete"):
            self.client.remove_object(self.bucket, self._key(sha256))

    def delete_if_older(self, sha256: str, cutoff: float) -> bool:
        """S3 has no conditional delete: the stat and the delete are two calls, a few
        milliseconds apart; the collector runs this under the catalog's write lock, so no
        change can commit a reference in between (see ``store/collector.py``)."""
        stat = self._stat(sha256)
        if stat is None or stat.last_modified is None or stat.last_modified.timestamp() >= cutoff:
            return False
        self.delete(sha256)
        return True

    def delete_many_if_older(self, names: list[str], cutoff: float) -> list[str]:
        """:meth:`delete_if_older` for a batch: the stats run side by side and the deletions go
        in one multi-object DELETE, so a collection is a few round trips per batch, not two per
        blob. The caller holds the catalog's write lock, as for one blob."""
        with ThreadPoolExecutor(8) as pool:
            stats = list(pool.map(self._stat, names))
        old = [
            name
            for name, stat in zip(names, stats, strict=True)
            if stat is not None and stat.last_modified is not None and stat.last_modified.timestamp() < cutoff
        ]
        if not old:
            return []
        with _backend("delete"):
            failed = {
                error.name.rsplit("/", 1)[-1]
                for error in self.client.remove_objects(self.bucket, (DeleteObject(self._key(n)) for n in old))
            }
        return [name for name in old if name not in failed]

    def _list(self, folder: str) -> Iterator[StoredEntry]:
        with _backend("list"):
            for obj in self.client.list_objects(self.bucket, prefix=f"{self.prefix}{folder}/", recursive=True):
                modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                yield StoredEntry(obj.object_name.rsplit("/", 1)[-1], int(obj.size or 0), modified)

    def hashes(self) -> Iterator[str]:
        for entry in self.entries():
            yield entry.name

    def entries(self) -> Iterator[StoredEntry]:
        return self._list("blobs")

    def temps(self) -> Iterator[StoredEntry]:
        return self._list("tmp")

    def delete_temp(self, name: str) -> None:
        if "/" in name or not name:
            raise ValueError(f"not a temporary key name: {name!r}")
        with _backend("delete"):
            self.client.remove_object(self.bucket, f"{self.prefix}tmp/{name}")

    def temp_count(self) -> int:
        """Temporary keys in flight or left by a crash (tests assert none are left)."""
        return sum(1 for _ in self.temps())

    def local_path(self, sha256: str) -> Path | None:
        return None

    def presigned_url(self, sha256: str, expires_seconds: int = 3600, filename: str | None = None) -> str | None:
        """Signed locally (no request to S3); ``filename`` becomes the download's name."""
        extra = {"response-content-disposition": f'attachment; filename="{filename}"'} if filename else None
        with _backend("presign"):
            return self.client.presigned_get_object(
                self.bucket, self._key(sha256), expires=timedelta(seconds=expires_seconds), response_headers=extra
            )

    def check(self) -> None:
        try:
            self.client.bucket_exists(self.bucket)
        except _FAILURES as exc:
            raise _unavailable("check", exc) from exc
