"""One settings object, read once from ``PACKYARD_*`` environment variables.

The server and the CLI client read the same object, so a variable means one thing
everywhere and ``compose.yaml`` can be checked against this list of fields.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from packyard import defaults
from packyard.defaults import absolute

GiB = 1024**3
MiB = 1024**2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PACKYARD_", extra="ignore", validate_default=True)

    # server
    data: Path = Path("packyard-data")
    """Catalog (SQLite, unless ``database_url`` is set) and, with the local backend, the blobs."""
    database_url: SecretStr | None = None
    """``postgresql://USER:PASSWORD@HOST:PORT/DB``: keep the catalog in PostgreSQL instead of
    SQLite, so several servers can share it. Empty: SQLite in the data folder."""
    database_timeout: float = 10.0
    """Seconds a request waits for a PostgreSQL connection before it fails with 503."""
    database_pool_size: int = Field(10, ge=1)
    """PostgreSQL connections each server process opens at most (writers queue on one lock,
    so more mostly serves more concurrent readers)."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Server processes on the port (``serve --workers``, ``packyard/processes.py``). Raise it
    toward the number of idle cores when one process is busy; every process sees every change
    (store/generations.py)."""
    admin_token: SecretStr | None = None
    """An admin token for every namespace, for bootstrapping and automation."""
    anonymous_read: bool = True
    """Reads without a token; set false to require a read token for everything."""
    max_upload_bytes: int = 5 * GiB
    max_json_bytes: int = MiB
    """Any other request body (the JSON API); refused before it is read or parsed."""
    max_webhook_bytes: int = 25 * MiB
    """Webhook bodies: GitHub caps its payloads at 25 MB, GitLab's are smaller."""
    min_free_bytes: int = 64 * MiB
    """Writes are refused (507) while the data folder's disk has less free space than this (plus
    the declared body, with the local backend); ``/healthz`` reports it."""
    fsync: bool = True
    """Local backend: flush each blob to disk before the catalog references it. Turning it off
    makes uploads faster but a power cut can then leave a catalog row whose blob is empty."""
    zip_max_members: int = 10_000
    zip_max_total_bytes: int = 4 * GiB
    zip_max_ratio: int = 100
    bundle_max_members: int = 200_000
    """Files in one environment bundle (its expanded size and ratio share the zip limits)."""
    archive_check_cpu_seconds: float = 60.0
    """CPU one archive check (a bundle's expansion) may take before the upload is refused."""
    log_requests: bool = False
    gc_grace_seconds: float = 3600.0
    """The collector removes an unreferenced blob or a temporary file only once it is this old:
    the time a change may take between storing its blobs and committing (an upload, a sync)."""
    gc_interval_seconds: float = 3600.0
    """``packyard serve`` collects garbage at start and then this often; 0 turns it off."""
    replicate: bool = False
    """``packyard serve`` runs Litestream beside the server, streaming the SQLite catalog into the
    S3 bucket under ``<s3_prefix>catalog/`` (``serve --replicate``; packyard/replication.py)."""
    retention_interval_seconds: float = 3600.0
    """``packyard serve`` runs the namespaces' retention policies this often (one server at a
    time, under a lease in the catalog), before its garbage collection; 0 turns it off."""
    retention_batch: int = Field(50, ge=1, le=100_000)
    """Units (a project's releases, a path's revisions, a build, a bundle, ...) a retention pass
    handles per catalog transaction: short write locks beside uploads."""
    retention_duty: float = Field(0.1, gt=0, le=1)
    """The share of time a retention pass inside the server works; it sleeps the rest, so the
    hot path keeps its speed while a large pass runs (``packyard gc`` runs at full speed)."""
    blob_cache_bytes: int = 64 * MiB
    """Memory for small downloads kept by sha256 (an LRU bounded in bytes; 0 keeps none)."""
    blob_cache_item_bytes: int = MiB
    """Downloads up to this size are answered in one piece (from that memory, else one read);
    bigger ones are streamed in 1 MiB reads, or handed to the server where it can send a file."""
    # the connection itself (for a server facing clients without a proxy)
    max_header_bytes: int = 64 * 1024
    """Request line and headers together; a bigger head is answered 431 and closed."""
    max_headers: int = 100
    """Header fields in one request; more are answered 431 and closed."""
    headers_timeout: float = 10.0
    """Seconds from connecting, or from the first bytes of a request head, to the complete head: 408."""
    body_timeout: float = 30.0
    body_min_rate: int = 1024
    """While a request body is expected, each ``body_timeout`` seconds must bring at least this
    many bytes per second (and one byte at least): a stalled or trickled body is answered 408."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection is kept open."""
    credential_envs: str = ""
    """Comma-separated names of environment variables that namespaces may use as credentials
    (upstream_auth_env, sync --token-env/--ssh-key-env, --webhook-secret-env): ``NAME`` for
    every namespace, ``NAME:namespace`` for that namespace and its descendants only."""
    secrets_dir: Path | None = None
    """Folder of secret files that syncs may name as credentials (``--token-file NAME``)."""
    sync_local_roots: str = ""
    """Comma-separated folders whose git repositories syncs and pushes may use (``file://``);
    empty: none. The data and secrets folders are refused even when inside one."""
    sync_allow_hosts: str = ""
    """Comma-separated git hosts syncs and pushes may reach besides public addresses (same
    form as ``upstream_allow_hosts``). Default: public only."""

    # web UI
    ui: bool = True
    """Serve the web UI under ``/ui/`` (and redirect browsers from ``/``)."""
    ui_session_hours: float = 12.0
    """How long a web UI sign-in lasts; revoking its token ends it sooner."""

    # builds
    embedded_worker: bool = True
    """Run one build worker inside ``packyard serve`` (``--no-worker`` turns it off)."""
    build_index_url: str | None = None
    """Index the build backend (setuptools, hatchling, ...) is installed from; default PyPI."""
    build_timeout: int = 600
    build_installer: str = "auto"
    build_sandbox: str = "auto"
    """``auto`` uses bubblewrap when installed, ``bwrap`` requires it, ``none`` turns it off."""
    build_stale_seconds: float = 120.0
    """A running build whose worker sent no heartbeat for this long is failed at the next claim."""

    # upstream indexes
    upstream_ttl: float = 600.0
    """Seconds an upstream project page is reused before it is fetched again."""
    upstream_timeout: float = 30.0
    upstream_max_page_bytes: int = 20 * 1024 * 1024
    upstream_allow_hosts: str = ""
    """Comma-separated hosts upstreams may reach besides public addresses: names or globs
    (``pypi.corp.example``, ``*.corp.example``), IP addresses or networks (``10.1.0.0/16``),
    each optionally with a port (``127.0.0.1:3141``, ``[::1]:3141``). Default: public only."""
    public_url: str | None = None
    """How build workers reach this server's index (default http://HOST:PORT)."""

    # S3 backend: used when an endpoint is set
    s3_endpoint: str | None = None
    s3_bucket: str = "packyard"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_redirect: bool = False
    """Answer file downloads with a redirect to a presigned S3 URL (the bucket serves the
    bytes; clients must reach the S3 endpoint). Access is checked before the redirect."""
    s3_redirect_seconds: int = 300
    """How long such a presigned URL stays valid."""

    # client side (CLI, task runs)
    url: str = defaults.URL
    token: SecretStr | None = None
    cache_dir: Path = defaults.CACHE_DIR
    """Task-run environments and resolutions (PACKYARD_CACHE_DIR)."""

    @field_validator("data", "secrets_dir", "cache_dir", mode="after")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        """Every configured path is made absolute once, here: a relative one (the quick start's
        ``./packyard-data``) would otherwise mean another folder to each process that gets it —
        a build's work folder, bubblewrap, git — and builds failed on exactly that."""
        return absolute(path) if path is not None else None

    @property
    def credential_env_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.credential_envs.split(",") if name.strip())

    @property
    def own_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def redirect_seconds(self) -> int:
        """Lifetime of download redirects; 0 when files are served by packyard itself."""
        return self.s3_redirect_seconds if self.s3_redirect and self.backend == "s3" else 0

    @property
    def backend(self) -> str:
        return "s3" if self.s3_endpoint else "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
