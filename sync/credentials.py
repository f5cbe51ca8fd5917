"""Git credentials by reference, and the redaction that keeps them out of every output.

A sync never stores a secret: it stores a reference — an environment variable of the
server, or a file name inside the server's secrets folder — and the secret is read when
git runs. It reaches git through the environment (``GIT_CONFIG_*`` for an HTTP header,
``GIT_SSH_COMMAND`` for a key), never through the command line or a remote URL, so it can
appear in no process listing and no git error message. Everything git prints passes
through :func:`redact` anyway, as does any URL that arrived with ``user:token@`` or a
credential-looking query parameter (``?token=``, ``?access_token=``...) in it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from packyard.store.credentials import allowed_env, secret_file
from packyard.store.errors import InvalidInput

NETWORK_PROTOCOLS = "http:https:ssh:git"
"""``GIT_ALLOW_PROTOCOL`` for every remote that is not an approved local folder (sync/remote.py)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class CredentialRef:
    """Where a secret lives. ``kind`` is ``token`` (https) or ``ssh_key``."""

    kind: str = "token"
    env: str | None = None
    file: str | None = None
    username: str = "x-access-token"

    def __post_init__(self) -> None:
        if self.kind not in ("token", "ssh_key"):
            raise InvalidInput("a credential is a 'token' (https) or an 'ssh_key'")
        if (self.env is None) == (self.file is None):
            raise InvalidInput("a credential names exactly one environment variable or one secrets file")
        if self.env is not None and not _NAME.fullmatch(self.env):
            raise InvalidInput(f"{self.env!r} is not an environment variable name")
        if self.file is not None and (not _FILE.fullmatch(self.file) or self.file.startswith(".")):
            raise InvalidInput(f"{self.file!r} is not a file name inside the secrets folder")

    def to_dict(self) -> dict:
        return asdict(self)

    def read(self, secrets_dir: Path | None, allowed_envs: tuple[str, ...], namespace: str) -> str:
        """The secret, as the settings of ``namespace`` may see it (store/credentials.py)."""
        if self.env is not None:
            allowed_env(self.env, allowed_envs, "a git credential", namespace=namespace)
            value = os.environ.get(self.env)
            if not value:
                raise InvalidInput(f"the server has no environment variable {self.env} for this credential")
            return value
        if secrets_dir is None:
            raise InvalidInput("the server has no secrets folder configured (PACKYARD_SECRETS_DIR)")
        path = secret_file(Path(secrets_dir), str(self.file), namespace)
        if path is None:
            raise InvalidInput(f"the secrets folder has no file {self.file!r} for {namespace!r}")
        return path.read_text().strip() if self.kind == "token" else path.read_text()


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``https://user:tok@host/x`` -> (``https://host/x``, user, tok); other URLs unchanged."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        return clean, unquote(parts.username or ""), unquote(parts.password or "") or None
    return url, None, None


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git", "file"):
        if parts.scheme not in ("http", "https") and _password(url):
            # only http(s) can carry a token (as a header); elsewhere git would put it on a
            # command line or in an error message, so such a URL is refused outright
            raise InvalidInput(
                f"{redact_url(url)!r} has a password in it, which only http(s) URLs may carry; "
                "name a credential instead (--ssh-key-env VAR or --ssh-key-file NAME)"
            )
        return url
    if re.fullmatch(r"[\w.-]+@[\w.-]+:[\w./~-]+", url):  # scp-like ssh: git@host:org/repo.git
        return url
    raise InvalidInput(f"{redact_url(url)!r} is not a git URL (https, http, ssh, git or file)")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """``url`` without any password or credential-looking query value in it, whatever its
    scheme (the user name and the parameter names stay, so the URL is still recognisable)."""
    clean, user, password = split_userinfo(url)
    if user or password:
        url = clean
    return redact(url, [])


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@")
_SECRET_PARAM = re.compile(
    r"([?&;](?:[A-Za-z0-9_.-]*(?:token|secret|passw|pwd|key|auth|credential|signature|sig)[A-Za-z0-9_.-]*)=)"
    r"[^&;#\s'\"]*",
    re.IGNORECASE,
)
"""A query parameter whose name says it carries a secret: ``?token=``, ``?access_token=``,
``&private_token=``, ``?api_key=``, ``X-Amz-Signature=``, ``?password=``..."""


def query_secrets(url: str) -> list[str]:
    """The values of ``url``'s credential-looking query parameters (to redact wherever git echoes them)."""
    return [match.group(0)[len(match.group(1)) :] for match in _SECRET_PARAM.finditer(url)]


def redact(text: str, secrets: list[str]) -> str:
    """Remove every secret, any ``user:password@`` in a URL and any credential-looking query
    value (``?token=...``) from ``text``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
        encoded = base64.b64encode(secret.encode()).decode()
        text = text.replace(encoded, "***")
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


class GitAuth:
    """The environment git runs with for one operation, and the secrets to redact."""

    def __init__(self, env: dict[str, str], secrets: list[str]) -> None:
        self.env = env
        self.secrets = secrets

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    @property
    def identity(self) -> str:
        """A one-way digest of the credential (empty without one): whose view of a remote this is.

        Mirrors are kept per URL *and* identity, so a sync only ever reads objects that its
        own credential fetched (see sync/mirror.py).
        """
        if not self.secrets:
            return ""
        return hashlib.sha256("\0".join(sorted(self.secrets)).encode()).hexdigest()


@contextmanager
def git_auth(
    url: str,
    ref: CredentialRef | None,
    secrets_dir: Path | None,
    allowed_envs: tuple[str, ...] = (),
    protocols: str = NETWORK_PROTOCOLS,
    config: dict[str, str] | None = None,
    *,
    namespace: str,
) -> Iterator[tuple[str, GitAuth]]:
    """Yield (URL without userinfo, GitAuth) for running git against ``url``.

    ``protocols`` becomes ``GIT_ALLOW_PROTOCOL``: git refuses every other transport, in this
    command and in anything it starts (submodules, remote helpers). ``config`` is git
    configuration for this run (``sync/remote.py``: the checked address, no redirects).
    """
    clean, user, password = split_userinfo(url)
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_ALLOW_PROTOCOL": protocols,
    }
    # a query value of a few characters would blot out every match in git's text; the pattern covers it
    secrets: list[str] = [s for s in (password, *query_secrets(clean)) if s and len(s) >= 4]
    header_user, header_secret = (user or "x-access-token", password) if password else (None, None)
    key_file: str | None = None
    settings = dict(config or {})
    try:
        if ref is not None:
            secret = ref.read(secrets_dir, allowed_envs, namespace)
            secrets.append(secret.strip())
            if ref.kind == "token":
                header_user, header_secret = ref.username, secret
            else:
                fd, key_file = tempfile.mkstemp(prefix="packyard-key-")
                with os.fdopen(fd, "w") as out:
                    out.write(secret if secret.endswith("\n") else secret + "\n")
                os.chmod(key_file, stat.S_IRUSR | stat.S_IWUSR)
                env["GIT_SSH_COMMAND"] = (
                    f"ssh -i {shlex.quote(key_file)} -o IdentitiesOnly=yes -o BatchMode=yes "
                    "-o StrictHostKeyChecking=accept-new"
                )
        if header_secret:
            basic = base64.b64encode(f"{header_user}:{header_secret}".encode()).decode()
            secrets.append(basic)
            settings["http.extraHeader"] = f"Authorization: Basic {basic}"
        if settings:
            env["GIT_CONFIG_COUNT"] = str(len(settings))
            for i, (key, value) in enumerate(settings.items()):
                env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        yield clean, GitAuth(env, secrets)
    finally:
        if key_file is not None:
            os.unlink(key_file)
