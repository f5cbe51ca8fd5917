"""Which server environment variables a namespace may name as a credential.

Settings such as ``upstream_auth_env`` or a sync's ``--token-env`` name an environment
variable of the server instead of holding a secret. Without a limit, anyone allowed to
change such a setting could point it at ``PACKYARD_ADMIN_TOKEN`` or the S3 secret key and
an upstream URL they control, and the server would send them its own secrets. So only the
variables the operator lists in ``PACKYARD_CREDENTIAL_ENVS`` may be named, checked both when
a setting is made and every time a credential is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from store.errors import Forbidden, InvalidInput

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def allowed_env(name: str, allowed: Iterable[str], what: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not an environment variable name")
    if name not in set(allowed):
        raise Forbidden(
            f"{what} may only name an environment variable the server lists in PACKYARD_CREDENTIAL_ENVS; "
            f"{name!r} is not listed"
        )
    return name
