"""Defaults shared by the settings object and the task-run fast path.

Kept in a module that imports nothing heavy, so ``packyard run``'s fast path (see
``packyard/entry.py``) and ``packyard.settings.Settings`` read the same values.
"""

from __future__ import annotations

import os
from pathlib import Path

URL = "http://127.0.0.1:8000"
CACHE_DIR = Path.home() / ".cache" / "packyard"


def absolute(path: str | Path) -> Path:
    """``~`` expanded and made absolute against the current directory (symbolic links kept).

    Every configured path goes through this once, when it is read: a relative path handed on
    to another process (a build's work folder, bubblewrap, git) would mean another folder there.
    """
    return Path(os.path.abspath(Path(path).expanduser()))
