"""Upstream indexes: a safe fall-through to PyPI, another packyard or any PEP 503/691 index.

Three pieces behind the index's one source protocol (see ``store/index.py``):

- :class:`UpstreamSource` fetches an upstream project page (JSON preferred), re-serves it
  with links into packyard, keeps it for a TTL and, when the upstream fails, keeps serving
  the last good copy (marked stale). A file is fetched on its first request, checked against
  the upstream's sha256, stored as a blob and served from the store ever after.
- :class:`InternalFirst` is the guard in front of it. It prevents dependency confusion: if
  the namespace or any ancestor has a project name (inherited files or not), the upstream is
  never consulted for that name — a public ``etl 99.0`` can never shadow an internal ``etl``.
  Only names they all lack fall through, and only if the allow/deny lists admit them.
- :func:`upstream_of` reads the nearest ancestor's ``upstream`` setting, and the allow/deny
  lists set on the way up to it (each one narrows, none widens).

Every failure of the upstream — unreachable, 5xx, a hang, a page that is not HTML or JSON,
an oversized answer, a redirect to a non-HTTP scheme, bytes that do not match the hash —
becomes a :class:`RemoteFailed` with a clear message, and nothing of it is cached.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from packaging.utils import canonicalize_name
from packyard.store.artifacts import parse_installable
from packyard.store.blobs.base import BlobStore, StoredBlob
from packyard.store.catalog import Catalog, now
from packyard.store.credentials import allowed_env
from packyard.store.egress import SETTING as ALLOW_HOSTS_SETTING
from packyard.store.egress import CheckedTransport, HostPolicy, HostRefused
from packyard.store.errors import BackendUnavailable, Forbidden, InvalidInput, PackyardError, RemoteFailed
from packyard.store.index import IndexFile, NamespaceSource, ProjectPage, Source
from packyard.store.names import ancestors
from packyard.store.namespaces import Namespaces
from packyard.store.refs import BlobRefs
from packyard.store.touches import Touches

log = logging.getLogger("packyard.upstream")

ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    auth_env: str | None = None
    allow: tuple[tuple[str, ...], ...] = ()
    """The allow lists set from the namespace up to the one holding the upstream: each must match."""
    deny: tuple[str, ...] = ()
    """The deny globs set from the namespace up to the one holding the upstream: none may match."""
    auth_namespace: str | None = None
    """The namespace that sets the upstream and its ``upstream_auth_env``: the credential must be
    listed for it (``PACKYARD_CREDENTIAL_ENVS``), whichever descendant's index is served."""
    namespaces: tuple[str, ...] = ()
    """The namespace and all its ancestors: a name any of them holds is never taken from upstream,
    even where the namespace does not inherit its ancestors' files (``inherit: false``)."""

    def allows(self, project: str) -> bool:
        """Every allow list (if any) must match; no deny glob may. Globs on normalized names.

        A namespace's lists narrow what it inherits and never widen it, so a team can deny
        a name under its parent's upstream but cannot re-admit one its parent denies.
        """
        for globs in self.allow:
            if globs and not any(fnmatch.fnmatchcase(project, p) for p in globs):
                return False
        return not any(fnmatch.fnmatchcase(project, p) for p in self.deny)

    @property
    def key(self) -> str:
        """What cached pages and mirrored files are filed under: the URL and the credentials used.

        Without the credentials in the key, a namespace that names no ``upstream_auth_env`` (or
        another one) would be served, fresh or stale, what a namespace with credentials fetched.
        """
        return f"{self.url} auth={self.auth_env}" if self.auth_env else self.url

    def refused(self, url: str, status: int) -> RemoteFailed:
        """A 401/403 from the upstream, with what to do about it."""
        if not self.auth_env:
            hint = "it needs credentials: name a server environment variable holding them with upstream_auth_env"
        elif not os.environ.get(self.auth_env):
            hint = (
                f"it needs credentials, and the server has no environment variable {self.auth_env} (upstream_auth_env)"
            )
        else:
            hint = f"it refused the credentials in the environment variable {self.auth_env}"
        return RemoteFailed(f"the upstream answered {url} with {status}: {hint}")

    def auth(self, allowed: tuple[str, ...]) -> httpx.Auth | None:
        """Credentials from the environment variable the setting names: ``user:password`` or a token."""
        if not self.auth_env:
            return None
        try:
            allowed_env(
                self.auth_env, allowed, "upstream_auth_env", namespace=self.auth_namespace or self.namespaces[0]
            )
        except Forbidden as exc:
            raise RemoteFailed(exc.message) from exc
        value = os.environ.get(self.auth_env, "")
        if not value:
            return None
        user, sep, password = value.partition(":")
        return httpx.BasicAuth(user, password) if sep else httpx.BasicAuth("__token__", value)


def check_upstream_url(url: str, hosts: HostPolicy) -> str:
    """An upstream URL a namespace admin may set: http(s), no credentials, a host the operator allows.

    The host is resolved now for a clear 400; every connection is checked again when it is
    made (see ``store/egress.py``), since a name can resolve differently later.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"upstream {url!r} must be an http(s) URL of a simple index")
    if parts.username or parts.password:
        raise InvalidInput("put upstream credentials in an environment variable (upstream_auth_env), not in the URL")
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput(f"upstream {url!r} has an invalid port") from exc
    if not host:
        raise InvalidInput(f"upstream {url!r} names no host")
    try:
        hosts.resolve(host, port)
    except HostRefused as exc:
        # one answer for "private" and "does not resolve": a tenant learns nothing of internal DNS
        raise InvalidInput(
            f"upstream {url!r} is refused: its host must resolve to public addresses only, "
            f"unless the operator allows it ({ALLOW_HOSTS_SETTING})"
        ) from exc
    return url if url.endswith("/") else url + "/"


def upstream_of(namespaces: Namespaces, namespace: str) -> UpstreamConfig | None:
    """The nearest ancestor's upstream (an explicit empty ``upstream`` means none).

    Allow and deny lists count from every namespace on the way up to that ancestor, so a
    child's own ``upstream_deny`` applies under the upstream it inherits.
    """
    return upstream_walk(namespaces, namespace)[0]


def upstream_walk(namespaces: Namespaces, namespace: str) -> tuple[UpstreamConfig | None, dict]:
    """:func:`upstream_of`, and which namespace each part of it comes from.

    The second item is what ``ns show`` displays: ``upstream`` and ``upstream_auth_env`` as
    ``{"value", "from"}`` (``from`` None: no namespace sets one), ``upstream_allow`` and
    ``upstream_deny`` as ``[{"patterns", "from"}]`` — only the lists that count. One walk for
    both, so what is shown is what the index does.
    """
    allow: list[tuple[str, ...]] = []
    deny: list[str] = []
    origin: dict = {
        "upstream": {"value": None, "from": None},
        "upstream_auth_env": {"value": None, "from": None},
        "upstream_allow": [],
        "upstream_deny": [],
    }
    for ns in ancestors(namespace):
        settings = namespaces.settings_of(ns)
        if settings is None:
            continue
        if settings.get("upstream_allow"):
            allow.append(tuple(settings["upstream_allow"]))
            origin["upstream_allow"].append({"patterns": list(settings["upstream_allow"]), "from": ns})
        if settings.get("upstream_deny"):
            deny += settings["upstream_deny"]
            origin["upstream_deny"].append({"patterns": list(settings["upstream_deny"]), "from": ns})
        if "upstream" not in settings:
            continue
        url = settings["upstream"]
        origin["upstream"] = {"value": url or None, "from": ns}
        if not url:
            break
        origin["upstream_auth_env"] = {"value": settings.get("upstream_auth_env"), "from": ns}
        config = UpstreamConfig(
            url=url,
            auth_env=settings.get("upstream_auth_env"),
            auth_namespace=ns,
            allow=tuple(allow),
            deny=tuple(deny),
            namespaces=tuple(ancestors(namespace)),
        )
        return config, origin
    origin["upstream_allow"], origin["upstream_deny"] = [], []  # no upstream: no list applies
    return None, origin


@dataclass(frozen=True)
class UpstreamLimits:
    timeout: float = 30.0
    ttl: float = 600.0
    max_page_bytes: int = 20 * 1024 * 1024
    max_file_bytes: int | None = None
    credential_envs: tuple[str, ...] = ()
    """Environment variables an upstream_auth_env may name (see ``store/credentials.py``)."""
    hosts: HostPolicy = HostPolicy()
    """Which hosts upstream connections may reach (public ones, plus what the operator allows)."""


# -- parsing --------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[dict[str, str | None], str]] = []
        self.tags = 0
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag == "a":
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append((self._open, self._text.strip()))
            self._open = None


def _hash_attr(value: Any) -> str | None:
    """A PEP 658 metadata value: None (absent), "" (present, no hash) or a sha256."""
    if value is None or value is False or value == "false":
        return None
    if isinstance(value, dict):
        return value.get("sha256", "")
    if isinstance(value, str) and value.startswith("sha256="):
        return value[7:]
    return ""


def _yanked(value: Any) -> str | None:
    """PEP 691 ``yanked``: false, true or a reason -> None, "" or the reason."""
    if isinstance(value, str):
        return value
    return "" if value else None


def parse_page(body: bytes, content_type: str, page_url: str) -> list[dict]:
    """Upstream links as dicts: filename, url, sha256, requires_python, metadata, yanked, upload_time, size."""
    kind = content_type.split(";")[0].strip().lower()
    if kind.endswith("json"):
        try:
            data = json.loads(body)
            files = data["files"]
            if not isinstance(files, list):
                raise TypeError("files is not a list")
            return [
                {
                    "filename": f["filename"],
                    "url": urljoin(page_url, f["url"]),
                    "sha256": (f.get("hashes") or {}).get("sha256"),
                    "requires_python": f.get("requires-python"),
                    "metadata": _hash_attr(f.get("core-metadata", f.get("dist-info-metadata"))),
                    "yanked": (f["yanked"] or "")
                    if isinstance(f.get("yanked"), str)
                    else ("" if f.get("yanked") else None),
                    "upload_time": f.get("upload-time"),
                    "size": f.get("size"),
                }
                for f in files
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteFailed(f"the upstream page {page_url} is not valid PEP 691 JSON: {exc}") from exc
    if kind in ("text/html", "application/vnd.pypi.simple.v1+html", "application/xhtml+xml"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteFailed(f"the upstream page {page_url} is not valid UTF-8 HTML") from exc
        parser = _Links()
        parser.feed(text)
        parser.close()
        if parser.tags == 0:
            raise RemoteFailed(f"the upstream page {page_url} is not an HTML simple-index page")
        out = []
        for attrs, text_ in parser.links:
            href = attrs.get("href")
            if not href:
                continue
            url, _, fragment = urljoin(page_url, href).partition("#")
            sha256 = fragment[7:] if fragment.startswith("sha256=") else None
            yanked = attrs.get("data-yanked")
            out.append(
                {
                    "filename": text_ or unquote(url.rsplit("/", 1)[-1]),
                    "url": url,
                    "sha256": sha256,
                    "requires_python": attrs.get("data-requires-python"),
                    "metadata": _hash_attr(attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))),
                    "yanked": yanked if "data-yanked" in attrs else None,
                    "upload_time": None,
                    "size": None,
                }
            )
        return out
    raise RemoteFailed(f"the upstream answered {page_url} with {content_type or 'no content type'}, not HTML or JSON")


# -- fetching -------------------------------------------------------------------------------


class UpstreamFetcher:
    """HTTP to upstreams, with a timeout, a size cap and only http(s) redirects."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self.limits = limits
        self.http = httpx.Client(
            transport=CheckedTransport(limits.hosts),
            trust_env=False,
            follow_redirects=True,
            max_redirects=5,
            timeout=httpx.Timeout(limits.timeout),
            headers={"User-Agent": "packyard-upstream"},
        )

    def _fail(self, url: str, exc: Exception) -> RemoteFailed:
        """The answer's message names the URL asked for, never where a failure happened:
        the details (an address, a refused port) go to the server log."""
        if isinstance(exc, httpx.UnsupportedProtocol):
            return RemoteFailed(f"the upstream redirected {url} to a non-HTTP URL; refusing it")
        if isinstance(exc, httpx.TimeoutException):
            return RemoteFailed(f"the upstream did not answer {url} within {self.limits.timeout:g}s")
        if isinstance(exc, httpx.TooManyRedirects):
            return RemoteFailed(f"the upstream redirected {url} too many times")
        log.warning("upstream request for %s failed: %r", url, exc)
        return RemoteFailed(f"the upstream is unreachable for {url}")

    @staticmethod
    def _refused(url: str, exc: HostRefused) -> RemoteFailed:
        return RemoteFailed(f"the upstream request for {url} was refused: {exc.message}")

    def page(self, config: UpstreamConfig, project: str) -> list[dict] | None:
        """The upstream's links for ``project``; None when the upstream does not have it."""
        url = f"{config.url}{project}/"
        try:
            with self.http.stream(
                "GET", url, headers={"Accept": ACCEPT}, auth=config.auth(self.limits.credential_envs)
            ) as response:
                if response.status_code == 404:
                    return None
                if response.status_code in (401, 403):
                    raise config.refused(url, response.status_code)
                if response.status_code >= 400:
                    raise RemoteFailed(f"the upstream answered {url} with {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.limits.max_page_bytes:
                        raise RemoteFailed(
                            f"the upstream page {url} is larger than {self.limits.max_page_bytes} bytes; refusing it"
                        )
                final_url = str(response.url)
                content_type = response.headers.get("content-type", "")
        except HostRefused as exc:
            raise self._refused(url, exc) from exc
        except httpx.HTTPError as exc:
            raise self._fail(url, exc) from exc
        return parse_page(bytes(body), content_type, final_url)

    def download(self, url: str, config: UpstreamConfig, expected: str, blobs: BlobStore, refs: BlobRefs) -> StoredBlob:
        """Stream ``url`` into the blob store; keep it only if its sha256 is ``expected``."""
        try:
            with self.http.stream("GET", url, auth=config.auth(self.limits.credential_envs)) as response:
                if response.status_code in (401, 403):
                    raise config.refused(url, response.status_code)
                if response.status_code >= 400:
                    raise RemoteFailed(f"the upstream answered {url} with {response.status_code}")
                blob = blobs.put(_Reader(response.iter_bytes()), limit=self.limits.max_file_bytes)  # type: ignore[arg-type]
        except HostRefused as exc:
            raise self._refused(url, exc) from exc
        except httpx.HTTPError as exc:
            raise self._fail(url, exc) from exc
        except PackyardError as exc:
            if isinstance(exc, RemoteFailed | BackendUnavailable):  # our own storage failing is not the upstream's
                raise
            raise RemoteFailed(f"the upstream file {url} was refused: {exc.message}") from exc
        if blob.sha256 != expected:
            # the wrong bytes stay for the collector: another change may hold the same bytes
            raise RemoteFailed(
                f"the bytes of {url} do not match the upstream's sha256 ({expected}, got {blob.sha256}); not cached"
            )
        return blob


class _Reader:
    def __init__(self, chunks) -> None:  # noqa: ANN001 - an iterator of bytes
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return b""
        if n is None or n < 0 or n >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


# -- sources --------------------------------------------------------------------------------


def _index_file(link: dict, upstream: str) -> IndexFile | None:
    try:
        parsed = parse_installable(link["filename"])
    except InvalidInput:
        return None  # eggs, installers and other files neither pip nor uv would use
    if not link.get("sha256"):
        return None  # nothing to check the bytes against: never served
    # An sdist's metadata is passed on only for wheels: whether an sdist's PKG-INFO binds its
    # build (store.artifacts.reliable_metadata) cannot be known from the page, and an upstream
    # that advertises it for an old sdist would make resolvers drop its dependencies.
    metadata = link.get("metadata") if parsed.filetype == "bdist_wheel" else None
    return IndexFile(
        filename=link["filename"],
        namespace="",
        version=str(parsed.version),
        sha256=link["sha256"],
        size=link.get("size"),  # type: ignore[arg-type]
        requires_python=link.get("requires_python"),
        metadata_sha256=metadata,
        yanked=link.get("yanked"),
        upload_time=link.get("upload_time"),
        filetype=parsed.filetype,
        upstream_url=link["url"],
        upstream=upstream,
    )


class UpstreamSource:
    """One upstream index, re-served through packyard with a TTL cache and stale fallback."""

    def __init__(
        self,
        config: UpstreamConfig,
        fetcher: UpstreamFetcher,
        catalog: Catalog,
        blobs: BlobStore,
        refs: BlobRefs,
        touches: Touches | None = None,
    ) -> None:
        self.config = config
        self.fetcher = fetcher
        self.catalog = catalog
        self.blobs = blobs
        self.refs = refs
        self.touches = touches
        """Notes each request of a mirrored file (for retention's keep_mirrored_days)."""

    def projects(self) -> dict[str, str]:
        return {}  # an upstream's full project list (PyPI: 600k names) is never merged in

    def _links(self, project: str) -> tuple[list[dict] | None, str | None]:
        """(links, stale reason): fresh from cache, fetched, or a stale copy when the upstream fails."""
        cached = self.catalog.one(
            "SELECT page, fetched FROM upstream_pages WHERE upstream = ? AND project = ?", (self.config.key, project)
        )
        if cached is not None and time.time() - cached["fetched"] < self.fetcher.limits.ttl:
            return json.loads(cached["page"]), None
        try:
            links = self.fetcher.page(self.config, project)
        except RemoteFailed as exc:
            if cached is None:
                raise
            return json.loads(cached["page"]), exc.message
        if links is None:
            return None, None
        with self.catalog.write() as db:
            db.upsert(
                "upstream_pages",
                {"upstream": self.config.key, "project": project, "page": json.dumps(links), "fetched": time.time()},
                pk=("upstream", "project"),
            )
        return links, None

    def project(self, project: str) -> ProjectPage | None:
        links, stale = self._links(project)
        if links is None:
            return None
        files = [f for f in (_index_file(link, self.config.url) for link in links) if f is not None]
        page = ProjectPage(project, sorted(files, key=lambda f: f.filename), upstream=self.config.url, stale=stale)
        return page

    def file(self, filename: str) -> IndexFile | None:
        try:
            project = parse_installable(filename).project
        except InvalidInput:
            return None
        page = self.project(project)
        if page is None:
            return None
        return next((f for f in page.files if f.filename == filename), None)

    # -- mirroring ----------------------------------------------------------------------

    def _mirrored(self, filename: str) -> dict | None:
        return self.catalog.one(
            "SELECT * FROM upstream_files WHERE upstream = ? AND filename = ?", (self.config.key, filename)
        )

    def ensure_file(self, file: IndexFile) -> tuple[str, int]:
        """The stored blob of an upstream file, fetched and checked on first request."""
        row = self._mirrored(file.filename)
        if row and row["sha256"] and self.blobs.exists(row["sha256"]):
            if self.touches is not None:
                self.touches.mirrored(row["sha256"])
            return row["sha256"], row["size"]
        assert file.upstream_url is not None
        blob = self.fetcher.download(file.upstream_url, self.config, file.sha256, self.blobs, self.refs)
        self._record(file, sha256=blob.sha256, size=blob.size)
        return blob.sha256, blob.size

    def ensure_metadata(self, file: IndexFile) -> str:
        """The stored PEP 658 metadata of an upstream file (checked when the upstream gives a hash)."""
        row = self._mirrored(file.filename)
        if row and row["metadata_sha256"] and self.blobs.exists(row["metadata_sha256"]):
            return row["metadata_sha256"]
        if file.metadata_sha256 is None:
            raise RemoteFailed(f"the upstream offers no metadata file for {file.filename}")
        assert file.upstream_url is not None
        url = file.upstream_url + ".metadata"
        if file.metadata_sha256:
            blob = self.fetcher.download(url, self.config, file.metadata_sha256, self.blobs, self.refs)
        else:
            blob = self._unchecked(url)
        self._record(file, metadata_sha256=blob.sha256)
        return blob.sha256

    def _unchecked(self, url: str) -> StoredBlob:
        """Metadata the upstream offers without a hash: stored as fetched (it is never executed)."""
        try:
            with self.fetcher.http.stream(
                "GET", url, auth=self.config.auth(self.fetcher.limits.credential_envs)
            ) as response:
                if response.status_code in (401, 403):
                    raise self.config.refused(url, response.status_code)
                if response.status_code >= 400:
                    raise RemoteFailed(f"the upstream answered {url} with {response.status_code}")
                return self.blobs.put(_Reader(response.iter_bytes()), limit=1024 * 1024)  # type: ignore[arg-type]
        except HostRefused as exc:
            raise self.fetcher._refused(url, exc) from exc
        except httpx.HTTPError as exc:
            raise self.fetcher._fail(url, exc) from exc

    def _record(self, file: IndexFile, **fields: Any) -> None:
        with self.catalog.write() as db:
            existing = self._mirrored(file.filename) or {}
            db.upsert(
                "upstream_files",
                {
                    "upstream": self.config.key,
                    "filename": file.filename,
                    "url": file.upstream_url,
                    "sha256": existing.get("sha256"),
                    "size": existing.get("size"),
                    "metadata_sha256": existing.get("metadata_sha256"),
                    "fetched": now(),
                    **fields,
                },
                pk=("upstream", "filename"),
            )


class InternalFirst:
    """The dependency-confusion guard: a name the chain has is never looked up upstream."""

    def __init__(self, internal: Source, upstream: UpstreamSource) -> None:
        self.internal = internal
        self.upstream = upstream

    def projects(self) -> dict[str, str]:
        return self.internal.projects()

    def _held_above(self, project: str) -> bool:
        """Whether the namespace or any ancestor has the name: ``inherit: false`` hides files, not names."""
        return any(
            NamespaceSource(self.upstream.catalog, ns).project(project) is not None
            for ns in self.upstream.config.namespaces
        )

    def project(self, project: str) -> ProjectPage | None:
        found = self.internal.project(project)
        if found is not None or not self.upstream.config.allows(project) or self._held_above(project):
            return found
        return self.upstream.project(project)

    def file(self, filename: str) -> IndexFile | None:
        found = self.internal.file(filename)
        if found is not None:
            return found
        try:
            project = canonicalize_name(parse_installable(filename).project)
        except InvalidInput:
            return None
        if (
            self.internal.project(project) is not None
            or not self.upstream.config.allows(project)
            or self._held_above(project)
        ):
            return None
        return self.upstream.file(filename)
