"""``packyard pull`` and ``packyard fetch``: namespace files and distributions into a folder."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import canonicalize_name

from packyard.client import Client, qns, qpath
from packyard.runs.transfer import download, inside, sha256_of
from store.artifacts import parse_filename
from store.errors import NotFound
from store.names import ancestors, validate_namespace

JSON = "application/vnd.pypi.simple.v1+json"


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


def fetch(client: Client, ns: str, filenames: list[str], dest: Path) -> list[Path]:
    """Distribution files by name, resolved through the namespace's index and hash-checked."""
    validate_namespace(ns)
    out = []
    for filename in filenames:
        project = canonicalize_name(parse_filename(filename).project)
        page = client.json("GET", f"/{qns(ns)}/simple/{project}/", headers={"Accept": JSON})
        entry = next((f for f in page["files"] if f["filename"] == filename), None)
        if entry is None:
            raise NotFound(f"{filename} is not in the index of {ns}")
        target = inside(dest, filename)
        if sha256_of(target) != entry["hashes"]["sha256"]:
            download(client, f"/{qns(ns)}/dists/{filename}", target, entry["hashes"]["sha256"])
        out.append(target)
    return out
