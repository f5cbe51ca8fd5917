"""ASGI guards that run before routing (body caps and early auth: ``packyard/limits.py``).

Starlette's path patterns do not match control characters (``.`` stops at a newline), so a
path like ``x%0a.txt`` would fall through to a bare "Not Found". This guard answers such
requests with a 400 that says what is wrong, before any route, auth lookup or body read.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL.search(scope["path"]):
            body = json.dumps(
                {"error": "InvalidName", "detail": "the request path contains a control character"}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
