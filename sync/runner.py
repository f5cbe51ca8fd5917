"""Running syncs: fetch, plan, store blobs, then one catalog transaction — and the history.

A real run stores the blobs of added and updated files first and then applies every
change with ``NamespaceFiles.apply`` in one transaction, so a reader (or a sync killed half
way) sees the namespace before or after, never between. Each run, dry or real, failed or
not, is recorded in ``sync_runs``; its error text has already been redacted.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from packyard.store.catalog import now
from packyard.store.core import Store
from packyard.store.errors import PackyardError
from packyard.store.files import Change
from packyard.store.names import validate_namespace
from packyard.sync.credentials import git_auth, redact_url
from packyard.sync.mirror import Mirror, Mirrors
from packyard.sync.plan import Plan, PlanEntry, RepoFile, check_sizes, deletions, list_tree
from packyard.sync.remote import RemotePolicy
from packyard.sync.spec import SyncSpec


@dataclass
class SyncResult:
    namespace: str
    url: str
    ref: str
    commit: str
    dry_run: bool
    counts: dict[str, int]
    entries: list[dict]
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0
    run_id: int | None = None
    blobs_written: int = 0
    commit_time: int | None = None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class _GitBlobReader:
    """A git object as a file-like stream (``cat-file --batch`` under the hood)."""

    def __init__(self, mirror: Mirror, sha: str) -> None:
        self._stream = mirror.repo.odb.stream(bytes.fromhex(sha))

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n if n and n > 0 else self._stream.size)


class Syncer:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        *,
        secrets_dir: Path | None = None,
        credential_envs: tuple[str, ...] = (),
        local_roots: str = "",
        allow_hosts: str = "",
    ) -> None:
        self.store = store
        self.mirrors = Mirrors(Path(data_dir) / "mirrors")
        self.policy = RemotePolicy.of(local_roots, data_dir, secrets_dir, allow_hosts=allow_hosts)
        """Which remotes syncs and pushes may reach (server-local folders only if listed)."""
        self.secrets_dir = secrets_dir
        self.credential_envs = credential_envs

    def run(
        self, namespace: str, spec: SyncSpec, *, dry_run: bool, actor: str, sync_name: str | None = None
    ) -> SyncResult:
        validate_namespace(namespace)
        started, clock = now(), time.monotonic()
        shown = redact_url(spec.url)
        try:
            result = self._run(namespace, spec, dry_run=dry_run, actor=actor)
        except PackyardError as exc:
            self._record(
                sync_name, namespace, shown, spec.ref, None, None, dry_run, {}, started, clock, exc.message, actor
            )
            raise
        result.duration = round(time.monotonic() - clock, 3)
        result.run_id = self._record(
            sync_name,
            namespace,
            shown,
            result.ref,
            result.commit,
            result.commit_time,
            dry_run,
            result.counts,
            started,
            clock,
            None,
            actor,
        )
        return result

    def refuse(
        self, namespace: str, spec: SyncSpec, exc: PackyardError, *, dry_run: bool, actor: str, sync_name: str
    ) -> None:
        """Record a run that was stopped before it started (its authority no longer holds)."""
        started, clock = now(), time.monotonic()
        self._record(
            sync_name,
            namespace,
            redact_url(spec.url),
            spec.ref,
            None,
            None,
            dry_run,
            {},
            started,
            clock,
            exc.message,
            actor,
        )

    def _run(self, namespace: str, spec: SyncSpec, *, dry_run: bool, actor: str) -> SyncResult:
        target, protocols, config = self.policy.check(spec.url)
        with (
            git_auth(
                target, spec.credential, self.secrets_dir, self.credential_envs, protocols, config, namespace=namespace
            ) as (url, auth),
            self.mirrors.open(url, auth) as mirror,
        ):
            ref, commit = mirror.resolve(spec.ref)
            commit_time = int(mirror.repo.commit(commit).committed_date)
            files, skipped, warnings, selector = list_tree(mirror, commit, spec)
            check_sizes(files, self.store.files.max_upload_bytes)
            heads = self.store.files.heads(namespace, spec.prefix) if self.store.namespaces.exists(namespace) else {}
            plan = Plan(ref, commit, warnings=warnings)
            changes: list[Change] = []
            written: list[str] = []
            # blobs stored before a failure stay for the collector (store/refs.py says why)
            for f in files:
                entry, change, created = self._classify(mirror, f, heads.get(f.path), dry_run)
                plan.entries.append(entry)
                if change is not None:
                    changes.append(change)
                if created:
                    written.append(created)
            removed = deletions(spec, heads, {f.path for f in files} | {s.path for s in skipped}, selector)
            plan.entries += removed + skipped
            changes += [Change(entry.path, None) for entry in removed]
            if not dry_run and changes:
                self.store.files.apply(namespace, changes, author=actor, origin=f"sync:{commit[:12]}")
        plan.entries.sort(key=lambda e: e.path)
        return SyncResult(
            namespace=namespace,
            url=redact_url(spec.url),
            ref=ref,
            commit=commit,
            dry_run=dry_run,
            counts=plan.counts(),
            entries=[e.to_dict() for e in plan.entries],
            warnings=plan.warnings,
            blobs_written=len(written),
            commit_time=commit_time,
        )

    def _classify(
        self, mirror: Mirror, f: RepoFile, head: dict | None, dry_run: bool
    ) -> tuple[PlanEntry, Change | None, str | None]:
        """Plan one repository file; in a real run, store its blob when it changed."""
        if head is not None and head["git_blob"] == f.git_blob:
            return PlanEntry(f.path, "unchanged", f.size, f.git_blob), None, None
        created = None
        if dry_run:
            digest = hashlib.sha256()
            reader = _GitBlobReader(mirror, f.git_blob)
            while chunk := reader.read(1024 * 1024):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        else:
            blob = self.store.blobs.put(_GitBlobReader(mirror, f.git_blob))  # type: ignore[arg-type]
            sha256 = blob.sha256
            created = sha256 if blob.created else None
        status = "added" if head is None else "unchanged" if head["sha256"] == sha256 else "updated"
        # unchanged-but-unknown git id: record it so the next sync skips the hashing
        return PlanEntry(f.path, status, f.size, f.git_blob), Change(f.path, sha256, f.size, f.git_blob), created

    def _record(
        self,
        sync_name: str | None,
        namespace: str,
        url: str,
        ref: str | None,
        commit: str | None,
        commit_time: int | None,
        dry_run: bool,
        counts: dict[str, int],
        started: str,
        clock: float,
        error: str | None,
        actor: str,
    ) -> int:
        row = {
            "sync": sync_name,
            "namespace": namespace,
            "url": url,
            "ref": ref,
            "commit_sha": commit,
            "commit_time": commit_time,
            "dry_run": int(dry_run),
            **{k: counts.get(k, 0) for k in ("added", "updated", "deleted", "unchanged", "skipped")},
            "started": started,
            "finished": now(),
            "duration": round(time.monotonic() - clock, 3),
            "error": error,
            "actor": actor,
        }
        with self.store.catalog.write() as db:
            return db.insert("sync_runs", row, returning="id")
