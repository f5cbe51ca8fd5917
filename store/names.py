"""Naming rules for namespaces and namespace file paths.

These checks are the only gate between a client-supplied string and a filesystem path, an
S3 key or a zip member name, so they accept a deliberately small language: anything that
could climb out of its folder, hide a second path in an encoding, or mean different things
on different platforms is refused here, once, before any byte is read.
"""

from __future__ import annotations

import re
import unicodedata

from packyard.store.errors import InvalidName

NAMESPACE_MAX = 255
SEGMENT_MAX_BYTES = 255
PATH_MAX_BYTES = 1024

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_PROJECT = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", re.ASCII)
"""The core metadata specification's project name, spelled out in ASCII without ``re.I``:
Python's case-insensitive matching folds the Kelvin sign and the dotless i into ASCII
letters, and ``canonicalize_name`` lower-cases them into another project's name."""
NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$"
"""The namespace rule as one regular expression, for the OpenAPI document (length aside)."""


def validate_namespace(name: str) -> str:
    """Return ``name`` if it is a valid namespace, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not name:
        raise InvalidName("namespace name is empty; use dotted lowercase segments like 'company.sales'")
    if len(name) > NAMESPACE_MAX:
        raise InvalidName(f"namespace name is longer than {NAMESPACE_MAX} characters")
    for segment in name.split("."):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidName(
                f"invalid namespace {name!r}: each dot-separated segment must start with a "
                "lowercase letter or digit and hold only a-z, 0-9, '_' and '-'"
            )
    return name


def ancestors(namespace: str) -> list[str]:
    """The namespace followed by its ancestors, nearest first: ``a.b.c`` -> ``[a.b.c, a.b, a]``."""
    parts = validate_namespace(namespace).split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def is_within(namespace: str, scope: str) -> bool:
    """True when ``namespace`` is ``scope`` itself or one of its descendants."""
    return namespace == scope or namespace.startswith(scope + ".")


def validate_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise :class:`InvalidName`."""
    if not isinstance(path, str) or not path:
        raise InvalidName("file path is empty")
    if path.startswith("/"):
        raise InvalidName(f"file path {path!r} is absolute; give a path relative to the namespace")
    if "\\" in path:
        raise InvalidName(f"file path {path!r} contains a backslash; use '/' as the separator")
    for char in path:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidName(f"file path {path!r} contains a control or invalid character")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:  # pragma: no cover - surrogates are caught above
        raise InvalidName(f"file path {path!r} is not valid UTF-8") from exc
    if len(encoded) > PATH_MAX_BYTES:
        raise InvalidName(f"file path is longer than {PATH_MAX_BYTES} bytes")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidName(
                f"file path {path!r} has an empty, '.' or '..' segment; paths must stay inside the namespace"
            )
        if len(segment.encode("utf-8")) > SEGMENT_MAX_BYTES:
            raise InvalidName(f"a segment of file path {path!r} is longer than {SEGMENT_MAX_BYTES} bytes")
    return path


def validate_prefix(prefix: str | None) -> str:
    """A listing prefix: empty, or a valid path optionally ending in '/'."""
    if not prefix:
        return ""
    validate_path(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def validate_project(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise :class:`InvalidName`.

    Look-alike names (fullwidth ``ｅｔｌ``, Cyrillic ``еtl``, ``Ketl`` with a Kelvin sign) would
    otherwise be other projects that read the same, or fold into an existing one.
    """
    if not isinstance(name, str) or not _PROJECT.fullmatch(name):
        raise InvalidName(
            f"{name!r} is not a valid project name: project names are ASCII by the core metadata "
            "specification (letters A-Z, digits, '.', '_' and '-', starting and ending with a letter or digit)"
        )
    return name


def normalize_project(name: str) -> str:
    """PEP 503 normal form of a valid project name, via ``packaging``."""
    # imported here: packaging.utils brings packaging.tags (platform, logging), which the
    # client's commands that only validate a namespace or a path never need (start-up time)
    from packaging.utils import canonicalize_name

    return canonicalize_name(validate_project(name))
