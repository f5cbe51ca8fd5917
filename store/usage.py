"""Storage usage per namespace, and the quotas that bound it.

Usage is computed by the catalog with aggregates (``count``/``sum`` grouped by namespace),
never by walking rows in Python, so it stays cheap on a store with millions of rows. What
counts is what the catalog references, not what the bucket holds: a removed distribution
frees its share of a quota at once, and the collector reclaims its bytes later.

Each category (files, revisions, distributions, bundles, build logs) adds its rows' sizes;
``stored`` counts each blob once however many rows, revisions or namespaces hold it (two
namespaces with the same wheel hold one blob). ``stored`` is what a quota bounds.

Mirrored upstream files are a cache shared by every namespace that uses the same upstream:
they are reported for the namespace that sets the upstream and counted in no quota (a
refusal there would break ``pip install`` of public dependencies, not bound a team's data).

A quota set on a namespace bounds its whole subtree, the way a GitLab group's storage limit
covers its subgroups and projects: a write into ``company.sales.emea`` is refused when it
would take ``company``'s subtree past ``company``'s quota, whatever the children set. The
check runs inside the write's own catalog transaction, after its rows are in, so two
concurrent writes that each fit but not together are serialized by the catalog's write lock
and the second is refused; a refusal rolls the transaction back and leaves its blob to the
collector, like every failed change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from packyard.store.blobs.base import human_size
from packyard.store.catalog import Catalog
from packyard.store.errors import InvalidInput, QuotaExceeded
from packyard.store.names import ancestors, validate_namespace

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i?)b?|b)?", re.IGNORECASE)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_quota(value: int | str | None) -> int | None:
    """A quota in bytes from a number of bytes or a size with a unit, as MinIO and GitLab
    write them: ``500MB`` (10^6), ``20GiB`` (2^30), ``1.5T``; None, ``""`` or ``none`` for no quota."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    size = 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit, binary = match.groups()
        base = 1024 if binary else 1000
        size = int(float(number) * base ** _POWERS[unit.lower()]) if unit else int(float(number))
    if size <= 0 or size > 2**62:
        raise InvalidInput(
            f"quota {value!r} is not a size: give a positive number of bytes or a number with a unit "
            "(500MB, 20GiB, 1.5TiB; KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024), or 'none' to remove it"
        )
    return size


CATEGORIES = ("files", "revisions", "distributions", "bundles", "build_logs", "mirrored")

_IN_SUBTREE = "({col} = ? OR ({col} > ? AND {col} < ?))"
"""Rows of a namespace or its descendants: a range an index answers (every write under a quota
runs this inside the write lock). Exact because names hold only ``[a-z0-9_.-]``, so a
descendant of ``ns`` lies between ``ns.`` and ``ns/`` (``/`` sorts right after ``.``) and
nothing else does; text compares by bytes on both engines (PostgreSQL's columns are
``COLLATE "C"``, ``store/dialects.py``)."""


def _subtree_params(namespace: str) -> tuple[str, str, str]:
    return namespace, namespace + ".", namespace + "/"


_OWNED = (
    # (category, table, namespace column, sha256 column, size column, extra condition)
    ("files", "file_heads", "namespace", "sha256", "size", "deleted = 0"),
    ("revisions", "file_revisions", "namespace", "sha256", "size", "deleted = 0"),
    ("distributions", "dists", "namespace", "sha256", "size", "1 = 1"),
    ("bundles", "bundles", "namespace", "sha256", "size", "1 = 1"),
    ("build_logs", "builds", "namespace", "log_sha256", "coalesce(log_size, 0)", "log_sha256 IS NOT NULL"),
)
"""Where a namespace's bytes are: ``file_heads`` is the current files (a subset of the
revisions, so it is left out of the blob union)."""


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def add(self, other: Tally) -> None:
        self.count += other.count
        self.bytes += other.bytes


@dataclass
class Figures:
    """One namespace's (or subtree's) usage: a tally per category and the distinct blobs."""

    files: Tally = field(default_factory=Tally)
    revisions: Tally = field(default_factory=Tally)
    distributions: Tally = field(default_factory=Tally)
    bundles: Tally = field(default_factory=Tally)
    build_logs: Tally = field(default_factory=Tally)
    mirrored: Tally = field(default_factory=Tally)
    stored: Tally | None = field(default_factory=Tally)
    """Each blob once (what a quota counts); None where not computed (a child's subtree)."""

    def add(self, other: Figures) -> None:
        for name in CATEGORIES:
            getattr(self, name).add(getattr(other, name))


def _subtree(namespace: str, col: str = "namespace") -> tuple[str, tuple]:
    return _IN_SUBTREE.format(col=col), _subtree_params(namespace)


def _tally(row: dict | None) -> Tally:
    return Tally(int(row["count"] or 0), int(row["bytes"] or 0)) if row else Tally()


class Usage:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- figures -------------------------------------------------------------------------

    def _per_namespace(self, under: str | None) -> dict[str, Figures]:
        """Every namespace's own figures (one grouped query per category)."""
        where, params = _subtree(under, "name") if under else ("1 = 1", ())
        rows = self.catalog.query(f"SELECT name, settings FROM namespaces WHERE {where} ORDER BY name", params)
        out = {row["name"]: Figures() for row in rows}
        for category, table, ns_col, _, size, cond in _OWNED:
            where_t, params_t = _subtree(under, ns_col) if under else ("1 = 1", ())
            for row in self.catalog.query(
                f"SELECT {ns_col} AS ns, count(*) AS count, CAST(coalesce(sum({size}), 0) AS BIGINT) AS bytes "
                f"FROM {table} WHERE {cond} AND {where_t} GROUP BY {ns_col}",
                params_t,
            ):
                if row["ns"] in out:
                    setattr(out[row["ns"]], category, _tally(row))
        for row in self._blob_union(under, per_namespace=True):
            if row["ns"] in out:
                out[row["ns"]].stored = _tally(row)
        self._mirrored(out, {row["name"]: json.loads(row["settings"]).get("upstream") for row in rows})
        return out

    def _union_sql(self, where: str) -> str:
        return " UNION ".join(
            f"SELECT {ns_col} AS ns, {sha} AS sha256, {size} AS size FROM {table} "
            f"WHERE {cond} AND {where.format(col=ns_col)}"
            for category, table, ns_col, sha, size, cond in _OWNED
            if category != "files"
        )

    def _blob_union(self, under: str | None, *, per_namespace: bool) -> list[dict]:
        where = _IN_SUBTREE if under else "1 = 1"
        params = _subtree_params(under) if under else ()
        parts = len(_OWNED) - 1
        if per_namespace:
            sql = (
                "SELECT ns, count(*) AS count, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes FROM "
                f"({self._union_sql(where)}) u GROUP BY ns"
            )
        else:
            # the namespace left out of the union: a blob two namespaces hold counts once
            inner = self._union_sql(where).replace(" AS ns,", " AS ns0,")
            sql = (
                "SELECT count(*) AS count, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes FROM "
                f"(SELECT sha256, size FROM ({inner}) a GROUP BY sha256, size) u"
            )
        return self.catalog.query(sql, params * parts)

    def stored(self, namespace: str | None) -> Tally:
        """Distinct blobs the subtree of ``namespace`` (None: every namespace) references."""
        rows = self._blob_union(namespace, per_namespace=False)
        return _tally(rows[0] if rows else None)

    def _mirrored(self, out: dict[str, Figures], upstreams: dict[str, str | None]) -> None:
        """Mirrored files, for the namespaces that set an upstream (one grouped query)."""
        setters: dict[str, list[str]] = {}
        for name, upstream in upstreams.items():
            if upstream:
                setters.setdefault(upstream.rstrip("/") + "/", []).append(name)
        if not setters:
            return
        for row in self.catalog.query(
            "SELECT upstream, count(*) AS count, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes "
            "FROM upstream_files GROUP BY upstream"
        ):
            url = row["upstream"].split(" auth=", 1)[0].rstrip("/") + "/"
            for name in setters.get(url, []):
                out[name].mirrored.add(_tally(row))

    def report(self, namespace: str | None) -> dict:
        """``ns usage``: own and subtree figures of ``namespace`` (None: the whole store),
        each namespace's own figures, and the quotas that bound it."""
        if namespace is not None:
            validate_namespace(namespace)
        own = self._per_namespace(namespace)
        subtree = Figures()
        for figures in own.values():
            subtree.add(figures)
        subtree.stored = self.stored(namespace)
        out: dict = {
            "namespace": namespace,
            "subtree": asdict(subtree),
            "namespaces": [{"namespace": name, **asdict(figures)} for name, figures in own.items()],
        }
        if namespace is not None:
            out["own"] = asdict(own.get(namespace, Figures()))
            out["quotas"] = self.quotas(namespace)
        return out

    # -- quotas --------------------------------------------------------------------------

    def _limits(self, namespace: str) -> list[tuple[str, int]]:
        found = []
        for ns in ancestors(namespace):
            row = self.catalog.one("SELECT settings FROM namespaces WHERE name = ?", (ns,))
            quota = json.loads(row["settings"]).get("quota") if row else None
            if quota:
                found.append((ns, int(quota)))
        return found

    def quotas(self, namespace: str) -> list[dict]:
        """The quotas that bound ``namespace``: its own and its ancestors', each with its use."""
        return [
            {"namespace": ns, "quota": limit, "used": self.stored(ns).bytes} for ns, limit in self._limits(namespace)
        ]

    @contextmanager
    def guard(self, namespace: str) -> Iterator[None]:
        """Wrap the row changes of one write, inside its catalog transaction: refuse them
        (QuotaExceeded, which rolls the transaction back) when they take a subtree past a
        quota. A change that adds no bytes (a delete, the same bytes again) always passes,
        so lowering a quota below the use never blocks clean-up."""
        limits = self._limits(namespace)
        if not limits:
            yield
            return
        before = {ns: self.stored(ns).bytes for ns, _ in limits}
        yield
        for ns, limit in limits:
            after = self.stored(ns).bytes
            if after > limit and after > before[ns]:
                raise quota_exceeded(namespace, ns, limit, before[ns], after - before[ns])


def quota_exceeded(namespace: str, holder: str, limit: int, used: int, adding: int) -> QuotaExceeded:
    where = f"namespace {holder!r}" if holder == namespace else f"namespace {holder!r} (it bounds {namespace!r})"
    return QuotaExceeded(
        f"quota exceeded: {where} uses {human_size(used)} of its {human_size(limit)} quota and this change "
        f"adds {human_size(adding)}; nothing was stored. Free space in it (remove distributions with "
        f"'packyard dists rm', old revisions and builds with retention settings; 'packyard ns usage {holder}' "
        f"shows where the bytes are) or raise the quota with 'packyard ns set {holder} --quota SIZE'. "
        "Removed rows free quota at once; 'packyard gc --apply' later reclaims their disk space."
    )
