"""Defaults shared by the settings object and the task-run fast path.

Kept in a module that imports nothing heavy, so ``packyard run``'s fast path (see
``packyard/entry.py``) and ``packyard.settings.Settings`` read the same values.
"""

from __future__ import annotations

from pathlib import Path

URL = "http://127.0.0.1:8000"
CACHE_DIR = Path.home() / ".cache" / "packyard"
