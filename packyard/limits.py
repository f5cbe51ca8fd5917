"""Request bodies: who may send one, and how big it may be — decided before a byte is read.

FastAPI reads and parses a JSON body before the endpoint (and so the endpoint's auth check)
runs, and the multipart parser spools a whole form; a global cap at the upload limit let an
anonymous caller make the server hold gigabytes. So this layer, in front of routing:

- finds the route the request will take and its body class (``body(...)`` on the
  endpoint): ``json`` (the default: ``PACKYARD_MAX_JSON_BYTES``), ``upload`` (file PUTs,
  imports, bundles, dists, build hand-ins: ``PACKYARD_MAX_UPLOAD_BYTES`` plus room for form
  fields), ``webhook`` (``PACKYARD_MAX_WEBHOOK_BYTES``, what GitHub and GitLab send at most),
  ``form`` and ``signin`` (web UI forms, JSON-sized: a form needs a live UI session, the
  sign-in form nothing);
- for a write (any method but GET/HEAD/OPTIONS) to a route that needs a token, checks that
  the request carries a live token, before reading anything (webhooks authenticate by their
  signature, which needs the body, so they are bounded by size alone);
- refuses a write while the data folder's disk is short of space (507, ``packyard/disk.py``);
- refuses a declared ``Content-Length`` over the cap at once, and stops a chunked or lying
  body at the first byte over it (413, and the connection is closed rather than drained).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from packyard.auth import credentials
from packyard.disk import DiskSpace
from packyard.http_errors import error_response
from packyard.store.blobs.base import human_size
from packyard.store.errors import InvalidInput, MethodNotAllowed, PackyardError, TooLarge, Unauthenticated

F = TypeVar("F", bound=Callable)

FORM_FIELDS_MAX = 4 * 1024 * 1024
"""All text fields and part headers of one upload form together (``index/upload.py``).

The form is bounded by bytes, not by a field count: twine and uv publish send one field per
``Requires-Dist``/``Classifier``, and real wheels exceed any count a parser picks
(transformers 4.57 has 457 dependencies; Starlette's default is 1000 fields, packyard's
was 500). A byte budget bounds the memory a hostile form can take just as well.
"""
FORM_OVERHEAD = FORM_FIELDS_MAX + 64 * 1024
"""Room for the multipart fields around an upload's file (their budget, plus boundaries)."""
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES = frozenset({"POST", "PUT", "PATCH"})
"""What a full disk refuses up front (a DELETE stays possible: it is how space comes back)."""


def body(kind: str, limit: int | None = None) -> Callable[[F], F]:
    """Mark an endpoint's body class (``json``, ``upload``, ``webhook``) and optionally its own cap."""
    if kind not in ("json", "upload", "webhook", "form", "signin"):
        raise ValueError(kind)

    def mark(endpoint: F) -> F:
        endpoint.packyard_body = (kind, limit)  # type: ignore[attr-defined]
        return endpoint

    return mark


def _leaves(routes: list) -> Iterator:
    """The routes requests are matched against, in order: FastAPI keeps an included router as
    one entry whose own routes (``effective_candidates``) are what match."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:
            yield from _leaves(candidates())
        else:
            yield route


def too_large(limit: int, setting: str) -> TooLarge:
    return TooLarge(f"body is larger than the limit of {human_size(limit)} for this request; see {setting}")


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: list,
        disk: DiskSpace,
        json_bytes: int,
        upload_bytes: int,
        webhook_bytes: int,
    ) -> None:
        self.app = app
        self.routes = routes
        self._leaves: list | None = None
        self.disk = disk
        self.caps = {
            "json": (json_bytes, "PACKYARD_MAX_JSON_BYTES"),
            "form": (json_bytes, "PACKYARD_MAX_JSON_BYTES"),
            "signin": (json_bytes, "PACKYARD_MAX_JSON_BYTES"),
            "upload": (upload_bytes + FORM_OVERHEAD, "PACKYARD_MAX_UPLOAD_BYTES"),
            "webhook": (webhook_bytes, "PACKYARD_MAX_WEBHOOK_BYTES"),
        }

    def _route(self, scope: Scope) -> tuple[str, int | None, bool]:
        """(body class, own cap, whether the route was found) for this request.

        A fixed path owns its path for every method: Starlette would hand ``POST /healthz`` to
        the first route that matches it fully (``POST /{ns}``, the upload form), so a method
        a fixed path does not serve is a 405 with that path's ``Allow`` instead.
        """
        allowed: set[str] = set()
        if self._leaves is None:
            self._leaves = list(_leaves(self.routes))
        for route in self._leaves:
            match, _ = route.matches(scope)
            if match == Match.PARTIAL and not getattr(route, "param_convertors", True):
                allowed |= set(getattr(route, "methods", None) or ())
            elif match == Match.FULL:
                if allowed and getattr(route, "param_convertors", None):
                    raise MethodNotAllowed(
                        f"{scope['method']} is not served at {scope['path']}; allowed: {', '.join(sorted(allowed))}",
                        sorted(allowed),
                    )
                kind, limit = getattr(getattr(route, "endpoint", None), "packyard_body", ("json", None))
                return kind, limit, True
        return "json", None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            kind, own, found = self._route(scope)
            cap, setting = self.caps[kind]
            if own is not None:
                cap, setting = own, "the endpoint's documentation"
            if found and kind == "form" and scope["method"] not in SAFE:
                # a web UI form: authenticated by its session cookie (its CSRF secret is in the
                # body, checked by the page); the sign-in form ("signin") needs neither
                request = Request(scope)
                if request.app.state.sessions.get(request.cookies.get("packyard_session")) is None:
                    raise Unauthenticated("sign in first: this form needs a web UI session")
            elif found and kind not in ("webhook", "signin") and scope["method"] not in SAFE:
                request = Request(scope)
                secret = credentials(request)
                if secret is None:
                    raise Unauthenticated(
                        "this operation needs a token with the write role or higher; send it as Bearer or Basic"
                    )
                request.app.state.store.tokens.authenticate(secret)
            declared = Request(scope).headers.get("content-length")
            if declared is not None:
                if not declared.isdigit():
                    raise InvalidInput("Content-Length is not a number")
                if int(declared) > cap:
                    raise too_large(cap, setting)
            if found and scope["method"] in WRITES:
                self.disk.check(int(declared) if declared and kind == "upload" else 0)
        except PackyardError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self._capped(scope, receive, send, cap, setting)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, cap: int, setting: str) -> None:
        """Run the app with the body cut at ``cap``; once cut, the client gets the 413, whatever the
        endpoint (or FastAPI's body parser, which turns any read error into a 400) answers."""
        seen = 0
        cut: TooLarge | None = None
        answered = False

        async def limited() -> Message:
            nonlocal seen, cut
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    cut = too_large(cap, setting)
                    raise cut
            return message

        async def answer(message: Message) -> None:
            nonlocal answered
            if cut is None:
                await send(message)
            elif not answered:
                answered = True
                await error_response(cut)(scope, receive, send)

        try:
            await self.app(scope, limited, answer)
        except Exception:
            if cut is None:
                raise
            if not answered:
                answered = True
                await error_response(cut)(scope, receive, send)
