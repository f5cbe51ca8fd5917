"""Defaults shared by the settings object and the task-run fast path.

Kept in a module that imports nothing heavy, so ``packyard run``'s fast path (see
``packyard/entry.py``) and ``packyard.settings.Settings`` read the same values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

URL = "http://127.0.0.1:8000"
CACHE_DIR = Path.home() / ".cache" / "packyard"


def absolute(path: str | Path) -> Path:
    """``~`` expanded and made absolute against the current directory (symbolic links kept).

    Every configured path goes through this once, when it is read: a relative path handed on
    to another process (a build's work folder, bubblewrap, git) would mean another folder there.
    """
    return Path(os.path.abspath(Path(path).expanduser()))


class ClientSettings:
    """What the client side reads from the environment: ``PACKYARD_URL``, ``PACKYARD_TOKEN``
    and ``PACKYARD_CACHE_DIR``.

    The standard library only (not even dataclasses: it imports ``inspect``, and every
    command's start-up counts): a base install (the client, without ``[server]``) has no
    pydantic-settings. The server's :class:`packyard.settings.Settings` has the same three
    fields with the same defaults (from this module), for the build worker.
    """

    __slots__ = ("url", "token", "cache_dir")

    def __init__(self, url: str = URL, token: str | None = None, cache_dir: Path = CACHE_DIR) -> None:
        self.url, self.token, self.cache_dir = url, token, cache_dir

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if environ is None else environ
        return cls(
            url=env.get("PACKYARD_URL") or URL,
            token=env.get("PACKYARD_TOKEN") or None,
            cache_dir=absolute(env.get("PACKYARD_CACHE_DIR") or CACHE_DIR),
        )
