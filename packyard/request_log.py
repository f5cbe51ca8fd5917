"""One log line for every request that fails (4xx, 5xx), whatever answered it.

The full access log (uvicorn's, one line per request) stays behind ``PACKYARD_LOG_REQUESTS``:
pip and uv make dozens of requests a run and the hot path must stay cheap. Failures are
what an operator needs to see — a refused upload, a 5xx, a webhook that was turned away —
so they are logged always, by this wrapper around the FastAPI application (its routes, its
error handlers and its guards alike), in one place. The hot path in front of it
(``index/hot.py``) answers only 200, 206 and 304 and hands everything else to FastAPI, so every
error answer passes through here while a cached page does not pay for the log; should the
hot path itself crash, uvicorn logs the traceback.

A line holds the method, the path as sent (percent-encoded, without the query string, so a
token passed as a parameter never reaches the log), the status, the namespace the path
names, the id of the token the request authenticated as (never its secret; ``invalid`` for
credentials that matched no live token) and the error's message. On a success the wrapper
only looks at the status of the response start.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("packyard.http")

TOKEN_ID = "packyard_token_id"
"""Key in the request's ``state`` under which ``packyard.auth`` records who is calling."""

_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
_DETAIL_MAX = 300
_NOT_NAMESPACES = frozenset({"api", "healthz", "docs", "redoc", "openapi.json", "favicon.ico", "ui", "static"})


def _clean(text: str, limit: int = 1000) -> str:
    """One line of visible ASCII: whatever the client sent cannot forge another log line."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return _UNPRINTABLE.sub(lambda m: m[0] if m[0] == " " else f"\\x{ord(m[0]):02x}", text)


def namespace_of(path: str) -> str | None:
    """The namespace a path names: ``/{ns}/...`` (index, upload) or ``/api/v1/namespaces/{ns}/...``."""
    parts = path.split("/")
    if len(parts) > 4 and parts[1:4] == ["api", "v1", "namespaces"]:
        candidate = parts[4]
    elif len(parts) > 1 and parts[1] not in _NOT_NAMESPACES:
        candidate = parts[1]
    else:
        return None
    return candidate if _NAMESPACE.fullmatch(candidate) else None


def _detail(body: bytes) -> str | None:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return None
    return detail if isinstance(detail, str) else None


class ErrorLog:
    """ASGI wrapper: logs each 4xx at WARNING and each 5xx (or crash) at ERROR, one line each."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        body = b""

        async def watch(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status >= 400 and len(body) < 4096:
                body += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:  # a cancelled request (the client went away) is no server failure
            self._line(scope, status if status >= 400 else 500, "the server failed (see the traceback)")
            raise
        if status >= 400:
            self._line(scope, status, _detail(body))

    @staticmethod
    def _line(scope: Scope, status: int, detail: str | None) -> None:
        path = scope.get("raw_path") or scope["path"].encode()
        path = path.decode("latin-1").split("?", 1)[0]
        token = (scope.get("state") or {}).get(TOKEN_ID, "-")
        message = "%s %s %d ns=%s token=%s%s"
        args = (
            scope["method"],
            _clean(path),
            status,
            namespace_of(path) or "-",
            token,
            f" detail={_clean(detail[:_DETAIL_MAX])}" if detail else "",
        )
        log.log(logging.ERROR if status >= 500 else logging.WARNING, message, *args)
