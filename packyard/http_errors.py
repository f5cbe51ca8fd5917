"""The one table that turns packyard's exceptions into HTTP responses.

The body names the exception class (``error``) beside the message (``detail``), so the
CLI client can raise the same class again and map it to its exit code.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from packyard.store import errors

log = logging.getLogger("packyard.http")

STATUS: dict[type[errors.PackyardError], int] = {
    errors.InvalidInput: 400,
    errors.NotAcceptable: 406,
    errors.MethodNotAllowed: 405,
    errors.RangeNotSatisfiable: 416,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.RemoteFailed: 502,
    errors.BackendUnavailable: 503,
    errors.StorageFull: 507,
    errors.QuotaExceeded: 507,
}


def status_for(exc: errors.PackyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: errors.PackyardError) -> JSONResponse:
    status = status_for(exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="packyard"'
    elif status == 405 and isinstance(exc, errors.MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allow)
    elif status == 416 and isinstance(exc, errors.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    elif status == 413:
        headers["Connection"] = "close"  # the rest of the body is not worth reading to keep the connection
    return JSONResponse({"error": type(exc).__name__, "detail": exc.message}, status_code=status, headers=headers)


def _where(loc: tuple) -> str:
    """``("path", "build_id")`` -> ``build_id (path)``: which input, and where it was."""
    if len(loc) >= 2:
        return f"{'.'.join(str(part) for part in loc[1:])} ({loc[0]})"
    return ".".join(str(part) for part in loc) or "request"


def validation_detail(exc: RequestValidationError) -> str:
    """One readable sentence for FastAPI's list of validation errors."""
    parts = []
    for error in exc.errors()[:5]:
        message = str(error.get("msg", "is invalid"))
        if message[1:2].islower():  # "Field required" -> "field required", but "JSON ..." stays
            message = message[0].lower() + message[1:]
        parts.append(f"{_where(tuple(error.get('loc', ())))}: {message}")
    return "; ".join(parts) or "the request is invalid"


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names only the first route's).

    Asked of the router itself, one method at a time, so included routers and their
    prefixes answer exactly as they do when routing.
    """
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def install(app: FastAPI) -> None:
    """Every error answer in one shape, whoever raised it: ours, Starlette's or FastAPI's."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.PackyardError)
        return error_response(exc)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        """Parameter and body validation: 422 as FastAPI documents it, in packyard's shape."""
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"error": "InvalidInput", "detail": validation_detail(exc)}, status_code=422)

    async def gone(_: Request, exc: Exception) -> JSONResponse:
        """The client left mid-request: nothing to answer and nothing worth a traceback (the
        work it started was undone by the exception on its way here)."""
        log.info("client disconnected before the request was complete")
        return JSONResponse(
            {"error": "InvalidInput", "detail": "the client closed the connection before the request was complete"},
            status_code=400,
            headers={"Connection": "close"},
        )

    async def os_error(_: Request, exc: Exception) -> JSONResponse:
        """A full disk met outside the blob store and catalog (a build log, a spool file)."""
        if errors.is_disk_full(exc):
            return error_response(errors.storage_full())
        raise exc

    async def starlette(request: Request, exc: Exception) -> JSONResponse:
        """Starlette's own 404 (no route) and 405 (no such method here), in packyard's shape."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = allowed_methods(request)
            message = f"{request.method} is not served at this path; it takes {', '.join(allow)}"
            return error_response(errors.MethodNotAllowed(message, allow))
        if exc.status_code == 404:
            return error_response(errors.NotFound(f"nothing is served at {request.url.path}"))
        return JSONResponse(
            {"error": "HTTPError", "detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(errors.PackyardError, handle)
    app.add_exception_handler(HTTPException, starlette)
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(ClientDisconnect, gone)
    app.add_exception_handler(RequestValidationError, invalid)
