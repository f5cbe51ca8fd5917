"""The build queue and its records, in the catalog.

A build is enqueued with a snapshot — the exact file revisions of the project folder at
that moment — and a key: the hash of the snapshot (paths and blob hashes), the settings
and the Python version. A key that already succeeded is the answer to a new request (the
earlier artifacts are the result) unless forced. Workers claim jobs with one conditional
update (``WHERE state = 'queued'``), so two workers — of any servers — never run one job; a
job whose worker stops sending heartbeats is failed, never left running. A running build's
log is appended to the catalog (any server can serve and follow it) and moved into a blob
when the build ends.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packyard.store.blobs.base import BlobStore
from packyard.store.catalog import Catalog, now
from packyard.store.errors import Conflict, InvalidInput, NotFound
from packyard.store.files import NamespaceFiles
from packyard.store.names import validate_namespace, validate_prefix

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
DONE = ("succeeded", "failed", "cancelled")
PROJECT_FILES = ("pyproject.toml", "setup.py")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class BuildSettings:
    timeout: int = 600
    index_url: str = "https://pypi.org/simple"
    installer: str = "auto"
    """``uv`` when available (``auto``), else pip; or forced ``uv``/``pip``."""

    def to_dict(self) -> dict:
        return {"timeout": self.timeout, "index_url": self.index_url, "installer": self.installer}


def _row(row: dict) -> dict:
    out = dict(row)
    for field in ("snapshot", "settings", "artifacts"):
        if out.get(field):
            out[field] = json.loads(out[field])
    out["cancel_requested"] = bool(out.get("cancel_requested"))
    return out


class Builds:
    def __init__(self, catalog: Catalog, files: NamespaceFiles) -> None:
        self.catalog = catalog
        self.files = files
        self.wakeup = threading.Event()
        """Set when a build is queued, so the embedded worker starts it at once instead of at
        its next poll (the poll stays as the fallback for workers in other processes)."""

    # -- enqueue ---------------------------------------------------------------------------

    def snapshot(self, namespace: str, path: str) -> list[dict]:
        """The project folder's current files: relative path, revision, sha256, size, origin."""
        folder = path.strip("/")
        heads = self.files.heads(namespace, folder)
        strip = len(folder) + 1 if folder else 0
        files = [
            {"path": p[strip:], "revision": h["revision"], "sha256": h["sha256"], "size": h["size"]}
            for p, h in sorted(heads.items())
        ]
        if not any(f["path"] in PROJECT_FILES for f in files):
            where = f"{namespace}:{folder or '/'}"
            if not files:
                raise NotFound(f"{where} holds no files; nothing to build")
            raise InvalidInput(f"{where} has no pyproject.toml or setup.py; point --path at a project folder")
        return files

    def project_folders(self, namespace: str, paths: list[str]) -> list[str]:
        """The project folders (holding pyproject.toml or setup.py) that contain ``paths``.

        Each path counts for its deepest enclosing project, so a monorepo of several
        packages rebuilds only the packages whose files changed.
        """
        heads = self.files.heads(namespace)
        projects = {p.rsplit("/", 1)[0] if "/" in p else "" for p in heads if p.rsplit("/", 1)[-1] in PROJECT_FILES}
        found: set[str] = set()
        for path in paths:
            parts = path.split("/")[:-1]
            for depth in range(len(parts), -1, -1):
                folder = "/".join(parts[:depth])
                if folder in projects:
                    found.add(folder)
                    break
        return sorted(found)

    def source_date_epoch(self, namespace: str, path: str, snapshot: list[dict]) -> int:
        """The synced commit's time when the source came from git, else the newest file's time."""
        folder = path.strip("/")
        prefix = f"{folder}/" if folder else ""
        latest = 0
        commits: set[str] = set()
        for f in snapshot:
            row = self.catalog.one(
                "SELECT created, origin FROM file_revisions WHERE namespace = ? AND path = ? AND revision = ?",
                (namespace, prefix + f["path"], f["revision"]),
            )
            if row is None:
                continue
            origin = row["origin"] or ""
            if origin.startswith("sync:"):
                commits.add(origin[5:])
            stamp = row["created"].replace("Z", "+00:00")
            latest = max(latest, int(datetime.fromisoformat(stamp).timestamp()))
        times = []
        for short in commits:
            found = self.catalog.one(
                "SELECT max(commit_time) AS t FROM sync_runs WHERE substr(commit_sha, 1, ?) = ?", (len(short), short)
            )
            if found and found["t"]:
                times.append(found["t"])
        return max(times) if times else latest

    def enqueue(
        self,
        namespace: str,
        path: str,
        publish_to: str,
        settings: BuildSettings,
        *,
        actor: str,
        token_id: str | None = None,
        force: bool = False,
    ) -> tuple[dict, bool]:
        """Queue a build (or return the earlier one for the same key). Returns (build, queued).

        ``token_id`` records whose authority it runs under; publishing checks it again.
        """
        validate_namespace(namespace)
        validate_namespace(publish_to)
        path = validate_prefix(path.strip("/"))
        snapshot = self.snapshot(namespace, path)
        material = {
            "files": [(f["path"], f["sha256"]) for f in snapshot],
            "settings": settings.to_dict(),
            "publish_to": publish_to,
            "python": PYTHON,
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        with self.catalog.write() as db:
            if not force:
                earlier = self.catalog.one(
                    "SELECT * FROM builds WHERE key = ? AND state IN ('succeeded', 'queued', 'running') "
                    "ORDER BY id DESC LIMIT 1",
                    (key,),
                )
                if earlier is not None:
                    return _row(earlier), False
            row = {
                "namespace": namespace,
                "path": path,
                "publish_to": publish_to,
                "key": key,
                "state": "queued",
                "snapshot": json.dumps(snapshot),
                "settings": json.dumps(settings.to_dict()),
                "source_date_epoch": self.source_date_epoch(namespace, path, snapshot),
                "python_version": PYTHON,
                "created": now(),
                "created_by": actor,
                "token_id": token_id,
                "cancel_requested": 0,
            }
            build_id = db.insert("builds", row, returning="id")
            self.catalog.audit(actor, "build.enqueue", namespace, json.dumps({"id": build_id}))
        build = self.get(build_id)  # as queued: read before the wake-up, which a worker may answer at once
        self.wakeup.set()
        return build, True

    # -- workers ---------------------------------------------------------------------------

    def claim(self, worker: str, stale_after: float = 120.0) -> dict | None:
        """Atomically take the oldest queued job (and fail jobs whose worker went silent)."""
        with self.catalog.write() as db:
            cutoff = time.time() - stale_after
            for lost in self.catalog.query(
                "SELECT id FROM builds WHERE state = 'running' AND heartbeat < ?", (cutoff,)
            ):
                self._finish(db, lost["id"], "failed", "the worker stopped sending heartbeats (crashed or killed)")
            row = self.catalog.one("SELECT id FROM builds WHERE state = 'queued' ORDER BY id LIMIT 1")
            if row is None:
                return None
            # conditional on the state, so exactly one claim wins even where two writers
            # could read the same queued row (every worker of every server claims here)
            taken = self.catalog.query(
                "UPDATE builds SET state = 'running', worker = ?, started = ?, heartbeat = ? "
                "WHERE id = ? AND state = 'queued' RETURNING id",
                (worker, now(), time.time(), row["id"]),
            )
            if not taken:
                return None
        return self.get(row["id"])

    def heartbeat(self, build_id: int, worker: str) -> bool:
        """Record that ``worker`` is alive; True when the build should be cancelled."""
        build = self._running(build_id, worker)
        with self.catalog.write() as db:
            db.update("builds", {"id": build_id}, {"heartbeat": time.time()})
        return build["cancel_requested"]

    def _running(self, build_id: int, worker: str) -> dict:
        build = self.get(build_id)
        if build["state"] != "running" or build["worker"] != worker:
            raise Conflict(f"build {build_id} is {build['state']} and not held by worker {worker!r}")
        return build

    def append_log(self, build_id: int, worker: str, data: bytes) -> None:
        """Add to a running build's log, in the catalog: any server can read and follow it."""
        if not data:
            return
        with self.catalog.write():
            self._running(build_id, worker)
            end = self._log_end(build_id)
            self.catalog.query(
                "INSERT INTO build_log_chunks (build_id, position, data, size) VALUES (?, ?, ?, ?)",
                (int(build_id), end, base64.b64encode(data).decode("ascii"), len(data)),
            )

    def _log_end(self, build_id: int) -> int:
        row = self.catalog.one(
            "SELECT coalesce(max(position + size), 0) AS n FROM build_log_chunks WHERE build_id = ?", (int(build_id),)
        )
        return int(row["n"]) if row else 0

    def spooled_log(self, build_id: int, offset: int = 0) -> tuple[bytes, int]:
        """The part of a running build's log from ``offset``, and the log's whole size so far."""
        rows = self.catalog.query(
            "SELECT position, size, data FROM build_log_chunks WHERE build_id = ? AND position + size > ? "
            "ORDER BY position",
            (int(build_id), max(offset, 0)),
        )
        if not rows:
            return b"", self._log_end(build_id)
        data = b"".join(base64.b64decode(row["data"]) for row in rows)
        return data[max(offset, 0) - rows[0]["position"] :], rows[-1]["position"] + rows[-1]["size"]

    def seal_log(self, build_id: int, blobs: BlobStore) -> None:
        """Move an ending build's log into one blob (and out of the catalog)."""
        data, _ = self.spooled_log(build_id)
        if not data:
            return
        blob = blobs.put(io.BytesIO(data))
        with self.catalog.write():
            self.catalog.query(
                "UPDATE builds SET log_sha256 = ?, log_size = ? WHERE id = ?", (blob.sha256, blob.size, int(build_id))
            )
            self.catalog.query("DELETE FROM build_log_chunks WHERE build_id = ?", (int(build_id),))

    def finish(
        self, build_id: int, worker: str, state: str, *, error: str | None = None, extra: dict[str, Any] | None = None
    ) -> dict:
        if state not in DONE:
            raise InvalidInput(f"a build ends as one of {', '.join(DONE)}")
        self._running(build_id, worker)
        with self.catalog.write() as db:
            self._finish(db, build_id, state, error, extra)
        return self.get(build_id)

    def _finish(self, db: Any, build_id: int, state: str, error: str | None, extra: dict | None = None) -> None:
        update: dict[str, Any] = {"state": state, "finished": now(), "error": error, **(extra or {})}
        for field in ("artifacts",):
            if field in update and not isinstance(update[field], str):
                update[field] = json.dumps(update[field])
        db.update("builds", {"id": build_id}, update)

    # -- users -----------------------------------------------------------------------------

    def cancel(self, build_id: int, actor: str) -> dict:
        with self.catalog.write() as db:
            build = self.get(build_id)
            if build["state"] == "queued":
                self._finish(db, build_id, "cancelled", f"cancelled by {actor} before it started")
            elif build["state"] == "running":
                db.update("builds", {"id": build_id}, {"cancel_requested": 1})
            else:
                raise Conflict(f"build {build_id} already {build['state']}")
            self.catalog.audit(actor, "build.cancel", build["namespace"], json.dumps({"id": build_id}))
        return self.get(build_id)

    def get(self, build_id: int) -> dict:
        row = self.catalog.one("SELECT * FROM builds WHERE id = ?", (int(build_id),))
        if row is None:
            raise NotFound(f"no build {build_id}")
        return _row(row)

    def list(self, namespace: str | None = None, limit: int = 100, *, within: str | None = None) -> list[dict]:
        """Builds from or into ``namespace`` (all when None), newest first; with ``within`` (a
        token scope) only those whose source namespace lies inside it."""
        where, params = [], []
        if namespace:
            validate_namespace(namespace)
            where.append("(namespace = ? OR publish_to = ?)")
            params += [namespace, namespace]
        if within and within != "*":
            where.append("(namespace = ? OR substr(namespace, 1, ?) = ?)")
            params += [within, len(within) + 1, within + "."]
        sql = "SELECT * FROM builds" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.catalog.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_row(r) for r in rows]
