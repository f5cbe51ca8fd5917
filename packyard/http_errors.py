"""The one table that turns packyard's exceptions into HTTP responses.

The body names the exception class (``error``) beside the message (``detail``), so the
CLI client can raise the same class again and map it to its exit code.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from store import errors

STATUS: dict[type[errors.PackyardError], int] = {
    errors.InvalidInput: 400,
    errors.NotAcceptable: 406,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.RemoteFailed: 502,
    errors.BackendUnavailable: 503,
}


def status_for(exc: errors.PackyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: errors.PackyardError) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": 'Basic realm="packyard"'} if status == 401 else None
    return JSONResponse({"error": type(exc).__name__, "detail": exc.message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.PackyardError)
        return error_response(exc)

    app.add_exception_handler(errors.PackyardError, handle)
