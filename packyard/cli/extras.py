"""Which commands need the server's dependencies, and the one line a base install prints.

``pip install packyard`` is the client: the commands that only talk HTTP to a server. The
server (``serve``), the build ``worker`` and the operator's commands that open the store
directly (``fsck``, ``gc``, ``token --local``) need ``pip install 'packyard[server]'``; in a
base install they say so in one line instead of failing on an import deep inside.
"""

from __future__ import annotations

import importlib.util

from packyard.store.errors import NotInstalled

SERVER_MODULES = ("fastapi", "uvicorn", "pydantic_settings", "minio", "psycopg", "git", "build", "jinja2")
"""Import names of the ``[server]`` extra's distributions (pyproject.toml)."""


def require_server(command: str) -> None:
    """Raise :class:`NotInstalled` naming ``command`` when the server extra is not installed."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise NotInstalled(
            f"'packyard {command}' is part of the packyard server, which this installation lacks "
            f"(no {', '.join(missing)}): pip install 'packyard[server]'"
        )
