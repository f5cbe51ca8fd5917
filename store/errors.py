"""The one exception family of packyard.

Every failure a user can cause or meet is one of these classes. The HTTP layer maps each
class to a status code in one table (``packyard/http_errors.py``) and the CLI maps each to an
exit code in one table (``packyard/cli_errors.py``), so a message is written once, here or
where it is raised, and reads the same on both sides.
"""

from __future__ import annotations

import errno


class PackyardError(Exception):
    """Base class: ``str(err)`` is a sentence that says what was wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PackyardError):
    """The request is malformed: a bad name, path, parameter or body."""


class InvalidName(InvalidInput):
    """A namespace, path or project name breaks the naming rules."""


class UnsafeArchive(InvalidInput):
    """An archive has unsafe member names or expands beyond the allowed limits."""


class NotAcceptable(InvalidInput):
    """No format the server offers fits the client's Accept header."""


class MethodNotAllowed(InvalidInput):
    """The path exists but does not serve this method; ``allow`` lists the ones it does."""

    def __init__(self, message: str, allow: list[str] | None = None) -> None:
        super().__init__(message)
        self.allow = allow or []


class RangeNotSatisfiable(InvalidInput):
    """A ``Range`` that starts at or past the end of the file; ``size`` is the file's size."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class NotFound(PackyardError):
    """The namespace, file, revision, token or object does not exist."""


class Conflict(PackyardError):
    """The change contradicts what is stored (an existing target, an immutable file)."""


class TooLarge(PackyardError):
    """A body or archive exceeds a configured size limit."""


class QuotaExceeded(PackyardError):
    """A write would take a namespace's subtree past its quota; nothing was stored.

    Not a :class:`StorageFull` (a backend outage that clears by itself): retrying does not
    help until someone frees space in the namespace or raises its quota.
    """


class Unauthenticated(PackyardError):
    """No credentials, or credentials that match no live token."""


class Forbidden(PackyardError):
    """Valid credentials whose scope or role do not allow the operation."""


class RemoteFailed(PackyardError):
    """A remote the server talks to for the user (a git remote, an upstream index) failed."""


class BackendUnavailable(PackyardError):
    """The blob backend (local disk or S3) failed; the operation changed nothing."""


class NotInstalled(PackyardError):
    """A part of packyard this installation lacks: the base install (``pip install packyard``)
    is the client; the server's commands need ``pip install 'packyard[server]'``."""


class StorageFull(BackendUnavailable):
    """The disk (or quota) that holds the blobs or the catalog is full; nothing was changed.

    Reads keep working; writes resume once an operator frees space (``/healthz`` reports it).
    """


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full disk or quota, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL


def storage_full(what: str = "the server's data folder") -> StorageFull:
    return StorageFull(
        f"no space left on the disk that holds {what}: nothing was stored. Reads still work; "
        "retry once the operator has freed space (GET /healthz shows the free space)"
    )
