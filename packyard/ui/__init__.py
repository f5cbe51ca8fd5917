"""The web UI served under ``/ui/``: server-rendered pages, a session sign-in, no build chain."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from packyard.store.browse import Browse
from packyard.store.errors import NotFound
from packyard.store.sessions import Sessions
from packyard.ui.routes import HERE, router


def wants_html(accept: str) -> bool:
    """True for a browser's Accept header, never for pip's or uv's.

    Browsers put ``text/html`` first at full weight; pip and uv ask for the PEP 691 JSON
    type first and accept ``text/html`` only at a low weight, so they never match.
    """
    if "application/vnd.pypi" in accept:
        return False
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if media.lower() in ("text/html", "application/xhtml+xml"):
            weight = next((p.split("=", 1)[1] for p in params if p.replace(" ", "").startswith("q=")), "1")
            try:
                return float(weight) >= 1.0
            except ValueError:
                return False
    return False


def install(app: FastAPI) -> None:
    """Add the UI's pages, its static files and the ``/`` redirect for browsers."""
    app.state.sessions = Sessions(app.state.store.catalog, app.state.store.tokens)
    app.state.browse = Browse(app.state.store.catalog, app.state.store.generations)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> Response:
        if wants_html(request.headers.get("accept", "")):
            return RedirectResponse("/ui/", status_code=303)
        raise NotFound("nothing here: the indexes are at /{namespace}/simple/ and the API under /api/v1/")
