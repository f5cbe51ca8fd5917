"""Read-only, paginated views of the catalog for the web UI.

Every list here takes an offset and a limit, so a page costs the same with ten files or a
hundred thousand distributions. Nothing here checks rights: the caller (``packyard/ui``)
passes only namespaces the viewer may read.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict

from packaging.version import InvalidVersion, Version
from packyard.store.catalog import Catalog
from packyard.store.generations import Generations

PAGE = 100


@functools.lru_cache(maxsize=65536)
def _sort_key(version: str) -> tuple:
    """PEP 440 order, parsed once per distinct version string (a page sorts thousands)."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


class Row(dict):
    """A catalog row whose fields read as attributes too: templates look fields up by
    attribute first, and a plain dict makes each of those lookups raise and catch."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def latest(versions: list[str]) -> str | None:
    return max(versions, key=_sort_key) if versions else None


def sort_versions(versions: set[str] | list[str]) -> list[str]:
    """Newest first, by PEP 440 ordering."""
    return sorted(versions, key=_sort_key, reverse=True)


def _in(names: list[str]) -> str:
    return ",".join("?" * len(names))


class _RowCatalog:
    """The catalog's read calls, answering :class:`Row` objects."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def query(self, sql: str, params: tuple | dict = ()) -> list[Row]:
        return [Row(row) for row in self.catalog.query(sql, params)]

    def one(self, sql: str, params: tuple | dict = ()) -> Row | None:
        row = self.catalog.one(sql, params)
        return Row(row) if row is not None else None


class Browse:
    def __init__(self, catalog: Catalog, generations: Generations | None = None) -> None:
        self.catalog = _RowCatalog(catalog)
        self.generations = generations or Generations(catalog)
        self._projects: dict[str, tuple[tuple[int, ...], list[str]]] = {}

    def project_names(self, namespace: str) -> list[str]:
        """The namespace's own project names, sorted: kept per change generation (exact, like
        the index's page cache), so paging and counting 100,000 rows is not redone per page."""
        stamp = self.generations.stamp([namespace])
        cached = self._projects.get(namespace)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        names = [
            r["project"]
            for r in self.catalog.query(
                "SELECT DISTINCT project FROM dists WHERE namespace = ? ORDER BY project", (namespace,)
            )
        ]
        self._projects[namespace] = (stamp, names)
        return names

    # -- home ------------------------------------------------------------------------------

    def counts(self, names: list[str]) -> dict[str, dict[str, int]]:
        """Files, projects and builds per namespace, for the home page tree."""
        out: dict[str, dict[str, int]] = {n: {"files": 0, "projects": 0, "builds": 0} for n in names}
        if not names:
            return out
        queries = {
            "files": "SELECT namespace AS ns, count(*) AS n FROM file_heads WHERE deleted = 0 AND namespace IN ({}) "
            "GROUP BY namespace",
            "builds": "SELECT namespace AS ns, count(*) AS n FROM builds WHERE namespace IN ({}) GROUP BY namespace",
        }
        for key, sql in queries.items():
            for row in self.catalog.query(sql.format(_in(names)), tuple(names)):
                out[row["ns"]][key] = row["n"]
        for name in names:
            out[name]["projects"] = len(self.project_names(name))
        return out

    def search(self, query: str, namespaces: list[str], limit: int = 50) -> dict[str, list[dict]]:
        """Namespaces, file paths and project names containing ``query`` (case-insensitive)."""
        needle = query.lower()
        found: dict[str, list[dict]] = {"namespaces": [], "paths": [], "projects": []}
        if not needle or not namespaces:
            return found
        found["namespaces"] = [{"namespace": n} for n in namespaces if needle in n][:limit]
        marks = _in(namespaces)
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found["paths"] = self.catalog.query(
            f"SELECT namespace, path FROM file_heads WHERE deleted = 0 AND namespace IN ({marks}) "
            "AND lower(path) LIKE ? ESCAPE '\\' ORDER BY namespace, path LIMIT ?",
            (*namespaces, pattern, limit),
        )
        wanted = needle.replace("_", "-").replace(".", "-")
        for ns in namespaces:
            for project in self.project_names(ns):
                if wanted in project and len(found["projects"]) < limit:
                    found["projects"].append({"namespace": ns, "project": project})
        return found

    # -- files -----------------------------------------------------------------------------

    def folder(self, namespace: str, prefix: str, after: str = "", limit: int = PAGE) -> dict:
        """One folder level in name order, folders and files mixed, from the entry ``after``:
        a page of at most ``limit`` entries and the cursor of the next page (None at the end).

        It walks the (namespace, path) key and jumps over each subfolder in one seek, so a
        page costs the same in a folder of ten files or of a hundred thousand.
        """
        entries: list[dict] = []
        # the least path past ``after``: a folder is skipped whole ('0' sorts right after '/');
        # past a file is ``> path`` (PostgreSQL text cannot hold the NUL of ``>= path + "\0"``)
        cursor, past = prefix, ">="
        if after:
            cursor, past = (prefix + after[:-1] + "0", ">=") if after.endswith("/") else (prefix + after, ">")
        while len(entries) <= limit:  # one more than a page: is there a next one?
            row = self.catalog.one(
                "SELECT h.path, h.revision, h.size, h.updated, h.sha256, r.author, r.origin FROM file_heads h "
                "LEFT JOIN file_revisions r ON r.namespace = h.namespace AND r.path = h.path "
                f"AND r.revision = h.revision WHERE h.namespace = ? AND h.path {past} ? AND h.deleted = 0 "
                "ORDER BY h.path LIMIT 1",
                (namespace, cursor),
            )
            if row is None or not row["path"].startswith(prefix):
                return {"entries": entries, "next": None}
            rest = row["path"][len(prefix) :]
            if "/" in rest:
                name = rest.split("/", 1)[0] + "/"
                entries.append(Row(folder=name))
                cursor, past = prefix + name[:-1] + "0", ">="
            else:
                entries.append(Row(file=row, name=rest, folder=None))
                cursor, past = row["path"], ">"
        entries.pop()
        last = entries[-1]
        return {"entries": entries, "next": last.get("folder") or last["name"]}

    def revision_origin(self, namespace: str, path: str, revision: int) -> dict | None:
        return self.catalog.one(
            "SELECT * FROM file_revisions WHERE namespace = ? AND path = ? AND revision = ?",
            (namespace, path, revision),
        )

    # -- packages --------------------------------------------------------------------------

    def projects(self, chain: list[str], offset: int = 0, limit: int = PAGE) -> tuple[list[dict], int]:
        """A page of the projects the chain's index lists, each with the nearest namespace
        holding it, its latest version and file count there."""
        home: dict[str, str] = {}
        for ns in reversed(chain):  # nearest last, so it wins
            for project in self.project_names(ns):
                home[project] = ns
        everything = sorted(home) if len(chain) > 1 else self.project_names(chain[0])
        total = len(everything)
        page = everything[offset : offset + limit]
        rows: dict[str, list[dict]] = defaultdict(list)
        for ns in {home[name] for name in page}:
            names = [name for name in page if home[name] == ns]
            for row in self.catalog.query(
                f"SELECT project, version, summary FROM dists WHERE namespace = ? AND project IN ({_in(names)})",
                (ns, *names),
            ):
                rows[row["project"]].append(row)
        out = []
        for name in page:
            held = rows[name]
            version = latest(list({r["version"] for r in held}))
            summary = next((r["summary"] for r in held if r["version"] == version), None)
            out.append(Row(project=name, namespace=home[name], latest=version, files=len(held), summary=summary))
        return out, total

    def project_files(self, chain: list[str], project: str) -> list[dict]:
        """Every file of ``project`` in the nearest namespace of the chain that holds it."""
        for ns in chain:
            # sorted here: ORDER BY filename would make SQLite walk the primary key of the whole namespace
            rows = self.catalog.query("SELECT * FROM dists WHERE namespace = ? AND project = ?", (ns, project))
            if rows:
                return sorted(rows, key=lambda r: r["filename"])
        return []

    def used_by(self, sha256: str, namespaces: list[str], limit: int = 50) -> list[Row]:
        """Shared resolutions (task-run locks) in ``namespaces`` whose lock pins this file.

        The locks packyard's run client shares are hashed (``--hash=sha256:...``), so the
        file's sha256 in the lock text is the file itself, whatever its name.
        """
        if not namespaces:
            return []
        # keys first, from the index alone: reading a resolution's later columns means reading
        # through its lock, so only the page's rows are read
        keys = self.catalog.query(
            f"SELECT namespace, key FROM resolution_files WHERE sha256 = ? AND namespace IN ({_in(namespaces)}) "
            "ORDER BY namespace, key LIMIT ?",
            (sha256, *namespaces, limit),
        )
        return [
            self.catalog.one(
                "SELECT namespace, key, requirements, python, platform, created, created_by FROM resolutions "
                "WHERE namespace = ? AND key = ?",
                (k["namespace"], k["key"]),
            )
            for k in keys
        ]

    # -- builds and syncs ------------------------------------------------------------------

    def builds(self, namespace: str, offset: int = 0, limit: int = PAGE) -> tuple[list[dict], int]:
        total = self.catalog.one(
            "SELECT count(*) AS n FROM builds WHERE namespace = ? OR publish_to = ?", (namespace, namespace)
        )["n"]
        rows = self.catalog.query(
            "SELECT id, namespace, path, publish_to, state, created, created_by, started, finished, error, artifacts "
            "FROM builds WHERE namespace = ? OR publish_to = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (namespace, namespace, limit, offset),
        )
        for row in rows:
            row["artifacts"] = json.loads(row["artifacts"]) if row["artifacts"] else []
        return rows, total

    def dists_of_build(self, build_id: int) -> list[dict]:
        return self.catalog.query(
            "SELECT namespace, filename, project, version, sha256, size FROM dists WHERE uploader = ?",
            (f"build:{int(build_id)}",),
        )

    def commit_of(self, namespace: str, origin: str | None) -> dict | None:
        """The sync run that wrote a revision whose origin is ``sync:<short sha>``."""
        if not origin or not origin.startswith("sync:"):
            return None
        short = origin[5:]
        return self.catalog.one(
            "SELECT id, sync, url, ref, commit_sha, commit_time, started FROM sync_runs "
            "WHERE namespace = ? AND substr(commit_sha, 1, ?) = ? AND dry_run = 0 ORDER BY id DESC LIMIT 1",
            (namespace, len(short), short),
        )

    def commit_runs(self, namespace: str, sha: str) -> list[dict]:
        return self.catalog.query(
            "SELECT * FROM sync_runs WHERE namespace = ? AND substr(commit_sha, 1, ?) = ? ORDER BY id DESC LIMIT 50",
            (namespace, len(sha), sha),
        )

    def commit_revisions(self, namespace: str, sha: str, limit: int = 200) -> tuple[list[Row], int]:
        """The file revisions a sync of commit ``sha`` wrote into ``namespace`` (its plan, as
        applied): the first ``limit`` by path, and how many there are."""
        origin = f"sync:{sha[:12]}"
        total = self.catalog.one(
            "SELECT count(*) AS n FROM file_revisions WHERE namespace = ? AND origin = ?", (namespace, origin)
        )["n"]
        rows = self.catalog.query(
            "SELECT path, revision, deleted, size, created FROM file_revisions WHERE namespace = ? AND origin = ? "
            "ORDER BY path LIMIT ?",
            (namespace, origin, limit),
        )
        return rows, total

    def builds_of_revisions(self, namespace: str, sha: str, since: str = "", scan: int = 500) -> list[Row]:
        """Builds of ``namespace`` whose source snapshot holds a revision that a sync of commit
        ``sha`` wrote: of those queued at or after ``since`` (the commit's first sync), the
        ``scan`` oldest. Each snapshot file is looked up by its unique (path, revision) key,
        so a commit of ten thousand files costs what its builds' sources cost."""
        origin = f"sync:{sha[:12]}"
        found = []
        for row in self.catalog.query(
            "SELECT id, path, publish_to, state, created, snapshot FROM builds WHERE namespace = ? AND created >= ? "
            "ORDER BY id LIMIT ?",
            (namespace, since, scan),
        ):
            prefix = f"{row['path']}/" if row["path"] else ""
            for f in json.loads(row.pop("snapshot")):
                hit = self.catalog.one(
                    "SELECT 1 AS hit FROM file_revisions "
                    "WHERE namespace = ? AND path = ? AND revision = ? AND origin = ?",
                    (namespace, prefix + f["path"], f["revision"], origin),
                )
                if hit:
                    found.append(row)
                    break
        return found

    def syncs(self, namespace: str) -> list[dict]:
        return self.catalog.query("SELECT name FROM syncs WHERE namespace = ? ORDER BY name", (namespace,))

    def sync_runs(self, name: str, offset: int = 0, limit: int = PAGE) -> list[dict]:
        return self.catalog.query(
            "SELECT * FROM sync_runs WHERE sync = ? ORDER BY id DESC LIMIT ? OFFSET ?", (name, limit, offset)
        )

    def sync_run(self, run_id: int) -> dict | None:
        return self.catalog.one("SELECT * FROM sync_runs WHERE id = ?", (int(run_id),))
