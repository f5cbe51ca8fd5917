"""API tokens: secrets shown once and stored hashed, scopes, roles and who may mint what."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from packyard.store.catalog import Catalog
from packyard.store.errors import Forbidden, InvalidInput, InvalidName, NotFound, Unauthenticated
from packyard.store.tokens import ENV_ADMIN, Token, Tokens

ADMIN_SECRET = "env-admin-secret"


@pytest.fixture
def catalog(tmp_path: Path, catalog_url: str | None) -> Catalog:
    return Catalog(tmp_path / "catalog.db", url=catalog_url)


@pytest.fixture
def tokens(catalog: Catalog) -> Tokens:
    return Tokens(catalog, ADMIN_SECRET)


def test_secret_is_returned_once_and_stored_only_as_hash(tokens: Tokens, catalog: Catalog) -> None:
    token, secret = tokens.create("company", "write", name="ci")
    assert secret.startswith("pky_")
    assert len(secret) > 40
    assert (token.scope, token.role, token.name, token.created_by, token.revoked) == (
        "company",
        "write",
        "ci",
        "local",
        None,
    )

    rows = catalog.query("SELECT * FROM tokens")
    assert len(rows) == 1
    row = rows[0]
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for value in row.values():
        assert value is None or secret not in str(value)
    # nor anywhere else in the catalog (the audit log included)
    for table in ("audit", "namespaces"):
        for audit_row in catalog.query(f"SELECT * FROM {table}"):
            assert all(secret not in str(v) for v in audit_row.values())

    # the secret is never part of what is handed back later
    listed = tokens.list()
    assert listed == [token]
    assert "secret" not in str(listed[0].to_dict()).lower()
    assert secret not in str(listed[0].to_dict())

    other, other_secret = tokens.create("company", "write")
    assert other.id != token.id and other_secret != secret


def test_authenticate_and_revoke(tokens: Tokens, catalog: Catalog) -> None:
    token, secret = tokens.create("company.sales", "read")
    assert tokens.authenticate(secret) == token
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret + "x")
    with pytest.raises(Unauthenticated):
        tokens.authenticate("")
    with pytest.raises(Unauthenticated):
        tokens.authenticate(hashlib.sha256(secret.encode()).hexdigest())  # the hash is not a key

    revoked = tokens.revoke(token.id)
    assert revoked.revoked is not None
    # what revoke() reports is what it stored
    stored = catalog.one("SELECT revoked FROM tokens WHERE id = ?", (token.id,))
    assert stored == {"revoked": revoked.revoked}
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret)
    again = tokens.revoke(token.id)  # revoking twice keeps the first time
    assert again.revoked == revoked.revoked
    with pytest.raises(NotFound):
        tokens.revoke("no-such-id")


def test_env_admin_secret(tokens: Tokens, catalog: Catalog) -> None:
    assert tokens.authenticate(ADMIN_SECRET) is ENV_ADMIN
    assert ENV_ADMIN.allows("anything.at.all", "admin")
    assert ENV_ADMIN.allows(None, "admin")
    without = Tokens(catalog)
    with pytest.raises(Unauthenticated):
        without.authenticate(ADMIN_SECRET)
    with pytest.raises(Unauthenticated):
        Tokens(catalog, "").authenticate("")


def test_scope_covers_children_not_siblings(tokens: Tokens) -> None:
    token, _ = tokens.create("company.sales", "write")
    assert token.covers("company.sales")
    assert token.covers("company.sales.eu")
    assert not token.covers("company.salesx")
    assert not token.covers("company.sales-eu")
    assert not token.covers("company")
    assert not token.covers("company.hr")
    assert not token.covers(None)
    everything, _ = tokens.create("*", "read")
    assert everything.covers("any.thing")
    assert everything.covers(None)


def test_role_ordering() -> None:
    def make(role: str) -> Token:
        return Token("id", "", "company", role, "now")

    read, write, admin = make("read"), make("write"), make("admin")
    assert read.allows("company", "read")
    assert not read.allows("company", "write")
    assert not read.allows("company", "admin")
    assert write.allows("company", "read") and write.allows("company", "write")
    assert not write.allows("company", "admin")
    assert admin.allows("company.sales", "read")
    assert admin.allows("company.sales", "write")
    assert admin.allows("company.sales", "admin")
    assert not admin.allows("other", "read")


def test_bad_scope_and_role(tokens: Tokens) -> None:
    with pytest.raises(InvalidInput):
        tokens.create("company", "owner")
    with pytest.raises(InvalidName):
        tokens.create("Company", "read")
    with pytest.raises(InvalidName):
        tokens.create("", "read")
    assert tokens.list() == []


def test_who_may_create_tokens(tokens: Tokens) -> None:
    company_admin, _ = tokens.create("company", "admin")
    writer, _ = tokens.create("company", "write")
    reader_all, _ = tokens.create("*", "read")
    writer_all, _ = tokens.create("*", "write")

    for creator in (writer, reader_all, writer_all):
        with pytest.raises(Forbidden):
            tokens.create("company", "read", creator=creator)
        with pytest.raises(Forbidden):
            tokens.create("company.sales", "read", creator=creator)

    # an admin of company mints within company only, never for '*' or another tree
    for scope in ("*", "other", "companyx", "company2.sales"):
        with pytest.raises(Forbidden):
            tokens.create(scope, "read", creator=company_admin)
    child, _ = tokens.create("company.sales", "write", creator=company_admin)
    assert child.created_by == company_admin.actor
    same, _ = tokens.create("company", "admin", creator=company_admin)
    assert same.scope == "company"

    # the environment admin can mint anything
    anything, _ = tokens.create("*", "admin", creator=ENV_ADMIN)
    assert anything.scope == "*"
    before = {t.id for t in tokens.list()}
    assert {company_admin.id, writer.id, child.id, anything.id} <= before


def test_who_may_revoke_and_list(tokens: Tokens) -> None:
    company_admin, _ = tokens.create("company", "admin")
    sales_admin, _ = tokens.create("company.sales", "admin")
    writer, writer_secret = tokens.create("company.sales", "write")
    other, other_secret = tokens.create("other", "read")
    star, _ = tokens.create("*", "read")

    # outside the revoker's scope a token is as good as missing: its existence and scope stay hidden
    with pytest.raises(NotFound):
        tokens.revoke(other.id, revoker=company_admin)
    with pytest.raises(NotFound):
        tokens.revoke(star.id, revoker=company_admin)
    with pytest.raises(NotFound):
        tokens.revoke(company_admin.id, revoker=sales_admin)  # a parent's token
    with pytest.raises(Forbidden):
        tokens.revoke(other.id, revoker=writer)
    with pytest.raises(Forbidden):
        tokens.revoke(other.id, revoker=star)  # '*' but only read
    tokens.authenticate(other_secret)

    tokens.revoke(writer.id, revoker=company_admin)
    with pytest.raises(Unauthenticated):
        tokens.authenticate(writer_secret)

    visible = {t.id for t in tokens.list(company_admin)}
    assert visible == {company_admin.id, sales_admin.id, writer.id}
    assert {t.id for t in tokens.list(sales_admin)} == {sales_admin.id, writer.id}
    assert len(tokens.list(ENV_ADMIN)) == 5
