"""The HTTP application: the FastAPI app with its routers, built from one Settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.types import ASGIApp

from packyard import __version__, http_errors, openapi
from packyard.api import builds, dists, files, namespaces, runs, syncs, tokens, transfer
from packyard.auth import caller
from packyard.blob_send import BlobCache
from packyard.disk import DiskSpace
from packyard.guards import ControlCharacterGuard
from packyard.index import routes as index_routes
from packyard.index import upload
from packyard.index.cache import IndexCache
from packyard.index.hot import HotIndex
from packyard.janitor import Janitor
from packyard.limits import RequestLimits
from packyard.request_log import ErrorLog
from packyard.settings import Settings
from packyard.sync.registry import SyncRegistry
from packyard.sync.runner import Syncer
from packyard.wiring import open_store
from packyard.worker import EmbeddedWorker


def _lifespan(settings: Settings):  # noqa: ANN202 - an async context manager factory
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        janitor = Janitor(
            app.state.store,
            grace_seconds=settings.gc_grace_seconds,
            interval_seconds=settings.gc_interval_seconds,
            retention_seconds=settings.retention_interval_seconds,
        )
        janitor.start()
        worker = None
        if settings.embedded_worker:
            worker = EmbeddedWorker(app.state, settings.own_url, settings.data / "build-cache", settings.build_sandbox)
            worker.start()
        try:
            yield
        finally:
            janitor.shutdown()
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
    app.state.disk = DiskSpace(settings.data, settings.min_free_bytes, blobs_local=settings.backend == "local")
    http_errors.install(app)
    openapi.install(app)
    app.add_middleware(ControlCharacterGuard)
    app.state.index = IndexCache(app.state.store)
    app.state.syncer = Syncer(
        app.state.store,
        settings.data,
        secrets_dir=settings.secrets_dir,
        credential_envs=settings.credential_env_names,
        local_roots=settings.sync_local_roots,
        allow_hosts=settings.sync_allow_hosts,
    )
    app.state.syncs = SyncRegistry(app.state.store.catalog)
    for module in (namespaces, files, tokens, dists, syncs, builds, runs, transfer):
        app.include_router(module.router)
    app.include_router(namespaces.usage_router)

    @app.get("/healthz", tags=["meta"], summary="Liveness and backend check, and whether writes can be taken")
    def healthz(request: Request) -> dict:
        """200 while the server can serve reads; ``status`` is ``read-only`` (and ``disk.writable``
        false) while the data folder's disk is under ``PACKYARD_MIN_FREE_BYTES`` of free space."""
        request.app.state.store.blobs.check()
        disk = request.app.state.disk.report()
        status = "ok" if disk["writable"] else "read-only"
        return {"status": status, "version": __version__, "backend": settings.backend, "disk": disk}

    @app.get("/api/v1/whoami", tags=["meta"], summary="The token the request authenticates as")
    def whoami(request: Request) -> dict:
        token = caller(request)
        return token.to_dict() if token else {"id": None, "scope": None, "role": None}

    if settings.ui:
        from packyard import ui  # only a server with the UI loads Jinja2 and Pygments

        ui.install(app)

    # the index routes match /{ns}/..., so they go after every fixed path
    app.include_router(upload.router)
    app.include_router(index_routes.router)
    app.add_middleware(
        RequestLimits,
        routes=app.router.routes,
        disk=app.state.disk,
        json_bytes=settings.max_json_bytes,
        upload_bytes=settings.max_upload_bytes,
        webhook_bytes=settings.max_webhook_bytes,
    )
    return app


def create_asgi(settings: Settings) -> ASGIApp:
    """What the server runs: the hot index path in front of the whole FastAPI app.

    In front, not inside as a middleware: a FastAPI/Starlette call costs several times what
    a cached page costs to send (routing, error middleware, per-request telemetry checks),
    and pip and uv hit these pages on every run. Everything the hot path does not answer —
    misses, auth, writes, lifespan — goes to FastAPI unchanged. The error log
    (``request_log.py``, one line for every 4xx and 5xx) wraps FastAPI, behind the hot path:
    the hot path only ever answers 200, 206 and 304 (anything else falls through to FastAPI), so
    a cached page costs not one call more than without the log.
    """
    app = create_app(settings)
    blobs = BlobCache(settings.blob_cache_bytes, settings.blob_cache_item_bytes)
    return HotIndex(
        ErrorLog(app),
        app.state.index,
        blobs,
        enabled=settings.anonymous_read,
        redirect_seconds=settings.redirect_seconds,
    )


def create_asgi_from_env() -> ASGIApp:
    """The app factory each process of ``packyard serve --workers N`` calls (settings from
    the environment, where ``serve`` put its command-line options), set up as ``serve`` is."""
    from packyard.cli.serve import log_to_stderr, steady_malloc

    steady_malloc()
    log_to_stderr()
    return from_environment()


def from_environment() -> ASGIApp:
    """The app from ``PACKYARD_*`` alone: for ASGI servers other than ``packyard serve``'s
    uvicorn (``granian --interface asgi --factory packyard.app:from_environment``), which
    ``bench/downloads.py`` measures against it."""
    from packyard.settings import get_settings

    return create_asgi(get_settings())
