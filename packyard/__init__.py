"""packyard: namespace files, git sync, builds and a Python package index for flows.

``from packyard import Client`` is the Python API (``packyard/client.py``); it is imported
on first use, so ``import packyard`` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from packyard.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from packyard.client import Client

        return Client
    raise AttributeError(f"module 'packyard' has no attribute {name!r}")
