"""uvicorn's options from the settings: the guarded HTTP protocol (``packyard/protocol.py``)
with the limits the settings set, logging and keep-alive.

Every server process builds its own: ``serve`` for its one process, and each process of
``serve --workers N`` from the same ``PACKYARD_*`` variables (``serve`` puts its
command-line options there first; see ``packyard/processes.py``).
"""

from __future__ import annotations

from packyard.protocol import guarded_protocol
from packyard.settings import Settings


def protocol_for(settings: Settings) -> type:
    return guarded_protocol(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        headers_timeout=settings.headers_timeout,
        body_timeout=settings.body_timeout,
        body_min_rate=settings.body_min_rate,
    )


def uvicorn_options(settings: Settings) -> dict:
    """What every server process passes to uvicorn besides where to listen and the app."""
    return {
        "log_level": "info" if settings.log_requests else "warning",
        "access_log": settings.log_requests,
        "http": protocol_for(settings),
        "timeout_keep_alive": settings.keep_alive_timeout,
    }
