"""Environment bundles on the client: pack a finished environment, unpack one on a fresh worker.

Standard library only, like ``keys.py``: the start-up fast path (``packyard/entry.py``)
materialises a bundled environment without importing the full CLI.

An environment created with ``uv venv --relocatable`` holds one absolute path: the base
interpreter (the ``bin/python`` link and ``home`` in ``pyvenv.cfg``). The bundle leaves
that link out, and unpacking points both at this worker's interpreter for the same Python
version — the environment's key already pins the version, platform and implementation.

The bundle carries the bytecode compiled when the environment was built (``__pycache__``),
so no worker compiles on import — with ``PYTHONDONTWRITEBYTECODE=1`` a run would otherwise
compile every module on every start. Those ``.pyc`` files stay valid where the bundle is
unpacked: they are checked against their source's mtime and size, which the tar keeps and
extraction restores, and the source path they embed is only a default that the import
system replaces with where the module really is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from packyard.runs.keys import COMPLETE, env_dir_name
from packyard.store.errors import InvalidInput


def base_interpreter() -> Path:
    """This interpreter's base (outside any virtual environment), as ``uv venv`` links it."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable)


def pack(env: Path, out: BinaryIO) -> None:
    """Write ``env`` as a gzip'd tar, with its bytecode and every file's mtime (which the
    ``.pyc`` files are checked against): no marker, no absolute links."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as archive:
        for folder, dirs, files in os.walk(env):
            dirs.sort()
            for name in dirs + sorted(files):
                path = Path(folder, name)
                rel = path.relative_to(env)
                if rel.as_posix() == COMPLETE or (path.is_symlink() and os.path.isabs(os.readlink(path))):
                    continue  # bin/python -> the base interpreter: linked again where it is unpacked
                archive.add(path, arcname=rel.as_posix(), recursive=False, filter=anonymous)


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.hash = stream, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.hash.update(data)
        return data


def unpack(stream: BinaryIO, target: Path, sha256: str | None, base: Path) -> None:
    """Extract a bundle into the new folder ``target`` and point it at ``base``.

    The ``data`` filter refuses absolute or ``..`` names, links that leave the folder and
    device files, whatever the server checked; the digest is checked over the whole stream.
    """
    reader = _Hashing(stream)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=reader, mode="r|gz") as archive:  # type: ignore[call-overload]
        archive.extractall(target, filter="data")
    while reader.read(1 << 16):
        pass
    if sha256 is not None and reader.hash.hexdigest() != sha256:
        raise InvalidInput(f"bundle digest {reader.hash.hexdigest()} is not the announced {sha256}")
    config = target / "pyvenv.cfg"
    if not config.is_file():
        raise InvalidInput("bundle holds no pyvenv.cfg")
    lines = config.read_text().splitlines()
    lines = [f"home = {base.parent}" if line.partition("=")[0].strip() == "home" else line for line in lines]
    config.write_text("\n".join(lines) + "\n")
    link = target / "bin" / "python"
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(base)


@contextlib.contextmanager
def building(root: Path, key: str) -> Iterator[Path]:
    """Hold the key's lock file (concurrent runs for one new environment wait here), after
    removing what an interrupted build or unpack left — temporary folders, and any folder of
    this key without its completion marker, which no run ever uses; yields ``envs``."""
    envs = Path(root) / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    with open(envs / f"{key}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        for leftover in [*envs.glob(f".{key}*"), *envs.glob(f"{key}*")]:
            if leftover.is_dir() and not (leftover / COMPLETE).exists():
                shutil.rmtree(leftover, ignore_errors=True)
        yield envs


def materialise(
    opened: tuple[dict[str, str], BinaryIO] | None, envs: Path, key: str, lock: str, chain: list[str], base: Path
) -> Path | None:
    """Unpack an open bundle response into the cache (under ``building``); None if unusable.

    ``opened`` is (lower-case headers, body) of ``GET /api/v1/namespaces/NS/bundles/KEY``;
    the bundle is used only if the namespace that stored it is in NS's index chain.
    """
    if opened is None:
        return None
    headers, body = opened
    source = headers.get("x-packyard-bundle-namespace")
    if source not in chain:
        return None
    final = envs / env_dir_name(key, source)
    work = envs / f".{final.name}.{uuid.uuid4().hex}"
    try:
        unpack(body, work, headers.get("etag", "").strip('"') or None, base)
        (work / COMPLETE).write_text(lock)
        os.rename(work, final)
    except Exception:  # noqa: BLE001 - a bundle is an optimisation: any failure means "build it"
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


__all__ = ["base_interpreter", "building", "materialise", "pack", "unpack"]
