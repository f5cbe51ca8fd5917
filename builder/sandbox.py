"""How the build subprocess runs: a scrubbed environment, and a filesystem sandbox.

The environment is built from nothing (not filtered from ours), so no ``PACKYARD_*``
setting, token or S3 key can reach a build backend. Where bubblewrap (``bwrap``) is
installed, the build sees the whole filesystem read-only except its own work folder and the
shared download cache, so a backend that writes outside its directory fails the build
instead of touching the worker. The build gets its own PID namespace, and its init dies with
the worker (``--die-with-parent``), so a killed worker takes the whole build process tree
with it — not only its direct child.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

NETWORK_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
"""Passed through: how this machine reaches an index (trusted CAs, proxies) — never secrets."""


def uv_available() -> bool:
    return shutil.which("uv") is not None or importlib.util.find_spec("uv") is not None


def build_env(
    work: Path, cache: Path, *, index_url: str, source_date_epoch: int, sandbox: str = "none"
) -> dict[str, str]:
    home, tmp = work / "home", work / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    network = {name: os.environ[name] for name in NETWORK_VARIABLES if os.environ.get(name)}
    return {
        **network,
        "PATH": f"{Path(sys.executable).parent}:{path}",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "PIP_INDEX_URL": index_url,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_CACHE_DIR": str(cache / "pip"),
        "UV_INDEX_URL": index_url,
        "UV_DEFAULT_INDEX": index_url,
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(cache / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        # unsandboxed, bytecode would land beside the worker's own Python; in bubblewrap it can
        # only land in the build's environment, where it saves compiling setuptools per hook
        **({} if sandbox == "bwrap" else {"PYTHONDONTWRITEBYTECODE": "1"}),
    }


def build_command(src: Path, out: Path, *, installer: str) -> tuple[list[str], str]:
    """The ``python -m build`` command and the installer it uses."""
    use_uv = installer == "uv" or (installer == "auto" and uv_available())
    command = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)]
    if use_uv:
        command += ["--installer", "uv"]
    return command, "uv" if use_uv else "pip"


def sandboxed(command: list[str], work: Path, cache: Path, mode: str) -> tuple[list[str], str]:
    """Wrap ``command`` in bubblewrap (``mode`` auto/bwrap/none); returns (command, sandbox used)."""
    bwrap = shutil.which("bwrap")
    if mode == "none" or (mode == "auto" and bwrap is None):
        return command, "none"
    if bwrap is None:
        raise RuntimeError("PACKYARD_BUILD_SANDBOX=bwrap but bubblewrap is not installed")
    # the work folder lives inside the cache (see builder/worker.py): one writable mount, so
    # uv can hardlink from its cache instead of copying every file into the build env
    binds = ["--bind", str(cache), str(cache)]
    if not work.is_relative_to(cache):
        binds = ["--bind", str(work), str(work), *binds]
    wrapped = [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *binds,
        "--unshare-pid", "--die-with-parent", "--chdir", str(work), "--",
    ]  # fmt: skip
    return wrapped + command, "bwrap"
