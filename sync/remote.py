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

Network remotes get the rule upstreams have (store/egress.py): a tenant's writer names the
URL and the server connects, from inside its network — so without a rule a sync or push of
``ssh://10.0.0.5:6379/x`` would probe internal hosts and report open/closed in the error.
The host is resolved when the request is made (and again when a registered sync runs), and
refused unless every address is public or allowed by ``PACKYARD_SYNC_ALLOW_HOSTS`` — a
setting of its own, because the git servers a team syncs from (``git.corp.example``) are
rarely the package indexes it may proxy. Git then connects to the address that was checked
(``http.curloptResolve`` pins it for http(s), so a name cannot answer a public address to
the check and a private one to git), follows no redirect, and its connection errors reach
the caller only as "could not connect" (the detail goes to the server log).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packyard.store.egress import HostPolicy, HostRefused
from packyard.store.errors import Forbidden, InvalidInput
from packyard.sync.credentials import NETWORK_PROTOCOLS, check_url, redact_url


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


log = logging.getLogger("packyard.sync")

SETTING = "PACKYARD_SYNC_ALLOW_HOSTS"
_CONNECT = re.compile(
    r"Failed to connect|Could not resolve|Connection refused|Connection reset|Connection timed out|"
    r"timed out|No route to host|Network is unreachable|unable to connect|ssh: connect to host|"
    r"Connection closed by|kex_exchange_identification|Send failure|"
    r"SSL|TLS|certificate|gnutls|Recv failure|early EOF|unexpected disconnect|Empty reply",
    re.IGNORECASE,
)
DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}


@dataclass(frozen=True)
class RemotePolicy:
    local_roots: tuple[Path, ...] = ()
    """Folders whose repositories may be synced from and pushed to (resolved)."""
    forbidden: tuple[Path, ...] = ()
    """Folders never reachable, whatever ``local_roots`` says: the data and secrets folders."""
    hosts: HostPolicy = HostPolicy(setting=SETTING)
    """Which network hosts git may reach: public addresses, plus ``PACKYARD_SYNC_ALLOW_HOSTS``."""

    @classmethod
    def of(cls, local_roots: str, *forbidden: Path | None, allow_hosts: str = "") -> RemotePolicy:
        return cls(
            parse_roots(local_roots),
            tuple(Path(os.path.realpath(p)) for p in forbidden if p is not None),
            HostPolicy.parse(allow_hosts, SETTING),
        )

    def check(self, url: str) -> tuple[str, str, dict[str, str]]:
        """(URL to give git, ``GIT_ALLOW_PROTOCOL`` value, git config to run with) for ``url``, or a refusal."""
        check_url(url)
        parts = urlsplit(url)
        if parts.scheme == "file":
            return (*self._local(parts.netloc, unquote(parts.path), url), {})
        if parts.scheme and not parts.hostname:
            # "http::/srv/x" is git's remote-helper form, not a URL: no host, no network
            raise InvalidInput(f"{redact_url(url)!r} names no host")
        if parts.scheme:
            host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]
        else:  # scp-like: user@host:path
            host, port = url.split("@", 1)[1].split(":", 1)[0], 22
        try:
            addresses = self.hosts.resolve(host, port)
        except HostRefused as exc:
            raise Forbidden(f"{redact_url(url)!r}: {exc.message}") from None
        config = {"http.followRedirects": "false"}
        if parts.scheme in ("http", "https"):
            # git (curl) connects to the address checked here, not to whatever the name answers next
            name = host if ":" not in host else f"[{host}]"
            pinned = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
            config["http.curloptResolve"] = f"{name}:{port}:{pinned}"
        return url, NETWORK_PROTOCOLS, config

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


def public_detail(detail: str, shown: str) -> str:
    """What of git's error text the caller may see: none of its connection-level detail.

    "Connection refused" against "timed out" against "SSL" or an HTTP status is exactly what
    a port scan wants to learn, so those all read "could not connect"; the server log keeps
    git's words for the operator. Answers of a remote git did reach (no such branch,
    authentication failed) pass through unchanged.
    """
    if _CONNECT.search(detail):
        log.warning("git could not reach %s: %s", shown, detail)
        return "could not connect to the remote, or it did not answer as a git server (the server log has git's words)"
    return detail
