"""The HTTP application: the FastAPI app with its routers, built from one Settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.types import ASGIApp

from packyard import __version__, http_errors
from packyard.api import builds, dists, files, namespaces, runs, syncs, tokens
from packyard.auth import caller
from packyard.guards import BodyLimit, ControlCharacterGuard
from packyard.index import routes as index_routes
from packyard.index import upload
from packyard.index.cache import IndexCache
from packyard.index.hot import HotIndex
from packyard.settings import Settings
from packyard.wiring import open_store
from packyard.worker import EmbeddedWorker
from sync.registry import SyncRegistry
from sync.runner import Syncer

FORM_OVERHEAD = 1024 * 1024
"""Room for the multipart fields around an upload's file."""


def _lifespan(settings: Settings):  # noqa: ANN202 - an async context manager factory
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.embedded_worker:
            worker = EmbeddedWorker(app.state, settings.own_url, settings.data / "build-cache", settings.build_sandbox)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.shutdown()

    return lifespan


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="packyard",
        version=__version__,
        description="Namespace files, git sync, builds and a Python package index for flows.",
        lifespan=_lifespan(settings),
    )
    app.state.settings = settings
    app.state.store = open_store(settings)
    http_errors.install(app)
    app.add_middleware(ControlCharacterGuard)
    app.state.index = IndexCache(app.state.store)
    app.state.syncer = Syncer(
        app.state.store,
        settings.data,
        secrets_dir=settings.secrets_dir,
        credential_envs=settings.credential_env_names,
        local_roots=settings.sync_local_roots,
    )
    app.state.syncs = SyncRegistry(app.state.store.catalog)
    for module in (namespaces, files, tokens, dists, syncs, builds, runs):
        app.include_router(module.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness and backend check")
    def healthz(request: Request) -> dict:
        request.app.state.store.blobs.check()
        return {"status": "ok", "version": __version__, "backend": settings.backend}

    @app.get("/api/v1/whoami", tags=["meta"], summary="The token the request authenticates as")
    def whoami(request: Request) -> dict:
        token = caller(request)
        return token.to_dict() if token else {"id": None, "scope": None, "role": None}

    # the index routes match /{ns}/..., so they go after every fixed path
    app.include_router(upload.router)
    app.include_router(index_routes.router)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD)
    return app


def create_asgi(settings: Settings) -> ASGIApp:
    """What the server runs: the hot index path in front of the whole FastAPI app.

    In front, not inside as a middleware: a FastAPI/Starlette call costs several times what
    a cached page costs to send (routing, error middleware, per-request telemetry checks),
    and pip and uv hit these pages on every run. Everything the hot path does not answer —
    misses, auth, writes, lifespan — goes to FastAPI unchanged.
    """
    app = create_app(settings)
    return HotIndex(app, app.state.index, enabled=settings.anonymous_read)
