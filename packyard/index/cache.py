"""Rendered index pages and file lookups, kept while the generations they depend on hold.

Every entry remembers the stamp (settings generation plus the generation of each namespace
in its chain) it was made under. The stamp is taken before the catalog is read, so an
entry made during a concurrent write is simply stale at the next look-up. The ``lookup_*``
methods never touch the catalog: they are what the hot path calls.

Pages and files are keyed by the first namespace of the chain, not by the name asked for: a
namespace not created yet reads exactly as its nearest existing ancestor (same chain, same
upstream, relative links), so any number of such names share that ancestor's entries and
only add a small chain entry each.
"""

from __future__ import annotations

import threading
import time

from packyard.index import render
from packyard.index.render import Page
from packyard.store.core import Store
from packyard.store.errors import NotFound
from packyard.store.generations import CREATED, SETTINGS, stamp_of
from packyard.store.index import IndexFile

MAX_ENTRIES = 100_000


class IndexCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._chains: dict[str, tuple[int, int | None, list[str]]] = {}
        self._pages: dict[tuple[str, str | None, str], tuple[tuple[int, ...], Page, float]] = {}
        self._files: dict[tuple[str, str], tuple[tuple[int, ...], IndexFile, float]] = {}
        self._mirrored: dict[tuple[str, str], tuple[tuple[int, ...], str, int]] = {}
        self.upstream_ttl = store.upstream_fetcher.limits.ttl

    def _remember(self, table: dict, key: object, value: object) -> None:
        with self._lock:
            if len(table) >= MAX_ENTRIES:
                table.clear()
            table[key] = value

    # -- fast look-ups (no catalog access) ---------------------------------------------

    def lookup_page(self, namespace: str, project: str | None, fmt: str) -> Page | None:
        values = self.store.generations.snapshot()  # once: this runs for every page pip or uv asks for
        chain = self._chain_in(values, namespace)
        if chain is None:
            return None
        entry = self._pages.get((chain[0], project, fmt))
        if entry is not None and entry[0] == stamp_of(values, chain) and entry[2] > time.monotonic():
            return entry[1]
        return None

    def _chain_in(self, values: dict[str, int], namespace: str) -> list[str] | None:
        """``namespace``'s chain if cached under the counters in ``values`` (one
        :meth:`Generations.snapshot`), else None."""
        cached = self._chains.get(namespace)
        if cached is None or cached[0] != values.get(SETTINGS, 0) or cached[1] not in (None, values.get(CREATED, 0)):
            return None
        return cached[2]

    def lookup_download(self, namespace: str, filename: str) -> tuple[IndexFile, str, int] | None:
        """(the file, sha256, size of the bytes to send) for a download the hot path may answer,
        with the generations read once (this runs for every download pip or uv makes).

        An upstream file is answered only once stored, as the routes last found it under the
        current stamp: no upstream settings lookup per request (a settings change moves the
        stamp, so the routes look again)."""
        values = self.store.generations.snapshot()
        chain = self._chain_in(values, namespace)
        if chain is None:
            return None
        entry = self._files.get((chain[0], filename))
        if entry is None or entry[2] <= time.monotonic():
            return None
        stamp = stamp_of(values, chain)
        if entry[0] != stamp:
            return None
        found = entry[1]
        if found.upstream_url is None:
            return found, found.sha256, found.size
        mirrored = self._mirrored.get((namespace, filename))
        if mirrored is None or mirrored[0] != stamp:
            return None  # not fetched yet (or not since the settings changed): the routes
        return found, mirrored[1], mirrored[2]

    # -- slow paths (fill the cache) ----------------------------------------------------

    def chain(self, namespace: str) -> list[str]:
        cached = self._chain_in(self.store.generations.snapshot(), namespace)
        if cached is not None:
            return cached
        generation, created = self.store.generations.settings, self.store.generations.created
        chain = self.store.index.chain(namespace)
        # a namespace read through its ancestors (not created yet) has a chain that changes when
        # it, or a namespace between it and them, is created; an existing one's only with settings
        self._remember(self._chains, namespace, (generation, None if chain[0] == namespace else created, chain))
        return chain

    def page(self, namespace: str, project: str | None, fmt: str) -> Page:
        """The rendered root (``project`` None) or project page; NotFound if unknown."""
        chain = self.chain(namespace)
        stamp = self.store.generations.stamp(chain)
        entry = self._pages.get((chain[0], project, fmt))
        if entry is not None and entry[0] == stamp and entry[2] > time.monotonic():
            return entry[1]
        source = self.store.index.source(namespace, chain)
        if project is None:
            projects = source.projects()
            rendered = render.root_json(projects) if fmt == "json" else render.root_html(projects)
        else:
            found = source.project(project)
            if found is None:
                raise NotFound(f"no project {project!r} in the index of {namespace}")
            rendered = render.project_json(found) if fmt == "json" else render.project_html(found)
        if rendered.stale is None:  # a stale upstream page is re-fetched on every request
            self._remember(self._pages, (chain[0], project, fmt), (stamp, rendered, self._expiry(rendered.upstream)))
        return rendered

    def _expiry(self, upstream: bool) -> float:
        """Internal pages live until their generations change; upstream ones for the TTL too."""
        return time.monotonic() + self.upstream_ttl if upstream else float("inf")

    def file(self, namespace: str, filename: str) -> IndexFile:
        chain = self.chain(namespace)
        stamp = self.store.generations.stamp(chain)
        entry = self._files.get((chain[0], filename))
        if entry is not None and entry[0] == stamp and entry[2] > time.monotonic():
            return entry[1]
        found = self.store.index.source(namespace, chain).file(filename)
        if found is None:
            raise NotFound(f"{filename} is not in the index of {namespace}")
        self._remember(self._files, (chain[0], filename), (stamp, found, self._expiry(found.upstream is not None)))
        return found

    def remember_mirrored(self, namespace: str, filename: str, stamp: tuple[int, ...], sha256: str, size: int) -> None:
        """Record that an upstream file is stored, under the ``stamp`` taken before it was looked up."""
        self._remember(self._mirrored, (namespace, filename), (stamp, sha256, size))

    def stamp(self, namespace: str) -> tuple[int, ...]:
        return self.store.generations.stamp(self.chain(namespace))
