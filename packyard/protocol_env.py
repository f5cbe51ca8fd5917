"""The guarded HTTP protocol (``packyard/protocol.py``) with the limits the settings set.

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
