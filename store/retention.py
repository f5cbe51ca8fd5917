"""Retention policies: which rows a namespace stops keeping, and the pass that removes them.

A policy is a handful of namespace settings (``keep_*``), inherited from the nearest
ancestor that sets each one like every other setting; ``"off"`` stops an inherited one.
Retention only removes catalog rows, each removal audited in the transaction that makes it;
the collector (``store/collector.py``) frees the blobs nothing references any more, past its
grace period. So a retention pass never races a blob write: it cannot delete bytes a change
in flight has found stored.

The same planner makes the dry run and the removal. A pass goes through each namespace a
few units at a time (projects' releases, paths' revisions, builds, bundles, resolutions or
mirrored files): an applying pass plans each batch again inside its write transaction and
removes what that plan says, so an upload or a new revision committed meanwhile is seen,
and what the dry run listed is exactly what goes when nothing changed. Between batches the
pass rests (``duty``), so a server's pass leaves the interpreter to the hot path.
What every policy protects is decided inside that same transaction: the newest release of
a project and the head revision of a path are never candidates.

One server at a time runs the scheduled pass, under a lease row in ``sync_leases`` (the
catalog's lease table, under a name no sync can have), renewed with every unit; a pass that
dies holding it lets the lease lapse, and since every unit is its own transaction, a pass
killed half-way leaves a consistent catalog that the next pass (or ``packyard gc``) finishes.
The lease saves repeated work; it is not what makes passes safe, so an operator's
``packyard gc --apply`` runs without waiting for it.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from packyard.store.blobs.base import BlobStore
from packyard.store.catalog import Catalog
from packyard.store.errors import InvalidInput
from packyard.store.generations import Generations
from packyard.store.names import ancestors, is_within, validate_namespace
from packyard.store.refs import COLUMNS
from packyard.store.touches import BUNDLE, MARK_EVERY, MIRRORED, RESOLUTION, Touches

DAY = 86400.0
OFF = "off"
COUNTS = ("keep_releases", "keep_revisions")
"""How many to keep (a whole number)."""
DAYS = (
    "keep_release_days",
    "keep_revision_days",
    "keep_build_log_days",
    "keep_mirrored_days",
    "keep_bundle_days",
)
"""How old (in days, a fraction allowed) a thing must be before it may go."""
PATTERN = "keep_release_pattern"
KEYS = (*COUNTS, PATTERN, *DAYS)
PRERELEASES, ALL = "prerelease", "all"
DEFAULT_PATTERN = PRERELEASES
"""Only pre-releases and .devN releases, so a final release is never removed unless asked."""
MAX_COUNT = 1_000_000
MAX_DAYS = 36_500
LEASE = "packyard:retention"
"""The lease row's name: not a valid sync name, so no sync can hold it."""
LEASE_SECONDS = 300.0
"""How long a pass's lease outlives its last transaction: a pass renews it with every unit,
so only a holder that died lets it lapse."""
CHUNK = 500
"""Hashes per look-up when counting what a pass frees."""
BATCH = 50
"""Units per transaction by default (a project's releases, a path's revisions, ...): short
write locks beside uploads."""


def check_policy(changes: dict) -> dict:
    """Validate the ``keep_*`` values of a settings change (None removes one; "off" stops an
    inherited one); InvalidInput (400) names the setting and what it takes."""
    out = {}
    for key in KEYS:
        if key not in changes:
            continue
        value = changes[key]
        if value is None or value == OFF:
            out[key] = value
            continue
        if key == PATTERN:
            out[key] = check_pattern(value)
            continue
        number = _number(key, value)
        limit = MAX_COUNT if key in COUNTS else MAX_DAYS
        if key in COUNTS and number != int(number):
            raise InvalidInput(f"{key} is a whole number of releases or revisions, not {value!r}")
        if not 0 <= number <= limit:
            raise InvalidInput(f"{key} must be between 0 and {limit}, or 'off'; got {value!r}")
        out[key] = int(number) if key in COUNTS or number == int(number) else number
    return out


def _number(key: str, value: object) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{key} takes a number or 'off', not {value!r}")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidInput(f"{key} takes a number or 'off', not {value!r}")
    return number


def check_pattern(value: object) -> str:
    """``prerelease`` (the default), ``all``, or a PEP 440 specifier set (``<2``, ``==1.*``)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput(f"{PATTERN} is 'prerelease', 'all' or a version specifier such as '<2'; got {value!r}")
    value = value.strip()
    if value in (PRERELEASES, ALL):
        return value
    try:
        SpecifierSet(value)
    except InvalidSpecifier as exc:
        raise InvalidInput(
            f"{PATTERN} is 'prerelease', 'all' or a version specifier such as '<2'; {value!r} is none of them"
        ) from exc
    return value


def matches(pattern: str | None, version: Version) -> bool:
    if pattern in (None, PRERELEASES):
        return version.is_prerelease or version.is_devrelease
    if pattern == ALL:
        return True
    return SpecifierSet(pattern).contains(version, prereleases=True)


def effective(settings: dict[str, dict], namespace: str) -> dict[str, dict]:
    """Each ``keep_*`` setting as ``{"value", "from"}`` (the nearest namespace that sets it;
    "off" reads as None from there), given every namespace's own settings."""
    out = {}
    for key in KEYS:
        out[key] = {"value": None, "from": None}
        for ns in ancestors(namespace):
            own = settings.get(ns) or {}
            if key in own:
                value = own[key]
                out[key] = {"value": None if value == OFF else value, "from": ns}
                break
    return out


def _last_use(made: str | None, marked: float | None) -> float:
    """The latest a thing may have been used: when it was made, or its last use mark plus the
    marking interval (uses after a mark go unmarked for that long, ``store/touches.py``)."""
    return max(_stamp(made), marked + MARK_EVERY if marked else 0.0)


def _stamp(value: str | float | None) -> float:
    """A catalog time (ISO text or epoch seconds) as epoch seconds (0 when unknown)."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _marks(names: Iterable) -> str:
    return ", ".join("?" for _ in names)


@dataclass
class Plan:
    """What a pass removes (or, in a dry run, would remove) and the bytes it frees."""

    applied: bool
    clock: float
    items: list[dict] = field(default_factory=list)
    frees: int = 0
    """Bytes of the blobs no catalog row references once these rows are gone."""
    frees_count: int = 0
    skipped: str | None = None
    """Why an applying pass did not run (another server holds the lease)."""

    def to_dict(self) -> dict:
        by_kind: dict[str, dict] = {}
        for item in self.items:
            tally = by_kind.setdefault(item["kind"], {"count": 0, "bytes": 0})
            tally["count"] += 1
            tally["bytes"] += item["size"] or 0
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "items": self.items,
            "count": len(self.items),
            "bytes": sum(item["size"] or 0 for item in self.items),
            "frees": {"count": self.frees_count, "bytes": self.frees},
            "by_kind": by_kind,
        }


class Retention:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        generations: Generations,
        touches: Touches,
        *,
        batch: int = BATCH,
        duty: float = 1.0,
    ) -> None:
        self.batch = batch
        """Units (a project, a path, a build, ...) per transaction (``PACKYARD_RETENTION_BATCH``)."""
        self.duty = duty
        """The share of time a pass works; it sleeps the rest (``PACKYARD_RETENTION_DUTY``)."""
        self.catalog = catalog
        self.blobs = blobs
        self.generations = generations
        self.touches = touches

    # -- what the policies are --------------------------------------------------------------

    def _settings(self) -> dict[str, dict]:
        return {
            row["name"]: json.loads(row["settings"])
            for row in self.catalog.query("SELECT name, settings FROM namespaces")
        }

    def policy(self, namespace: str) -> dict[str, dict]:
        """The namespace's effective policy, each value with the namespace it comes from."""
        validate_namespace(namespace)
        return effective(self._settings(), namespace)

    # -- planners: one per kind, each over one namespace (and optionally some units of it) ----

    def _dists(self, ns: str, policy: dict, clock: float, units: set[str] | None = None) -> list[dict]:
        keep, days = policy["keep_releases"], policy["keep_release_days"]
        if keep is None and days is None:
            return []
        pattern = policy[PATTERN] or DEFAULT_PATTERN
        sql = "SELECT filename, project, version, sha256, size, upload_time, yanked FROM dists WHERE namespace = ?"
        params: list = [ns]
        if units is not None:
            sql += f" AND project IN ({_marks(units)})"
            params += sorted(units)
        releases: dict[str, dict[Version, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in self.catalog.query(sql, params):
            try:
                releases[row["project"]][Version(row["version"])].append(row)
            except InvalidVersion:
                continue  # never stored (uploads are checked), but never a reason to remove either
        cutoff = None if days is None else clock - days * DAY
        out = []
        for project in sorted(releases):
            versions = releases[project]
            newest = max(versions)
            candidates = [v for v in versions if matches(pattern, v)]
            # yanked first: a yanked release is the first to go, so the kept ones are the usable ones
            ranked = sorted(candidates, key=lambda v: (not all(r["yanked"] for r in versions[v]), v), reverse=True)
            for place, version in enumerate(ranked):
                if version == newest:
                    continue  # never the newest release of a project
                files = versions[version]
                uploaded = max(_stamp(r["upload_time"]) for r in files)
                if keep is not None and place < keep:
                    continue
                if cutoff is not None and uploaded >= cutoff:
                    continue
                yanked = all(r["yanked"] for r in files)
                why = [f"beyond the newest {keep} {pattern} releases" if keep is not None else None]
                why.append(f"older than {days} days" if cutoff is not None else None)
                why.append("yanked" if yanked else None)
                for row in sorted(files, key=lambda r: r["filename"]):
                    out.append(
                        {
                            "kind": "dist",
                            "namespace": ns,
                            "unit": project,
                            "name": row["filename"],
                            "version": str(version),
                            "sha256": row["sha256"],
                            "size": row["size"],
                            "reason": ", ".join(w for w in why if w),
                        }
                    )
        return out

    def _revisions(self, ns: str, policy: dict, clock: float, units: set[str] | None = None) -> list[dict]:
        keep, days = policy["keep_revisions"], policy["keep_revision_days"]
        if keep is None and days is None:
            return []
        sql = (
            "SELECT r.id, r.path, r.revision, r.sha256, r.size, r.deleted, r.created FROM file_revisions r "
            "JOIN file_heads h ON h.namespace = r.namespace AND h.path = r.path "
            "WHERE r.namespace = ? AND r.revision < h.revision"
        )
        params: list = [ns]
        if units is not None:
            sql += f" AND r.path IN ({_marks(units)})"
            params += sorted(units)
        history: dict[str, list[dict]] = defaultdict(list)
        for row in self.catalog.query(sql + " ORDER BY r.path, r.revision DESC", params):
            history[row["path"]].append(row)
        cutoff = None if days is None else clock - days * DAY
        out = []
        for path, rows in history.items():
            for place, row in enumerate(rows):  # newest first; the head is not among them
                if keep is not None and place < keep:
                    continue
                if cutoff is not None and _stamp(row["created"]) >= cutoff:
                    continue
                why = [f"beyond the last {keep} revisions" if keep is not None else None]
                why.append(f"older than {days} days" if cutoff is not None else None)
                out.append(
                    {
                        "kind": "revision",
                        "namespace": ns,
                        "unit": path,
                        "name": f"{path}@{row['revision']}",
                        "id": row["id"],
                        "sha256": row["sha256"],
                        "size": row["size"] or 0,
                        "reason": ", ".join(w for w in why if w) + (" (a tombstone)" if row["deleted"] else ""),
                    }
                )
        return out

    def _builds(self, ns: str, policy: dict, clock: float, units: set[str] | None = None) -> list[dict]:
        days = policy["keep_build_log_days"]
        if days is None:
            return []
        sql = (
            "SELECT id, state, finished, log_sha256, log_size FROM builds WHERE namespace = ? "
            "AND state IN ('succeeded', 'failed', 'cancelled') AND finished IS NOT NULL"
        )
        params: list = [ns]
        if units is not None:
            sql += f" AND id IN ({_marks(units)})"
            params += sorted(int(u) for u in units)
        cutoff = clock - days * DAY
        out = []
        for row in self.catalog.query(sql + " ORDER BY id", params):
            if _stamp(row["finished"]) >= cutoff:
                continue
            failed = row["state"] != "succeeded"
            if not failed and not row["log_sha256"]:
                continue
            out.append(
                {
                    "kind": "build" if failed else "build_log",
                    "namespace": ns,
                    "unit": str(row["id"]),
                    "name": f"build {row['id']}" + ("" if failed else " log"),
                    "id": row["id"],
                    "sha256": row["log_sha256"],
                    # the size recorded with the log; the backend asked only for logs sealed before it was
                    "size": row["log_size"] if row["log_size"] is not None else self._blob_size(row["log_sha256"]),
                    "reason": f"{row['state']} build finished more than {days} days ago"
                    if failed
                    else f"log of a build finished more than {days} days ago",
                }
            )
        return out

    def _blob_size(self, sha256: str | None) -> int:
        if not sha256:
            return 0
        try:
            return self.blobs.size(sha256)
        except Exception:  # noqa: BLE001 - missing already (fsck's to report), or the backend is away
            return 0

    def _unused(self, kind: str, ns: str, policy: dict, clock: float, units: set[str] | None = None) -> list[dict]:
        """Bundles and resolutions not used for the namespace's ``keep_bundle_days``."""
        days = policy["keep_bundle_days"]
        if days is None:
            return []
        table = "bundles" if kind == BUNDLE else "resolutions"
        size = "t.size" if kind == BUNDLE else "length(t.lock)"
        sha = "t.sha256" if kind == BUNDLE else "NULL"
        sql = (
            f"SELECT t.key, {sha} AS sha256, {size} AS size, t.created, u.at FROM {table} t "
            "LEFT JOIN last_used u ON u.kind = ? AND u.namespace = t.namespace AND u.key = t.key WHERE t.namespace = ?"
        )
        params: list = [kind, ns]
        if units is not None:
            sql += f" AND t.key IN ({_marks(units)})"
            params += sorted(units)
        cutoff = clock - days * DAY
        out = []
        for row in self.catalog.query(sql + " ORDER BY t.key", params):
            if _last_use(row["created"], row["at"]) >= cutoff:
                continue
            out.append(
                {
                    "kind": kind,
                    "namespace": ns,
                    "unit": row["key"],
                    "name": row["key"],
                    "sha256": row["sha256"],
                    "size": row["size"] or 0,
                    "reason": f"not used for {days} days",
                }
            )
        return out

    def _mirrored(self, upstream: str, ns: str, days: float, clock: float, units: set[str] | None = None) -> list[dict]:
        sql = (
            "SELECT f.filename, f.sha256, f.size, f.fetched, u.at FROM upstream_files f "
            "LEFT JOIN last_used u ON u.kind = ? AND u.namespace = '' AND u.key = f.sha256 WHERE f.upstream = ?"
        )
        params: list = [MIRRORED, upstream]
        if units is not None:
            sql += f" AND f.filename IN ({_marks(units)})"
            params += sorted(units)
        cutoff = clock - days * DAY
        out = []
        for row in self.catalog.query(sql + " ORDER BY f.filename", params):
            if _last_use(row["fetched"], row["at"]) >= cutoff:
                continue
            out.append(
                {
                    "kind": "mirrored",
                    "namespace": ns,
                    "upstream": upstream,
                    "unit": row["filename"],
                    "name": row["filename"],
                    "sha256": row["sha256"],
                    "size": row["size"] or 0,
                    "reason": f"not requested for {days} days",
                }
            )
        return out

    def _upstreams(self, settings: dict[str, dict]) -> dict[str, tuple[str, float]]:
        """Mirrored files are filed by upstream, not namespace: each upstream is governed by the
        namespaces that set it (their effective ``keep_mirrored_days``); several namespaces
        setting one upstream keep its files as long as the most patient of them, and one with
        no policy keeps them all. upstream key -> (governing namespace, days)."""
        from packyard.store.upstream import UpstreamConfig

        found: dict[str, tuple[str, float] | None] = {}
        for ns in sorted(settings):
            own = settings[ns]
            if not own.get("upstream"):
                continue
            key = UpstreamConfig(own["upstream"], own.get("upstream_auth_env")).key
            days = effective(settings, ns)["keep_mirrored_days"]["value"]
            if key in found and found[key] is None:
                continue
            if days is None:
                found[key] = None
            elif key not in found or days > found[key][1]:  # type: ignore[index]
                found[key] = (ns, days)
        return {key: value for key, value in found.items() if value is not None}

    # -- passes ----------------------------------------------------------------------------

    def _units(self, kind: str, ns: str, policy: dict) -> list[str] | None:
        """The units a planner works through, cheaply (no planning): None lets the planner's
        own full plan name them (builds, bundles, resolutions, mirrored files: few rows)."""
        if kind == "dist":
            if policy["keep_releases"] is None and policy["keep_release_days"] is None:
                return []
            rows = self.catalog.query("SELECT DISTINCT project FROM dists WHERE namespace = ? ORDER BY project", (ns,))
            return [row["project"] for row in rows]
        if kind == "revision":
            if policy["keep_revisions"] is None and policy["keep_revision_days"] is None:
                return []
            sql = "SELECT path FROM file_heads WHERE namespace = ? AND revision > 1 ORDER BY path"
            return [row["path"] for row in self.catalog.query(sql, (ns,))]
        return None

    def _work(self, under: str | None, clock: float) -> Iterator[tuple[object, list[str] | None]]:
        """(planner, its units) for every kind in every namespace (under ``under``)."""
        settings = self._settings()
        for ns in sorted(settings):
            if under is not None and not is_within(ns, under):
                continue
            policy = {key: item["value"] for key, item in effective(settings, ns).items()}
            yield (lambda units, ns=ns, p=policy: self._dists(ns, p, clock, units)), self._units("dist", ns, policy)
            yield (
                (lambda units, ns=ns, p=policy: self._revisions(ns, p, clock, units)),
                self._units("revision", ns, policy),
            )
            yield (lambda units, ns=ns, p=policy: self._builds(ns, p, clock, units)), None
            yield (lambda units, ns=ns, p=policy: self._unused(BUNDLE, ns, p, clock, units)), None
            yield (lambda units, ns=ns, p=policy: self._unused(RESOLUTION, ns, p, clock, units)), None
        for upstream, (ns, days) in sorted(self._upstreams(settings).items()):
            if under is not None and not is_within(ns, under):
                continue
            yield (lambda units, u=upstream, ns=ns, d=days: self._mirrored(u, ns, d, clock, units)), None

    def run(
        self,
        under: str | None = None,
        *,
        apply: bool = False,
        actor: str = "retention",
        clock: float | None = None,
        holder: str | None = None,
    ) -> Plan:
        """Plan (and with ``apply``, carry out) every policy of the namespaces under ``under``
        (all when None). An applying pass takes the lease when ``holder`` is given, and is
        skipped when another holder has it. Without ``holder`` (an operator's ``packyard gc``)
        it runs regardless: two passes at once only repeat work, since each unit is planned
        again inside its own transaction.

        Both go through the units ``batch`` at a time, and after each batch rest long enough
        that the pass works only ``duty`` of the time (the server's thread shares one
        interpreter with the hot path)."""
        if under is not None:
            validate_namespace(under)
        clock = time.time() if clock is None else clock
        plan = Plan(applied=apply, clock=clock)
        if apply and holder is not None and not self.take_lease(holder):
            plan.applied = False
            plan.skipped = "another server is running a retention pass"
            return plan
        try:
            if apply:
                self.touches.flush()  # the last uses this process knows of count
            for planner, units in self._work(under, clock):
                if units is None:
                    units = list(dict.fromkeys(item["unit"] for item in planner(None)))  # type: ignore[operator]
                for start in range(0, len(units), self.batch):
                    began = time.monotonic()
                    group = set(units[start : start + self.batch])
                    items = planner(group)  # type: ignore[operator]
                    if apply and items:
                        if holder is not None and not self.take_lease(holder):
                            plan.skipped = "another server took the retention lease over (this pass outlived it)"
                            return plan
                        items = self._apply(planner, group, actor)
                    plan.items += items
                    self._rest(time.monotonic() - began)
        finally:
            if apply and holder is not None:
                self.release_lease(holder)
        self._count_freed(plan)
        return plan

    def _rest(self, worked: float) -> None:
        if self.duty < 1.0:
            time.sleep(worked * (1.0 / self.duty - 1.0))

    def _apply(self, planner: object, units: set[str], actor: str) -> list[dict]:
        dists_changed: set[str] = set()
        with self.catalog.write() as db:
            items = planner(units)  # type: ignore[operator]
            for item in items:
                self._remove(db, item)
                detail = {k: v for k, v in item.items() if k not in ("namespace", "unit")}
                self.catalog.audit(actor, f"retention.{item['kind']}", item["namespace"], json.dumps(detail))
                if item["kind"] == "dist":
                    dists_changed.add(item["namespace"])
            for ns in dists_changed:
                self.generations.bump(ns)
        if dists_changed:
            self.generations.invalidate()
        return items

    @staticmethod
    def _remove(db, item: dict) -> None:  # noqa: ANN001 - the catalog's Tx
        kind, ns = item["kind"], item["namespace"]
        if kind == "dist":
            db.execute("DELETE FROM dists WHERE namespace = ? AND filename = ?", (ns, item["name"]))
        elif kind == "revision":
            db.execute("DELETE FROM file_revisions WHERE id = ?", (item["id"],))
        elif kind == "build":
            db.execute("DELETE FROM build_log_chunks WHERE build_id = ?", (item["id"],))
            db.execute("DELETE FROM builds WHERE id = ?", (item["id"],))
        elif kind == "build_log":
            db.execute("UPDATE builds SET log_sha256 = NULL WHERE id = ?", (item["id"],))
        elif kind == BUNDLE:
            db.execute("DELETE FROM bundles WHERE namespace = ? AND key = ?", (ns, item["name"]))
            db.execute("DELETE FROM last_used WHERE kind = ? AND namespace = ? AND key = ?", (BUNDLE, ns, item["name"]))
        elif kind == RESOLUTION:
            db.execute("DELETE FROM resolution_files WHERE namespace = ? AND key = ?", (ns, item["name"]))
            db.execute("DELETE FROM resolutions WHERE namespace = ? AND key = ?", (ns, item["name"]))
            db.execute(
                "DELETE FROM last_used WHERE kind = ? AND namespace = ? AND key = ?", (RESOLUTION, ns, item["name"])
            )
        elif kind == "mirrored":
            db.execute(
                "DELETE FROM upstream_files WHERE upstream = ? AND filename = ?", (item["upstream"], item["name"])
            )

    def _count_freed(self, plan: Plan) -> None:
        """The blobs that lose their last reference: in a dry run, counted as if the planned
        rows were gone; after a pass, those nothing references now."""
        sizes: dict[str, int] = {}
        removing: dict[str, int] = defaultdict(int)
        for item in plan.items:
            if item.get("sha256"):
                sizes[item["sha256"]] = item["size"] or 0
                removing[item["sha256"]] += 1
        hashes = sorted(sizes)
        for start in range(0, len(hashes), CHUNK):
            batch = hashes[start : start + CHUNK]
            refs: dict[str, int] = defaultdict(int)
            for table, column, _ in COLUMNS:
                for row in self.catalog.query(
                    f"SELECT {column} AS sha256, count(*) AS n FROM {table} WHERE {column} IN ({_marks(batch)}) "
                    f"GROUP BY {column}",
                    batch,
                ):
                    refs[row["sha256"]] += row["n"]
            for sha in batch:
                left = refs[sha] - (0 if plan.applied else removing[sha])
                if left <= 0:
                    plan.frees_count += 1
                    plan.frees += sizes[sha]

    # -- one pass at a time ------------------------------------------------------------------

    def take_lease(self, holder: str, ttl: float = LEASE_SECONDS) -> bool:
        """The right to run a pass now, or False while another holder's lease runs."""
        clock = time.time()
        with self.catalog.write():
            row = self.catalog.one("SELECT holder, expires FROM sync_leases WHERE sync = ?", (LEASE,))
            if row is not None and row["holder"] is not None and row["holder"] != holder and row["expires"] > clock:
                return False
            if row is None:
                self.catalog.query(
                    "INSERT INTO sync_leases (sync, holder, expires, pending) VALUES (?, ?, ?, 0)",
                    (LEASE, holder, clock + ttl),
                )
            else:
                self.catalog.query(
                    "UPDATE sync_leases SET holder = ?, expires = ?, pending = 0 WHERE sync = ?",
                    (holder, clock + ttl, LEASE),
                )
        return True

    def release_lease(self, holder: str) -> None:
        with self.catalog.write():
            self.catalog.query(
                "UPDATE sync_leases SET holder = NULL, expires = 0 WHERE sync = ? AND holder = ?", (LEASE, holder)
            )


def describe(plan: Plan) -> str:
    """One log line for a pass."""
    verb = "removed" if plan.applied else "would remove"
    return f"retention: {verb} {len(plan.items)} rows; frees {plan.frees_count} blobs ({plan.frees} bytes)"
