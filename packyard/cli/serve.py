"""``packyard serve``: the embedded server (local directory + SQLite unless S3 is set)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import sys
from pathlib import Path

import typer

from packyard.defaults import absolute

M_MMAP_THRESHOLD = -3


def steady_malloc() -> None:
    """Pin glibc's mmap threshold at 1 MiB.

    glibc raises the threshold after large frees, after which every multi-megabyte upload
    buffer comes from the heap and the server's RSS ratchets up with each big file; pinned,
    such buffers are mapped and returned to the system as soon as they are freed.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1024 * 1024)


def log_to_stderr() -> None:
    """Send packyard's own log (``packyard.*``: failed requests, builds, the worker) to stderr,
    one timestamped line per record, whatever ``PACKYARD_LOG_REQUESTS`` says (that setting
    only adds uvicorn's line for every request)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("packyard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(
    host: str = typer.Option(None, "--host", help="Interface to bind (PACKYARD_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port (PACKYARD_PORT, 8000)."),
    data: Path = typer.Option(None, "--data", help="Data folder (PACKYARD_DATA, ./packyard-data)."),
    anonymous_read: bool = typer.Option(
        None, "--anonymous-read/--no-anonymous-read", help="Allow reads without a token."
    ),
    worker: bool = typer.Option(
        None, "--worker/--no-worker", help="Run one build worker in-process (PACKYARD_EMBEDDED_WORKER)."
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="Server processes on this port (PACKYARD_WORKERS, 1): one per core."
    ),
    replicate: bool = typer.Option(
        None,
        "--replicate/--no-replicate",
        help="Stream the SQLite catalog into the S3 bucket with Litestream (PACKYARD_REPLICATE); "
        "'packyard restore' brings it back.",
    ),
) -> None:
    """Run the packyard server."""
    import uvicorn

    from packyard.app import create_asgi
    from packyard.wiring import open_store
    from packyard.worker import SHARED_SECRET_ENV

    settings = _settings()
    overrides = {
        "host": host,
        "port": port,
        "data": absolute(data) if data is not None else None,
        "anonymous_read": anonymous_read,
        "embedded_worker": worker,
        "workers": workers,
        "replicate": replicate,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if settings.replicate:
        from packyard.replication import check_replicable, litestream_binary

        check_replicable(settings, "--replicate")  # before anything starts: one line, and why
        litestream_binary()
    steady_malloc()
    log_to_stderr()
    if settings.workers > 1:
        # each process builds its own app from the environment: hand the options over there
        for name, value in overrides.items():
            if value is not None:
                os.environ[f"PACKYARD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        # the embedded workers' token, known to every process (a worker's call may reach any)
        os.environ.setdefault(SHARED_SECRET_ENV, f"pky_internal_{secrets.token_urlsafe(32)}")
        open_store(settings).close()  # fails the start once, with the reason, and migrates before the fork
        app: object = "packyard.app:create_asgi_from_env"
    else:
        app = create_asgi(settings)
    replicator = None
    if settings.replicate:
        from packyard.replication import Replicator, replica_path

        # after the store is open (and migrated): Litestream replicates an existing catalog
        replicator = Replicator(settings).start()
        print(f"replicating the catalog to s3://{settings.s3_bucket}/{replica_path(settings)}", flush=True)
    print(
        f"packyard serving on http://{settings.host}:{settings.port} "
        f"(backend {settings.backend}, data {settings.data}, {settings.workers} process(es))",
        flush=True,
    )
    try:
        _run(uvicorn, app, settings)
    finally:
        if replicator is not None:
            replicator.stop()


def _run(uvicorn, app: object, settings) -> None:  # noqa: ANN001 - modules and settings imported when serving
    from packyard.protocol_env import protocol_for

    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=settings.workers > 1,
        workers=settings.workers if settings.workers > 1 else None,
        host=settings.host,
        port=settings.port,
        log_level="info" if settings.log_requests else "warning",
        access_log=settings.log_requests,
        # several processes load the protocol by import string (see packyard/protocol_env.py)
        http="packyard.protocol_env:Protocol" if settings.workers > 1 else protocol_for(settings),
        timeout_keep_alive=settings.keep_alive_timeout,
    )


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
