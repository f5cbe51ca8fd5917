"""The guarded HTTP protocol built from the environment's settings, reachable by import string.

``packyard serve --workers N`` starts its processes by spawning, which sends uvicorn's
configuration to each by pickling: a class made at run time (``guarded_protocol``) cannot
travel that way, so each process imports this module and builds the same class from the
same ``PACKYARD_*`` variables (``serve`` puts its command-line options there first).
"""

from __future__ import annotations

from packyard.protocol import guarded_protocol
from packyard.settings import Settings, get_settings


def protocol_for(settings: Settings) -> type:
    return guarded_protocol(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        headers_timeout=settings.headers_timeout,
        body_timeout=settings.body_timeout,
        body_min_rate=settings.body_min_rate,
    )


Protocol = protocol_for(get_settings())
