"""What a namespace's package index lists, computed as small composable sources.

One protocol, three parts (DESIGN.md, "Index semantics"):

- :class:`NamespaceSource` reads one namespace's distributions from the catalog.
- :class:`ChainSource` merges a namespace with its ancestors, nearest first. A distribution
  the nearer namespace holds hides the same distribution further up — the same filename, or
  another spelling of it (``ETL-7.0.0-…`` hides ``etl-7.0-…``) — so a team can override a
  file without touching its parent's index, and a page never lists one wheel twice.
- Upstream sources (PyPI, another packyard) plug in behind the same protocol later, behind
  a guard that consults them only for names no namespace in the chain has.

Rendering (HTML, JSON) and caching live in ``packyard/``; this module only decides what
is listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from packyard.store.artifacts import distribution_key, parse_filename
from packyard.store.catalog import Catalog
from packyard.store.errors import InvalidInput
from packyard.store.generations import Generations
from packyard.store.names import ancestors, validate_namespace
from packyard.store.namespaces import Namespaces


@dataclass(frozen=True)
class IndexFile:
    filename: str
    namespace: str
    """The namespace that holds the file (the nearest one in the chain)."""
    version: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None
    """The PEP 658 metadata's sha256 when it is advertised ("" for an upstream file whose
    metadata has no hash), None when the file has none a resolver may trust."""
    yanked: str | None
    """None when not yanked; the reason (possibly empty) when yanked."""
    upload_time: str | None
    filetype: str
    upstream_url: str | None = None
    """Where an upstream file is fetched from on first request (None for files stored here)."""
    upstream: str | None = None
    """The upstream index it comes from."""


@dataclass
class ProjectPage:
    name: str
    files: list[IndexFile] = field(default_factory=list)
    upstream: str | None = None
    """Set when the page comes from an upstream index rather than the namespace chain."""
    stale: str | None = None
    """Why an upstream page is served from cache past its TTL (the upstream failed)."""

    @property
    def versions(self) -> list[str]:
        """PEP 700: every version that has a file, in ascending order."""

        def key(v: str):  # noqa: ANN202
            try:
                return (0, Version(v))
            except InvalidVersion:
                return (1, v)

        return sorted({f.version for f in self.files}, key=key)


class Source(Protocol):
    def projects(self) -> dict[str, str]:
        """Normalized project name -> display name."""
        ...

    def project(self, project: str) -> ProjectPage | None:
        """The files of one project (normalized name), or None if the source lacks it."""
        ...

    def file(self, filename: str) -> IndexFile | None: ...


def _file(row: dict) -> IndexFile:
    return IndexFile(
        filename=row["filename"],
        namespace=row["namespace"],
        version=row["version"],
        sha256=row["sha256"],
        size=row["size"],
        requires_python=row["requires_python"],
        metadata_sha256=row["metadata_sha256"] if row["core_metadata"] else None,
        yanked=(row["yanked_reason"] or "") if row["yanked"] else None,
        upload_time=row["upload_time"],
        filetype=row["filetype"],
    )


class NamespaceSource:
    """One namespace's own distributions."""

    def __init__(self, catalog: Catalog, namespace: str) -> None:
        self.catalog = catalog
        self.namespace = namespace

    def projects(self) -> dict[str, str]:
        rows = self.catalog.query(
            "SELECT project, max(name) AS name FROM dists WHERE namespace = ? GROUP BY project", (self.namespace,)
        )
        return {row["project"]: row["name"] for row in rows}

    def project(self, project: str) -> ProjectPage | None:
        rows = self.catalog.query(
            "SELECT * FROM dists WHERE namespace = ? AND project = ? ORDER BY filename", (self.namespace, project)
        )
        if not rows:
            return None
        return ProjectPage(rows[-1]["name"], [_file(row) for row in rows])

    def file(self, filename: str) -> IndexFile | None:
        row = self.catalog.one("SELECT * FROM dists WHERE namespace = ? AND filename = ?", (self.namespace, filename))
        return _file(row) if row else None


def _key(filename: str) -> str:
    try:
        return distribution_key(filename)
    except (InvalidInput, ValueError):
        return filename


class ChainSource:
    """A namespace and its ancestors as one index; the nearest namespace wins a distribution."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def projects(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for source in reversed(self.sources):
            merged.update(source.projects())
        return merged

    def project(self, project: str) -> ProjectPage | None:
        page: ProjectPage | None = None
        seen: set[str] = set()
        for source in self.sources:
            found = source.project(project)
            if found is None:
                continue
            if page is None:
                page = ProjectPage(found.name)
            held = {_key(f.filename) for f in found.files}
            page.files += [f for f in found.files if _key(f.filename) not in seen]
            seen |= held
        if page is not None:
            page.files.sort(key=lambda f: f.filename)
        return page

    def file(self, filename: str) -> IndexFile | None:
        """The nearest namespace's file of that name, unless a nearer one holds another spelling of it."""
        key = _key(filename)
        for source in self.sources:
            found = source.file(filename)
            if found is not None:
                return found
            try:
                project = parse_filename(filename).project
            except InvalidInput:
                continue  # a name stored before today's rules: only its exact spelling counts
            page = source.project(project)
            if page is not None and any(_key(f.filename) == key for f in page.files):
                return None  # shadowed here under another spelling: the page links that one
        return None


class IndexService:
    """Builds the source for a namespace, following its inheritance and upstream settings."""

    def __init__(
        self,
        catalog: Catalog,
        namespaces: Namespaces,
        generations: Generations,
        guard: Callable[[str, Source], Source] | None = None,
    ) -> None:
        self.catalog = catalog
        self.namespaces = namespaces
        self.generations = generations
        self.guard = guard
        """Wraps the chain in the namespace's upstream (see ``store/upstream.py``), if any."""

    def chain(self, namespace: str) -> list[str]:
        """The namespaces whose files the index of ``namespace`` lists, nearest first.

        Each namespace inherits its parent's index unless its ``inherit`` setting is false,
        so the walk up stops at the first namespace that does not inherit. A namespace not
        created yet is read as its nearest existing ancestor's chain; none at all is NotFound.
        """
        validate_namespace(namespace)
        chain: list[str] = []
        for ns in ancestors(namespace):
            settings = self.namespaces.settings_of(ns)
            if settings is None:  # not created yet: read as its nearest existing ancestor
                continue
            chain.append(ns)
            if settings.get("inherit", True) is False:
                break
        if not chain:
            self.namespaces.nearest(namespace)  # NotFound: no namespace of that name or above it
        return chain

    def source(self, namespace: str, chain: list[str]) -> Source:
        internal = ChainSource([NamespaceSource(self.catalog, ns) for ns in chain])
        return self.guard(namespace, internal) if self.guard else internal


def normalize(project: str) -> str:
    return canonicalize_name(project)
