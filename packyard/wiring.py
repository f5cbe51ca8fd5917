"""Builds the store the settings describe: the only place that picks a blob backend."""

from __future__ import annotations

from packyard.settings import Settings, secret
from packyard.store.archive import ArchiveLimits
from packyard.store.blobs import LocalBlobStore, S3BlobStore
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.credentials import check_entries
from packyard.store.egress import HostPolicy
from packyard.store.errors import InvalidInput
from packyard.store.upstream import UpstreamLimits


def open_blobs(settings: Settings) -> BlobStore:
    if settings.backend == "local":
        return LocalBlobStore(settings.data / "blobs", fsync=settings.fsync)
    access, secret_key = secret(settings.s3_access_key), secret(settings.s3_secret_key)
    if not access or not secret_key:
        raise InvalidInput("PACKYARD_S3_ENDPOINT is set but PACKYARD_S3_ACCESS_KEY or PACKYARD_S3_SECRET_KEY is not")
    return S3BlobStore(
        settings.s3_endpoint or "",
        settings.s3_bucket,
        access,
        secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region,
        prefix=settings.s3_prefix,
    )


def upstream_hosts(settings: Settings) -> HostPolicy:
    try:
        return HostPolicy.parse(settings.upstream_allow_hosts)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def open_store(settings: Settings) -> Store:
    try:
        check_entries(settings.credential_env_names)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return Store(
        settings.data,
        open_blobs(settings),
        admin_secret=secret(settings.admin_token),
        database_url=secret(settings.database_url),
        database_timeout=settings.database_timeout,
        database_pool_size=settings.database_pool_size,
        retention_batch=settings.retention_batch,
        retention_duty=settings.retention_duty,
        max_upload_bytes=settings.max_upload_bytes,
        upstream_limits=UpstreamLimits(
            timeout=settings.upstream_timeout,
            ttl=settings.upstream_ttl,
            max_page_bytes=settings.upstream_max_page_bytes,
            max_file_bytes=settings.max_upload_bytes,
            credential_envs=settings.credential_env_names,
            hosts=upstream_hosts(settings),
        ),
        archive_limits=ArchiveLimits(
            max_members=settings.zip_max_members,
            max_total_bytes=settings.zip_max_total_bytes,
            max_ratio=settings.zip_max_ratio,
            max_cpu_seconds=settings.archive_check_cpu_seconds,
        ),
        bundle_limits=ArchiveLimits(
            max_members=settings.bundle_max_members,
            max_total_bytes=settings.zip_max_total_bytes,
            max_ratio=settings.zip_max_ratio,
            max_cpu_seconds=settings.archive_check_cpu_seconds,
        ),
    )
