"""Which server credentials a namespace may name: listed environment variables, scoped to namespaces.

Settings such as ``upstream_auth_env`` or a sync's ``--token-env`` name an environment
variable of the server instead of holding a secret. Without a limit, anyone allowed to
change such a setting could point it at ``PACKYARD_ADMIN_TOKEN`` or the S3 secret key and
an upstream URL they control, and the server would send them its own secrets. So only the
variables the operator lists in ``PACKYARD_CREDENTIAL_ENVS`` may be named, checked both when
a setting is made and every time a credential is read.

Listing a variable is not enough between tenants: a writer of ``c`` who may name the token
the operator meant for ``a`` could sync ``a``'s private repository with it, or point an
upstream at a host of their own with that token as its credential. So an entry may carry a
scope, ``NAME:namespace`` — then only settings and syncs of that namespace and its
descendants may name it (repeat the entry for several subtrees). A bare ``NAME`` is shared
by every namespace, as before: the operator lists a credential that way only when every
tenant may use it. The check is always against the namespace the setting belongs to (the
one whose sync it is, or that sets ``upstream_auth_env``), never the caller's token.

Files in ``PACKYARD_SECRETS_DIR`` follow the same rule by folder: ``<secrets>/<namespace>/NAME``
serves that namespace and its descendants (the nearest one wins), a file at the top of the
folder is shared by every namespace (see :func:`secret_file`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from packyard.store.errors import Forbidden, InvalidInput
from packyard.store.names import ancestors, is_within, validate_namespace

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_entries(allowed: Iterable[str]) -> dict[str, list[str | None]]:
    """``NAME`` / ``NAME:namespace`` entries as name -> scopes (``None``: every namespace)."""
    scopes: dict[str, list[str | None]] = {}
    for entry in allowed:
        name, _, scope = entry.strip().partition(":")
        scopes.setdefault(name.strip(), []).append(scope.strip() or None)
    return scopes


def check_entries(allowed: Iterable[str]) -> None:
    """Refuse a malformed ``PACKYARD_CREDENTIAL_ENVS`` at start-up (ValueError names the entry)."""
    for entry in allowed:
        if entry.strip().endswith(":"):
            raise ValueError(f"PACKYARD_CREDENTIAL_ENVS: {entry.strip()!r} names no namespace after ':'")
    for name, scopes in parse_entries(allowed).items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"PACKYARD_CREDENTIAL_ENVS: {name!r} is not an environment variable name")
        for scope in scopes:
            if scope is not None:
                try:
                    validate_namespace(scope)
                except InvalidInput as exc:
                    raise ValueError(f"PACKYARD_CREDENTIAL_ENVS: {name}:{scope}: {exc.message}") from exc


def env_allowed(name: str, allowed: Iterable[str], namespace: str) -> bool:
    """True when ``namespace`` may name the variable ``name``."""
    return any(scope is None or is_within(namespace, scope) for scope in parse_entries(allowed).get(name, []))


def allowed_env(name: str, allowed: Iterable[str], what: str, *, namespace: str) -> str:
    """``name``, if the settings of ``namespace`` may name it as a credential; else Forbidden.

    The refusal is the same for a variable that is not listed and one listed for another
    namespace, so a tenant learns nothing about which credentials other tenants have.
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not an environment variable name")
    if not env_allowed(name, allowed, namespace):
        raise Forbidden(
            f"{what} may only name an environment variable the server lists in PACKYARD_CREDENTIAL_ENVS "
            f"for this namespace; {name!r} is not listed for {namespace!r}"
        )
    return name


def secret_file(secrets_dir: Path, name: str, namespace: str) -> Path | None:
    """The secrets file ``name`` as ``namespace`` sees it: ``<secrets>/<ns>/name`` for the nearest
    of the namespace and its ancestors that has one, else the shared ``<secrets>/name``."""
    for ns in ancestors(namespace):
        path = Path(secrets_dir) / ns / name
        if path.is_file():
            return path
    path = Path(secrets_dir) / name
    return path if path.is_file() else None
