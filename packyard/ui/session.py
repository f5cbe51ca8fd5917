"""Who a web UI request acts as, and the checks a form must pass before it acts.

The browser holds a random session id in an HttpOnly, SameSite=Strict cookie (Secure over
TLS); the server maps it to a token id (``store/sessions.py``). The page then runs the
very checks the API runs (``packyard/auth.py``) with that token, so the UI never shows or
does what the API would refuse. Every form carries the session's CSRF secret.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from starlette.responses import Response

from packyard.store.errors import Forbidden
from packyard.store.sessions import Session

COOKIE = "packyard_session"
LOGIN_COOKIE = "packyard_login"
"""A pre-session CSRF secret for the sign-in form (double submit)."""


def attach(request: Request) -> Session | None:
    """Resolve the session cookie and make its token the request's caller."""
    session = request.app.state.sessions.get(request.cookies.get(COOKIE))
    request.state.ui_session = session
    request.state.session_token = session.token if session else None
    return session


def check_csrf(request: Request, form: dict) -> None:
    """A form that changes state must carry the session's CSRF secret."""
    session: Session | None = getattr(request.state, "ui_session", None)
    sent = str(form.get("csrf") or "")
    if session is None or not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("this form is stale or did not come from this site (CSRF check failed); reload the page")


def login_secret(request: Request) -> str:
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def check_login_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden("the sign-in form is stale or did not come from this site; reload the page")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
