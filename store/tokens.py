"""API tokens: random secrets shown once, stored only as a sha256 hash.

A token carries a scope (a namespace, covering it and its descendants, or ``*`` for all)
and a role. Roles are ordered read < write < admin, so one comparison decides access. The
secrets have 256 bits of entropy, which is why a plain sha256 (not a slow password hash)
is the right way to store them: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass

from packyard.store.catalog import Catalog, now
from packyard.store.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from packyard.store.names import is_within, validate_namespace

ROLES = ("read", "write", "admin")
ALL = "*"
PREFIX = "pky_"


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    scope: str
    role: str
    created: str
    created_by: str | None = None
    revoked: str | None = None

    def covers(self, namespace: str | None) -> bool:
        """True when the scope includes ``namespace`` (None: an operation on no namespace)."""
        if self.scope == ALL:
            return True
        return namespace is not None and is_within(namespace, self.scope)

    def allows(self, namespace: str | None, role: str) -> bool:
        return self.covers(namespace) and ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"token:{self.id}" + (f" ({self.name})" if self.name else "")

    def to_dict(self) -> dict:
        return asdict(self)


ENV_ADMIN = Token(id="env-admin", name="PACKYARD_ADMIN_TOKEN", scope=ALL, role="admin", created="")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role


def check_scope(scope: str) -> str:
    return scope if scope == ALL else validate_namespace(scope)


class Tokens:
    def __init__(self, catalog: Catalog, admin_secret: str | None = None) -> None:
        self.catalog = catalog
        self._admin_secret = admin_secret or None
        self._internal: dict[str, Token] = {}

    def add_internal(self, token: Token, secret: str | None = None) -> str:
        """A process-lifetime token (the embedded worker's), never written to the catalog.

        ``secret`` lets the processes of one ``serve --workers N`` share it: a worker's
        request may reach any of them on the shared port."""
        secret = secret or f"{PREFIX}internal_{secrets.token_urlsafe(32)}"
        self._internal[hash_secret(secret)] = token
        return secret

    def create(self, scope: str, role: str, *, name: str = "", creator: Token | None = None) -> tuple[Token, str]:
        """Make a token and return it with its secret, which is never retrievable again."""
        check_scope(scope)
        check_role(role)
        if creator is not None:
            within = creator.scope == ALL or (scope != ALL and is_within(scope, creator.scope))
            if not within or not creator.allows(None if scope == ALL else scope, "admin"):
                raise Forbidden(
                    f"{creator.actor} cannot create a token for scope {scope!r}: an admin token "
                    "whose scope covers it is needed"
                )
        token_id = secrets.token_hex(6)
        secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        token = Token(token_id, name, scope, role, now(), creator.actor if creator else "local")
        with self.catalog.write() as db:
            db.insert("tokens", {**token.to_dict(), "secret_hash": hash_secret(secret)})
            self.catalog.audit(token.created_by or "-", "token.create", None, json.dumps({"id": token_id}))
        return token, secret

    def authenticate(self, secret: str) -> Token:
        if self._admin_secret and hmac.compare_digest(secret.encode(), self._admin_secret.encode()):
            return ENV_ADMIN
        internal = self._internal.get(hash_secret(secret))
        if internal is not None:
            return internal
        row = self.catalog.one("SELECT * FROM tokens WHERE secret_hash = ? AND revoked IS NULL", (hash_secret(secret),))
        if row is None:
            raise Unauthenticated("the token is unknown or revoked")
        row.pop("secret_hash")
        return Token(**row)

    def authority(self, token_id: str | None, what: str, *writes: str | None) -> Token:
        """The token a deferred action (a registered sync, a queued build) runs under, checked now.

        ``token_id`` is the id recorded when the action was asked for. It must still exist,
        be unrevoked and hold the write right on every namespace in ``writes`` — or the work
        stops with a :class:`Forbidden` that says why. The environment admin counts only
        while the server still holds its secret.
        """
        token: Token | None = None
        if token_id == ENV_ADMIN.id:
            token = ENV_ADMIN if self._admin_secret else None
        elif token_id:
            row = self.catalog.one("SELECT * FROM tokens WHERE id = ?", (token_id,))
            if row is not None:
                row.pop("secret_hash")
                token = Token(**row)
        if token_id is None:
            raise Forbidden(
                f"{what} records no token it runs under (made before packyard recorded one); register it again"
            )
        if token is None:
            raise Forbidden(f"{what} runs under token {token_id}, which no longer exists")
        if token.revoked:
            raise Forbidden(
                f"{what} runs under token {token_id}, which was revoked on {token.revoked}; register it again"
            )
        for namespace in writes:
            if namespace is not None and not token.allows(namespace, "write"):
                raise Forbidden(
                    f"{what} runs under {token.actor} (scope {token.scope!r}, role {token.role}), "
                    f"which may not write namespace {namespace!r}"
                )
        return token

    def list(self, viewer: Token | None = None) -> list[Token]:
        rows = self.catalog.query("SELECT * FROM tokens ORDER BY created")
        tokens = []
        for row in rows:
            row.pop("secret_hash")
            token = Token(**row)
            if viewer is None or viewer.scope == ALL or (token.scope != ALL and is_within(token.scope, viewer.scope)):
                tokens.append(token)
        return tokens

    def revoke(self, token_id: str, revoker: Token | None = None) -> Token:
        """Revoke a token, and every token it made (and they made): a token minted with an
        authority never outlives that authority, so revoking a leaked admin token also
        revokes whatever was minted with it.

        A revoker whose admin scope does not cover the token gets the 404 of a missing one:
        it learns neither that the id exists nor its scope.
        """
        if revoker is not None and revoker.role != "admin":
            raise Forbidden(f"{revoker.actor} cannot revoke tokens: the admin role is needed")
        row = self.catalog.one("SELECT * FROM tokens WHERE id = ?", (token_id,))
        missing = NotFound(f"token {token_id!r} does not exist")
        if row is None:
            raise missing
        row.pop("secret_hash")
        token = Token(**row)
        if revoker is not None and not (
            revoker.scope == ALL or (token.scope != ALL and is_within(token.scope, revoker.scope))
        ):
            raise missing
        stamp = token.revoked or now()
        who = revoker.actor if revoker else "local"
        with self.catalog.write() as db:
            db.update("tokens", {"id": token_id}, {"revoked": stamp})
            self.catalog.audit(who, "token.revoke", None, json.dumps({"id": token_id}))
            for child in self._minted_by(token_id):
                db.update("tokens", {"id": child}, {"revoked": stamp})
                self.catalog.audit(who, "token.revoke", None, json.dumps({"id": child, "minted_by": token_id}))
        return Token(**{**token.to_dict(), "revoked": stamp})

    def _minted_by(self, token_id: str) -> list[str]:
        """The unrevoked tokens made with ``token_id``, and those made with them, and so on."""
        found: list[str] = []
        parents = [token_id]
        while parents:
            parent = parents.pop()
            for row in self.catalog.query(
                "SELECT id FROM tokens WHERE revoked IS NULL AND (created_by = ? OR substr(created_by, 1, ?) = ?)",
                (f"token:{parent}", len(f"token:{parent} ("), f"token:{parent} ("),
            ):
                if row["id"] not in found:
                    found.append(row["id"])
                    parents.append(row["id"])
        return found
