"""The store as one object: a catalog and a blob backend, and the services over them."""

from __future__ import annotations

from pathlib import Path

from packyard.store.archive import ArchiveLimits
from packyard.store.blobs.base import BlobStore
from packyard.store.builds import Builds
from packyard.store.bundles import BUNDLE_LIMITS, Bundles
from packyard.store.catalog import Catalog
from packyard.store.collector import DEFAULT_GRACE_SECONDS, Collector, scratch_dir
from packyard.store.dists import Dists
from packyard.store.files import NamespaceFiles
from packyard.store.generations import Generations
from packyard.store.index import IndexService, Source
from packyard.store.names import ancestors
from packyard.store.namespaces import Namespaces
from packyard.store.refs import BlobRefs
from packyard.store.resolutions import Resolutions
from packyard.store.retention import Retention
from packyard.store.retention import effective as effective_retention
from packyard.store.tokens import Tokens
from packyard.store.touches import Touches
from packyard.store.transfer import NamespaceTransfer
from packyard.store.upstream import (
    InternalFirst,
    UpstreamFetcher,
    UpstreamLimits,
    UpstreamSource,
    upstream_of,
    upstream_walk,
)


class Store:
    def __init__(
        self,
        data_dir: Path,
        blobs: BlobStore,
        *,
        admin_secret: str | None = None,
        max_upload_bytes: int | None = None,
        archive_limits: ArchiveLimits | None = None,
        upstream_limits: UpstreamLimits | None = None,
        bundle_limits: ArchiveLimits | None = None,
        database_url: str | None = None,
        database_timeout: float = 10.0,
        database_pool_size: int = 10,
        retention_batch: int = 50,
        retention_duty: float = 1.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.catalog = Catalog(
            self.data_dir / "catalog.db", url=database_url, timeout=database_timeout, pool_size=database_pool_size
        )
        self.blobs = blobs
        self.generations = Generations(self.catalog)
        self.refs = BlobRefs(self.catalog)
        self.scratch = scratch_dir(self.data_dir)
        """Server-side temporary files (export zips), cleaned by the collector past its grace."""
        self.collector = Collector(self.catalog, blobs, self.refs, self.scratch)
        self.namespaces = Namespaces(self.catalog, self.generations)
        self.tokens = Tokens(self.catalog, admin_secret)
        self.files = NamespaceFiles(
            self.catalog,
            blobs,
            self.namespaces,
            self.refs,
            max_upload_bytes=max_upload_bytes,
            archive_limits=archive_limits,
        )
        self.dists = Dists(
            self.catalog, blobs, self.namespaces, self.generations, self.refs, max_upload_bytes=max_upload_bytes
        )
        self.upstream_fetcher = UpstreamFetcher(upstream_limits or UpstreamLimits(max_file_bytes=max_upload_bytes))
        self.index = IndexService(self.catalog, self.namespaces, self.generations, guard=self._guard)
        self.builds = Builds(self.catalog, self.files)
        self.bundles = Bundles(
            self.catalog, blobs, self.refs, max_upload_bytes, bundle_limits or BUNDLE_LIMITS, self.namespaces
        )
        self.touches = Touches(self.catalog)
        """Last uses of mirrored files, bundles and resolutions, noted in memory and written in batches."""
        self.resolutions = Resolutions(self.catalog, self.touches)
        self.bundles.touches = self.touches
        self.retention = Retention(
            self.catalog, blobs, self.generations, self.touches, batch=retention_batch, duty=retention_duty
        )
        self.transfer = NamespaceTransfer(
            self.catalog,
            blobs,
            self.namespaces,
            self.generations,
            limits=self.files.archive_limits,
            max_upload_bytes=max_upload_bytes,
        )
        self.dists.decide_core_metadata()

    def upstream(self, namespace: str) -> UpstreamSource | None:
        """The upstream the namespace's index falls through to (its nearest ancestor's), if any."""
        config = upstream_of(self.namespaces, namespace)
        if config is None:
            return None
        return UpstreamSource(config, self.upstream_fetcher, self.catalog, self.blobs, self.refs, self.touches)

    def effective_settings(self, namespace: str) -> dict:
        """The settings the namespace's index works with, and which namespace each comes from
        (``from`` None: the default): computed by the same code the index uses."""
        own = self.namespaces.settings_of(namespace) or {}
        _, upstream = upstream_walk(self.namespaces, namespace)
        inherit = {"value": own.get("inherit", True), "from": namespace if "inherit" in own else None}
        settings = {ns: self.namespaces.settings_of(ns) or {} for ns in ancestors(namespace)}
        retention = effective_retention(settings, namespace)
        return {"index_chain": self.index.chain(namespace), "inherit": inherit, **upstream, "retention": retention}

    def _guard(self, namespace: str, internal: Source) -> Source:
        upstream = self.upstream(namespace)
        return InternalFirst(internal, upstream) if upstream else internal

    def index_state(self, namespace: str) -> str:
        """A token that changes whenever what the namespace's index lists may have changed."""
        return self.generations.state(self.index.chain(namespace))

    def close(self) -> None:
        """Let go of this process's catalog connections and change listener."""
        self.generations.close()
        self.catalog.close()

    def garbage(self) -> list[str]:
        """Blobs no catalog row references (of any age): what a crash or a failed change leaves."""
        unreferenced = self.collector.scan(grace_seconds=-1e9)  # every age counts
        return [item["name"] for item in unreferenced.collectable if item["kind"] == "blob"]

    def collect_garbage(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> int:
        """Remove unreferenced blobs and temporary objects older than the grace; how many."""
        return self.collector.collect(grace_seconds).removed.count
