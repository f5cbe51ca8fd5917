"""Verified downloads into a folder: temp file, sha256 check, atomic rename — or nothing.

A file whose bytes do not match the expected hash is deleted and reported; a path that
would land outside the destination (through ``..`` or a symlinked folder) is refused
before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from packyard.client import Client
from packyard.store.errors import InvalidInput, RemoteFailed

CHUNK = 1024 * 1024
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import (os.umask is process-wide; downloads run in threads)


def inside(dest: Path, relative: str) -> Path:
    """``dest/relative``, refusing anything that resolves outside ``dest``."""
    root = dest.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise InvalidInput(f"{relative} would land outside {dest}; refusing to write it")
    return target


def sha256_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(client: Client, url: str, target: Path, expected: str, params: dict | None = None) -> int:
    """Stream ``url`` to ``target`` if its sha256 is ``expected``; returns the size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, client.stream(url, params) as response:
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != expected:
            raise RemoteFailed(
                f"{target.name} does not match its sha256 (expected {expected}, got {digest.hexdigest()}); deleted"
            )
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a downloaded file gets the usual mode
        os.replace(tmp, target)
        return size
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
