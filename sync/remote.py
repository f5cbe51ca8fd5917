"""Which git remotes a sync or push may talk to: network ones, and local folders the operator lists.

A ``file://`` URL makes git read (or, for a push, write) a repository on the *server's* disk
with the server's rights: the data folder's mirrors — fetched by other namespaces with
their credentials — or any repository the process can open. So server-local repositories
are off unless the operator lists folders (``PACKYARD_SYNC_LOCAL_ROOTS``); the path is
resolved (symlinks, ``..``) before it is compared, the data and secrets folders are
refused even inside a listed folder, and git is handed the resolved path.

Git itself is held to the same rule: every git run gets ``GIT_ALLOW_PROTOCOL`` with the
network transports only (plus ``file`` for an approved local URL), so no transport slips
through a form :func:`sync.credentials.check_url` did not think of — ``ext::``, ``fd::``,
remote helpers, a submodule or redirect to a local path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from store.errors import Forbidden, InvalidInput
from sync.credentials import NETWORK_PROTOCOLS, check_url, redact_url


def parse_roots(text: str) -> tuple[Path, ...]:
    """``PACKYARD_SYNC_LOCAL_ROOTS`` (comma-separated folders) as resolved absolute paths."""
    roots = []
    for item in text.split(","):
        if item.strip():
            path = Path(item.strip())
            if not path.is_absolute():
                raise ValueError(f"PACKYARD_SYNC_LOCAL_ROOTS: {item.strip()!r} is not an absolute path")
            roots.append(Path(os.path.realpath(path)))
    return tuple(roots)


@dataclass(frozen=True)
class RemotePolicy:
    local_roots: tuple[Path, ...] = ()
    """Folders whose repositories may be synced from and pushed to (resolved)."""
    forbidden: tuple[Path, ...] = ()
    """Folders never reachable, whatever ``local_roots`` says: the data and secrets folders."""

    @classmethod
    def of(cls, local_roots: str, *forbidden: Path | None) -> RemotePolicy:
        return cls(parse_roots(local_roots), tuple(Path(os.path.realpath(p)) for p in forbidden if p is not None))

    def check(self, url: str) -> tuple[str, str]:
        """(URL to give git, ``GIT_ALLOW_PROTOCOL`` value) for ``url``, or a refusal."""
        check_url(url)
        parts = urlsplit(url)
        if parts.scheme == "file":
            return self._local(parts.netloc, unquote(parts.path), url)
        if parts.scheme and not parts.hostname:
            # "http::/srv/x" is git's remote-helper form, not a URL: no host, no network
            raise InvalidInput(f"{redact_url(url)!r} names no host")
        return url, NETWORK_PROTOCOLS

    def _local(self, host: str, path: str, url: str) -> tuple[str, str]:
        if host not in ("", "localhost"):
            raise InvalidInput(f"{redact_url(url)!r}: a file:// URL names no host")
        if not self.local_roots:
            raise Forbidden(
                f"{redact_url(url)!r} is a repository on the server's disk; this server allows none "
                "(the operator lists folders in PACKYARD_SYNC_LOCAL_ROOTS)"
            )
        resolved = Path(os.path.realpath(path))
        inside = any(resolved.is_relative_to(root) for root in self.local_roots)
        hidden = any(resolved.is_relative_to(f) or f.is_relative_to(resolved) for f in self.forbidden)
        if not inside or hidden:
            # one answer for both: the caller learns nothing about the server's folders
            raise Forbidden(f"{redact_url(url)!r} is not inside a folder this server allows syncs from")
        return resolved.as_uri(), f"{NETWORK_PROTOCOLS}:file"
