"""``packyard serve``: the embedded server (local directory + SQLite unless S3 is set)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from packyard.defaults import absolute

M_MMAP_THRESHOLD = -3


def steady_malloc() -> None:
    """Pin glibc's mmap threshold at 1 MiB.

    glibc raises the threshold after large frees, after which every multi-megabyte upload
    buffer comes from the heap and the server's RSS ratchets up with each big file; pinned,
    such buffers are mapped and returned to the system as soon as they are freed.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1024 * 1024)


def log_to_stderr() -> None:
    """Send packyard's own log (``packyard.*``: failed requests, builds, the worker) to stderr,
    one timestamped line per record, whatever ``PACKYARD_LOG_REQUESTS`` says (that setting
    only adds uvicorn's line for every request)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("packyard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@click.command("serve")
@click.option("--host", help="Interface to bind (PACKYARD_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (PACKYARD_PORT, 8000).")
@click.option("--data", type=click.Path(path_type=Path), help="Data folder (PACKYARD_DATA, ./packyard-data).")
@click.option("--anonymous-read/--no-anonymous-read", default=None, help="Allow reads without a token.")
@click.option("--worker/--no-worker", default=None, help="Run one build worker in-process (PACKYARD_EMBEDDED_WORKER).")
@click.option(
    "--workers", type=click.IntRange(min=1), help="Server processes on this port (PACKYARD_WORKERS, 1): one per core."
)
@click.option(
    "--replicate/--no-replicate",
    default=None,
    help="Stream the SQLite catalog into the S3 bucket with Litestream (PACKYARD_REPLICATE); "
    "'packyard restore' brings it back.",
)
def serve(
    host: str | None,
    port: int | None,
    data: Path | None,
    anonymous_read: bool | None,
    worker: bool | None,
    workers: int | None,
    replicate: bool | None,
) -> None:
    """Run the packyard server (packyard[server])."""
    from packyard.cli.extras import require_server

    require_server("serve")
    import uvicorn

    from packyard.app import create_asgi

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
        _prepare_processes(settings, overrides)
        app = None
    else:
        app = create_asgi(settings)
    replicator = None
    if settings.replicate:
        from packyard.replication import Replicator, replica_path

        # after the store is open (and migrated): Litestream replicates an existing catalog
        replicator = Replicator(settings).start()
        print(f"replicating the catalog to s3://{settings.s3_bucket}/{replica_path(settings)}", flush=True)
    status = 0
    try:
        if app is None:
            status = _serve_processes(settings)
        else:
            _banner(settings, settings.port)
            _run(uvicorn, app, settings)
    finally:
        if replicator is not None:
            replicator.stop()
    if status:
        sys.exit(status)


def _banner(settings, port: int) -> None:  # noqa: ANN001 - packyard.settings.Settings
    print(
        f"packyard serving on http://{settings.host}:{port} "
        f"(backend {settings.backend}, data {settings.data}, {settings.workers} process(es))",
        flush=True,
    )


def _run(uvicorn, app: object, settings) -> None:  # noqa: ANN001 - modules and settings imported when serving
    from packyard.protocol_env import uvicorn_options

    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        **uvicorn_options(settings),
    )


def _prepare_processes(settings, overrides: dict[str, object]) -> None:  # noqa: ANN001 - packyard.settings.Settings
    """Before ``--workers N`` starts its processes: the options where they read them, the
    shared worker token, and the store opened once (a bad catalog fails here, with the
    reason, and migrations run once, before any process starts)."""
    import secrets

    from packyard.wiring import open_store
    from packyard.worker import SHARED_SECRET_ENV

    # each process builds its own app from the environment: hand the options over there
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"PACKYARD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    # the embedded workers' token, known to every process (a worker's call may reach any)
    os.environ.setdefault(SHARED_SECRET_ENV, f"pky_internal_{secrets.token_urlsafe(32)}")
    open_store(settings).close()


def _serve_processes(settings) -> int:  # noqa: ANN001 - packyard.settings.Settings
    """``--workers N`` (N > 1): N processes, each with its own socket on the port (``packyard/processes.py``);
    the exit status."""
    from packyard import processes

    def announce(port: int) -> None:
        os.environ["PACKYARD_PORT"] = str(port)  # a port of 0 becomes the one chosen, for every process
        _banner(settings, port)

    listen = processes.Listen(settings.host, settings.port)
    return processes.run(listen, settings.workers, announce)


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
