"""``store/catalog_copy.py`` on what a SQLite catalog may hold and PostgreSQL may not: the copy
is refused with the table and row named, and the target is left exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from packyard.store.catalog import Catalog
from packyard.store.catalog_copy import copy_catalog
from packyard.store.errors import InvalidInput
from packyard.store.generations import EPOCH

from tests.support.postgres import Postgres


def test_a_value_postgresql_cannot_store_changes_nothing(tmp_path: Path, postgres: Postgres) -> None:
    source = Catalog(tmp_path / "catalog.db")
    with source.write() as tx:
        tx.insert("namespaces", {"name": "good", "created": "2026-01-01", "settings": "{}"})
        tx.insert("namespaces", {"name": "bad", "created": "2026-01-01", "created_by": "nul\x00here", "settings": "{}"})
    target = Catalog(url=postgres.create_schema())
    epoch = target.query("SELECT scope, generation FROM generations")
    with pytest.raises(InvalidInput, match=r"^row 2 of table namespaces cannot be copied: "):
        copy_catalog(source, target)
    assert target.query("SELECT * FROM namespaces") == []
    assert target.query("SELECT scope, generation FROM generations") == epoch  # the new catalog's own
    assert [row["scope"] for row in epoch] == [EPOCH]
    with source.write() as tx:
        tx.update("namespaces", {"name": "bad"}, {"created_by": "fixed"})
    assert copy_catalog(source, target)["namespaces"] == 2
    assert target.query("SELECT scope, generation FROM generations") == source.query(
        "SELECT scope, generation FROM generations"
    )
