"""Simple-index pages as bytes: PEP 503 HTML and PEP 691 JSON, with PEP 592/658/700/714 fields.

Pages are rendered once per change and cached as bytes (see ``cache.py``), so this code is
off the hot path; it favours being obviously right over being fast. Links are relative
(``../../dists/...``) so the index works behind a reverse proxy under any prefix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from packyard.store.index import IndexFile, ProjectPage, normalize

API_VERSION = "1.1"


@dataclass(frozen=True)
class Page:
    body: bytes
    etag: str
    stale: str | None = None
    """Why this upstream page is served from cache past its TTL (sent as a response header)."""
    upstream: bool = False


def page(body: bytes, project: ProjectPage | None = None) -> Page:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if project is None:
        return Page(body, etag)
    return Page(body, etag, stale=project.stale, upstream=project.upstream is not None)


def _href(f: IndexFile) -> str:
    return f"../../dists/{quote(f.filename)}"


def project_html(project: ProjectPage) -> Page:
    title = escape(project.name)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        f'<head><meta name="pypi:repository-version" content="{API_VERSION}"><title>Links for {title}</title></head>',
        "<body>",
        f"<h1>Links for {title}</h1>",
    ]
    for f in project.files:
        attrs = [f'href="{escape(_href(f))}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        if f.metadata_sha256 is not None:
            value = f"sha256={f.metadata_sha256}" if f.metadata_sha256 else "true"
            attrs.append(f'data-dist-info-metadata="{value}"')
            attrs.append(f'data-core-metadata="{value}"')
        if f.yanked is not None:
            attrs.append(f'data-yanked="{escape(f.yanked)}"')
        lines.append(f"<a {' '.join(attrs)}>{escape(f.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return page("\n".join(lines).encode(), project)


def project_json(project: ProjectPage) -> Page:
    files = []
    for f in project.files:
        entry: dict = {
            "filename": f.filename,
            "url": _href(f),
            "hashes": {"sha256": f.sha256},
            "yanked": (f.yanked or True) if f.yanked is not None else False,
        }
        if f.size is not None:
            entry["size"] = f.size
        if f.upload_time:
            entry["upload-time"] = f.upload_time
        if f.requires_python:
            entry["requires-python"] = f.requires_python
        if f.metadata_sha256 is not None:
            value = {"sha256": f.metadata_sha256} if f.metadata_sha256 else True
            entry["core-metadata"] = value
            entry["dist-info-metadata"] = value
        files.append(entry)
    # PEP 691: the project's normalized name (the HTML title keeps the display name)
    body = {
        "meta": {"api-version": API_VERSION},
        "name": normalize(project.name),
        "versions": project.versions,
        "files": files,
    }
    return page(json.dumps(body, separators=(",", ":")).encode(), project)


def root_html(projects: dict[str, str]) -> Page:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        f'<head><meta name="pypi:repository-version" content="{API_VERSION}"><title>Simple index</title></head>',
        "<body>",
    ]
    for normalized in sorted(projects):
        lines.append(f'<a href="{quote(normalized)}/">{escape(projects[normalized])}</a><br>')
    lines += ["</body>", "</html>", ""]
    return page("\n".join(lines).encode())


def root_json(projects: dict[str, str]) -> Page:
    body = {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": projects[normalized]} for normalized in sorted(projects)],
    }
    return page(json.dumps(body, separators=(",", ":")).encode())
