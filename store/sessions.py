"""Web UI sessions: a browser signs in once with a token and then holds only a session id.

The id is random and stored here hashed; the row names the token, which is looked up (and
must still be unrevoked) on every request, so revoking a token ends its sessions at once.
Each session carries its own CSRF secret for the forms it posts.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from packyard.store.catalog import Catalog, now
from packyard.store.errors import Forbidden
from packyard.store.tokens import Token, Tokens


@dataclass(frozen=True)
class Session:
    token: Token
    csrf: str
    expires: float


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class Sessions:
    def __init__(self, catalog: Catalog, tokens: Tokens) -> None:
        self.catalog = catalog
        self.tokens = tokens

    def create(self, token: Token, ttl_seconds: float) -> tuple[str, Session]:
        """A new session for ``token``; returns the id to put in the cookie (shown once)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = time.time() + ttl_seconds
        with self.catalog.write() as db:
            db.execute("DELETE FROM ui_sessions WHERE expires < ?", (time.time(),))
            db.insert(
                "ui_sessions",
                {
                    "id_hash": _hash(session_id),
                    "token_id": token.id,
                    "csrf": csrf,
                    "created": now(),
                    "expires": expires,
                },
            )
        return session_id, Session(token, csrf, expires)

    def get(self, session_id: str | None) -> Session | None:
        """The live session, or None when unknown, expired, or its token is revoked or gone."""
        if not session_id or len(session_id) > 100:
            return None
        row = self.catalog.one("SELECT * FROM ui_sessions WHERE id_hash = ?", (_hash(session_id),))
        if row is None or row["expires"] < time.time():
            return None
        try:
            token = self.tokens.authority(row["token_id"], "a session")
        except Forbidden:
            return None
        return Session(token, row["csrf"], row["expires"])

    def end(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self.catalog.write() as db:
            db.execute("DELETE FROM ui_sessions WHERE id_hash = ?", (_hash(session_id),))
