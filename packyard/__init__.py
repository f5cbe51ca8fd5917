"""packyard: namespace files, git sync, builds and a Python package index for flows.

``from packyard import Client`` is the Python API (``packyard/client.py``); it is imported
on first use, so ``import packyard`` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

# The wheel installs store/, sync/ and builder/ as packyard.store, .sync and .builder
# (pyproject's package-dir). In a checkout they sit beside this folder, and Python imports
# this folder rather than the installed copy whenever the checkout is the working directory
# (`python -m packyard serve` right after `pip install '.[server]'`): look for them there too.
_here = os.path.dirname(os.path.realpath(__file__))
_checkout = os.path.dirname(_here)
if not os.path.isdir(os.path.join(_here, "store")) and os.path.isfile(os.path.join(_checkout, "store", "__init__.py")):
    __path__.append(_checkout)  # noqa: F821 (a package's __path__)
del _here, _checkout

if TYPE_CHECKING:
    from packyard.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from packyard.client import Client

        return Client
    raise AttributeError(f"module 'packyard' has no attribute {name!r}")
