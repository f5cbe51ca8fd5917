"""Who is calling: Bearer tokens, and HTTP Basic with the token as password (as twine sends).

Reads are anonymous unless the server turns that off; every write needs a token whose
scope covers the namespace and whose role is high enough. Missing credentials are a 401
(with a Basic challenge, so pip and uv know to send credentials); insufficient ones a 403.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from packyard.request_log import TOKEN_ID
from packyard.store.errors import Forbidden, NotFound, Unauthenticated
from packyard.store.tokens import Token


def credentials(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthenticated("malformed Basic credentials") from exc
        _, sep, password = decoded.partition(":")
        if sep and password:
            return password
    raise Unauthenticated("unsupported Authorization header: send 'Bearer TOKEN' or Basic with the token as password")


def caller(request: Request) -> Token | None:
    """The authenticated token, or None for an anonymous request.

    A web UI page sets ``request.state.session_token`` from its session cookie (after its
    CSRF check for a form), and only UI routes do: the API never honours the cookie, so a
    cross-site request cannot act through it.
    """
    session_token = getattr(request.state, "session_token", None)
    if session_token is not None:
        return session_token
    secret = credentials(request)
    if secret is None:
        return None
    setattr(request.state, TOKEN_ID, "invalid")  # what the error log names (never the secret)
    token = request.app.state.store.tokens.authenticate(secret)
    setattr(request.state, TOKEN_ID, token.id)
    return token


def require(request: Request, namespace: str | None, role: str) -> Token | None:
    """Raise unless the caller may act on ``namespace`` with ``role``; return the token."""
    token = caller(request)
    if role == "read" and token is None and request.app.state.settings.anonymous_read:
        return None
    if token is None:
        raise Unauthenticated(f"this operation needs a token with the {role} role; send it as Bearer or Basic")
    if not token.allows(namespace, role):
        where = f"namespace {namespace!r}" if namespace else "this operation"
        raise Forbidden(f"{token.actor} (scope {token.scope!r}, role {token.role}) may not {role} {where}")
    return token


def viewer(request: Request) -> Token | None:
    """Authenticate before looking anything up: an invalid token is a 401 whatever it asks
    for, and so is no token when anonymous reads are off — so no answer depends on whether
    the thing asked about exists."""
    token = caller(request)
    if token is None and not request.app.state.settings.anonymous_read:
        raise Unauthenticated("this operation needs a token with the read role; send it as Bearer or Basic")
    return token


def may_read(request: Request, token: Token | None, namespace: str) -> bool:
    """True when ``token`` (None: anonymous) may read ``namespace``."""
    if token is None:
        return bool(request.app.state.settings.anonymous_read)
    return token.allows(namespace, "read")


def reveal(request: Request, token: Token | None, namespace: str, role: str, missing: str) -> Token | None:
    """Check a thing that belongs to ``namespace`` (a registered sync, a build) the way GitHub
    checks a private repository: to a caller who may not read the namespace it does not
    exist (404 with ``missing``, the very text a missing one gets); a reader without
    ``role`` gets the 403 (or 401 when anonymous).
    """
    if not may_read(request, token, namespace):
        raise NotFound(missing)
    if role == "read":
        return token
    return require(request, namespace, role)


def actor(token: Token | None) -> str:
    return token.actor if token else "anonymous"
