"""``packyard pull`` and ``packyard fetch``: namespace files and distributions into a folder."""

from __future__ import annotations

import fnmatch
import platform
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from packyard.client import Client, qns, qpath
from packyard.runs.transfer import download, inside, sha256_of
from packyard.store.artifacts import SDIST_SUFFIXES, parse_installable
from packyard.store.errors import InvalidInput, NotFound
from packyard.store.names import ancestors, validate_namespace

JSON = "application/vnd.pypi.simple.v1+json"
PROJECT = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", re.IGNORECASE)
"""A valid project name (PEP 508): nothing that could change the index URL it is put in."""


def plan_pull(
    client: Client, ns: str, *, prefix: str = "", include: list[str] | None = None,
    exclude: list[str] | None = None, with_parents: bool = False,
) -> dict[str, tuple[str, dict]]:  # fmt: skip
    """path -> (namespace it comes from, file entry); nearer namespaces win a path."""
    chosen: dict[str, tuple[str, dict]] = {}
    chain = list(reversed(ancestors(validate_namespace(ns)))) if with_parents else [ns]
    for namespace in chain:  # farthest first, so nearer ones overwrite
        try:
            files = client.list_files(namespace, prefix)
        except NotFound:
            if namespace != ns:
                continue
            raise
        for f in files:
            path = f["path"]
            if include and not any(fnmatch.fnmatchcase(path, g) for g in include):
                continue
            if exclude and any(fnmatch.fnmatchcase(path, g) for g in exclude):
                continue
            chosen[path] = (namespace, f)
    return chosen


def pull(
    client: Client, ns: str, dest: Path, *, prefix: str = "", include: list[str] | None = None,
    exclude: list[str] | None = None, with_parents: bool = False, workers: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:  # fmt: skip
    """Download the chosen files in parallel; files whose sha256 already matches are skipped."""
    plan = plan_pull(client, ns, prefix=prefix, include=include, exclude=exclude, with_parents=with_parents)
    dest.mkdir(parents=True, exist_ok=True)
    targets = {path: inside(dest, path) for path in plan}  # refuse before writing anything
    counts = {"downloaded": 0, "unchanged": 0}

    def one(path: str) -> str:
        namespace, entry = plan[path]
        target = targets[path]
        if sha256_of(target) == entry["sha256"]:
            return "unchanged"
        url = f"/api/v1/namespaces/{qns(namespace)}/files/{qpath(path)}"
        download(client, url, target, entry["sha256"], params={"revision": entry["revision"]})
        return "downloaded"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in pool.map(one, sorted(plan)):
            counts[outcome] += 1
            if progress:
                progress(1)
    return counts


def is_filename(name: str) -> bool:
    """A distribution filename (``etl-0.1.0.tar.gz``), as opposed to a project name (``etl``)."""
    return name.lower().endswith((".whl", *SDIST_SUFFIXES))


def _installable(entry: dict, kind: str | None, tags: dict[Tag, int]) -> tuple[Version, int] | None:
    """(version, preference) of a file this interpreter can install, lower preference first,
    or None: yanked, another kind, a wheel for other tags, or Requires-Python that excludes us."""
    if entry.get("yanked"):
        return None
    filename = entry["filename"]
    try:
        if filename.endswith(".whl"):
            _, version, _, file_tags = parse_wheel_filename(filename)
            ranks = [tags[t] for t in file_tags if t in tags]
            if kind == "sdist" or not ranks:
                return None
            rank = min(ranks)
        else:
            _, version = parse_sdist_filename(filename)
            if kind == "wheel":
                return None
            rank = len(tags)  # an sdist only when no wheel of that version fits
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None  # not a format pip and uv both install from an index
    requires = entry.get("requires-python")
    if requires:
        try:
            if not SpecifierSet(requires).contains(platform.python_version(), prereleases=True):
                return None
        except InvalidSpecifier:
            return None  # pip skips a file whose Requires-Python it cannot read
    return version, rank


def newest(page: dict, project: str, ns: str, version: str | None, kind: str | None) -> dict:
    """The file of ``project`` that ``pip download --no-deps`` would pick for this interpreter:
    the newest installable version (final releases before pre-releases, unless ``version``
    is given), its best-tagged wheel, else its sdist. Yanked files are skipped."""
    tags = {tag: i for i, tag in enumerate(sys_tags())}
    wanted = Version(version) if version else None
    found = []
    for entry in page["files"]:
        fit = _installable(entry, kind, tags)
        if fit is not None and (wanted is None or fit[0] == wanted):
            found.append((fit, entry))
    if not found:
        what = {"sdist": "sdist", "wheel": "wheel"}.get(kind or "", "sdist or wheel")
        at = f" {version}" if version else ""
        raise NotFound(f"no installable {what} of {project}{at} for this Python in the index of {ns}")
    finals = [f for f in found if not f[0][0].is_prerelease] or found
    best_version = max(v for (v, _), _ in finals)
    return min((f for f in finals if f[0][0] == best_version), key=lambda f: f[0][1])[1]


def fetch(
    client: Client, ns: str, names: list[str], dest: Path, *, version: str | None = None, kind: str | None = None
) -> list[Path]:
    """Distribution files, resolved through the namespace's index and hash-checked: each name
    is a filename, or a project name for its newest file this interpreter can install."""
    validate_namespace(ns)
    if version is not None:
        try:
            Version(version)
        except InvalidVersion as exc:
            raise InvalidInput(f"--version {version!r} is not a version") from exc
    out = []
    for name in names:
        by_filename = is_filename(name)
        if not by_filename and not PROJECT.fullmatch(name):
            raise InvalidInput(f"{name!r} is neither a distribution filename nor a project name")
        project = canonicalize_name(parse_installable(name).project if by_filename else name)
        page = client.json("GET", f"/{qns(ns)}/simple/{project}/", headers={"Accept": JSON})
        if by_filename and (version is not None or kind is not None):
            raise InvalidInput(f"--version, --sdist and --wheel choose among a project's files, not {name!r}")
        if by_filename:
            entry = next((f for f in page["files"] if f["filename"] == name), None)
            if entry is None:
                raise NotFound(f"{name} is not in the index of {ns}")
        else:
            entry = newest(page, project, ns, version, kind)
        filename = entry["filename"]
        target = inside(dest, filename)
        if sha256_of(target) != entry["hashes"]["sha256"]:
            download(client, f"/{qns(ns)}/dists/{filename}", target, entry["hashes"]["sha256"])
        out.append(target)
    return out
