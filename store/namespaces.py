"""Namespaces: created explicitly or by the first write, always with their ancestors.

Creating ``company.sales`` also records ``company``, so the tree a user lists is the tree
that inheritance walks. Settings are a small JSON document per namespace that later
features (inheritance, upstreams) read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from packyard.store.catalog import Catalog, now
from packyard.store.errors import Conflict, NotFound
from packyard.store.generations import Generations
from packyard.store.names import ancestors, validate_namespace
from packyard.store.usage import Usage


@dataclass
class Namespace:
    name: str
    created: str
    created_by: str | None
    settings: dict = field(default_factory=dict)
    files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Namespaces:
    def __init__(self, catalog: Catalog, generations: Generations | None = None) -> None:
        self.catalog = catalog
        self.generations = generations
        """Settings changes bump its settings counter (None: nothing caches pages over this catalog)."""
        self.usage = Usage(catalog)
        """Usage figures, and the quota guard every write that adds bytes runs inside its transaction."""

    def ensure(self, name: str, author: str | None) -> bool:
        """Create ``name`` and any missing ancestor inside the caller's transaction.

        Returns True when ``name`` itself was new.
        """
        missing = []
        with self.catalog.write() as db:
            for ns in reversed(ancestors(name)):
                if self.catalog.one("SELECT 1 FROM namespaces WHERE name = ?", (ns,)) is None:
                    db.insert("namespaces", {"name": ns, "created": now(), "created_by": author, "settings": "{}"})
                    missing.append(ns)
            # cached chains of namespaces read through their ancestors are stale now
            if missing and self.generations is not None:
                self.generations.bump_created()
                self.catalog.after_commit(self.generations.invalidate)
        return name in missing

    def create(self, name: str, author: str | None, *, exist_ok: bool = False) -> Namespace:
        validate_namespace(name)
        with self.catalog.write():
            if self.ensure(name, author):
                self.catalog.audit(author or "-", "namespace.create", name)
            elif not exist_ok:
                raise Conflict(f"namespace {name!r} already exists")
        return self.get(name)

    def exists(self, name: str) -> bool:
        return self.catalog.one("SELECT 1 FROM namespaces WHERE name = ?", (name,)) is not None

    def nearest(self, name: str) -> str:
        """``name`` if it exists, else its nearest existing ancestor; NotFound when none does.

        Reads of a namespace nobody has written to yet (a flow's ``company.sales.emea``) see
        it as its parent chain, as a flow engine's namespaces exist the moment a flow uses
        one; a name with no existing ancestor at all is most likely a typo, and stays a 404.
        """
        for ns in ancestors(validate_namespace(name)):
            if self.exists(ns):
                return ns
        raise NotFound(
            f"namespace {name!r} does not exist, nor does any namespace above it; "
            f"create it with 'packyard ns create {name}'"
        )

    def settings_of(self, name: str) -> dict | None:
        """The namespace's settings, or None when it does not exist (no stats computed)."""
        row = self.catalog.one("SELECT settings FROM namespaces WHERE name = ?", (name,))
        return json.loads(row["settings"]) if row else None

    def get(self, name: str) -> Namespace:
        validate_namespace(name)
        row = self.catalog.one("SELECT * FROM namespaces WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"namespace {name!r} does not exist; create it with 'packyard ns create {name}'")
        stats = self.catalog.one(
            "SELECT count(*) AS files, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes FROM file_heads "
            "WHERE namespace = ? AND deleted = 0",
            (name,),
        ) or {"files": 0, "bytes": 0}
        return Namespace(
            name=row["name"],
            created=row["created"],
            created_by=row["created_by"],
            settings=json.loads(row["settings"]),
            files=stats["files"],
            bytes=stats["bytes"],
        )

    def list(self, under: str | None = None) -> list[Namespace]:
        """All namespaces, or ``under`` and its descendants, sorted by name."""
        if under:
            validate_namespace(under)
            rows = self.catalog.query(
                "SELECT * FROM namespaces WHERE name = ? OR substr(name, 1, ?) = ? ORDER BY name",
                (under, len(under) + 1, under + "."),
            )
        else:
            rows = self.catalog.query("SELECT * FROM namespaces ORDER BY name")
        return [Namespace(r["name"], r["created"], r["created_by"], json.loads(r["settings"])) for r in rows]

    def update_settings(self, name: str, changes: dict, author: str | None) -> Namespace:
        """Merge ``changes`` into the settings; a ``None`` value removes a key.

        Retention values (``keep_*``) are checked here, for every way in (InvalidInput)."""
        from packyard.store.retention import check_policy

        changes = {**changes, **check_policy(changes)}
        with self.catalog.write() as db:
            current = self.get(name).settings
            for key, value in changes.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            db.update("namespaces", {"name": name}, {"settings": json.dumps(current, sort_keys=True)})
            self.catalog.audit(author or "-", "namespace.settings", name, json.dumps(changes))
            if self.generations is not None:
                self.generations.bump_settings()
                self.catalog.after_commit(self.generations.invalidate)
        return self.get(name)
