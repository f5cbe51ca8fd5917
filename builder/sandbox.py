"""How a build runs: a scrubbed environment, and a bubblewrap sandbox that shows it almost nothing.

A build is untrusted code (the backend and whatever ``setup.py`` does) from a namespace
writer. It runs in two kinds of steps (see ``builder/driver.py``):

* **install** — the build requirements (static, then each ``get_requires_for_build_*``
  answer) are installed into the build's own environment, **wheels only**, so no project
  code and no code from the index runs. This step has the network (it must reach the
  index) and sees: the system (``/usr``, the interpreter's prefix), CA certificates and
  name resolution from ``/etc``, the build's environment folder and the installer's cache.
* **hook** — each PEP 517 hook (``get_requires_for_build_*``, ``build_sdist``,
  ``build_wheel``) runs with **no network** (``--unshare-net``: only a loopback of its
  own), its own PID namespace with a fresh ``/proc`` (no other process, so no
  ``/proc/1/environ`` of the server), a minimal ``/dev``, a private ``/tmp``, and sees only:
  ``/usr`` and the interpreter's prefix read-only, its environment folder read-only (so a
  backend cannot alter the installer's cache through hard links), and its own source,
  output, home and temporary folders read-write. Nothing else exists in it: not the data
  folder (catalog, blobs, mirrors, other builds), not the secrets folder, not ``/root``.

The environment is built from nothing (not filtered from ours), so no ``PACKYARD_*``
setting, token or S3 key can reach a build backend. With ``PACKYARD_BUILD_SANDBOX=none``
the same steps run without bubblewrap: no isolation at all (for trusted builds only).
"""

from __future__ import annotations

import importlib.util
import json
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

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only in every step (on merged-/usr systems the last ones are symlinks, recreated as such)."""
ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf")
"""The pieces of /etc every step may need: the dynamic linker, the time zone, user names."""
ETC_CERTS = ("ssl", "ca-certificates", "pki", "ca-certificates.conf")
ETC_NETWORK = ("resolv.conf", "hosts", "gai.conf", "host.conf")
"""Name resolution: the install step only (hooks have no network)."""


def uv_binary() -> str | None:
    """The real uv executable (not a shim that would need more of the file system)."""
    if importlib.util.find_spec("uv") is not None:
        from uv import find_uv_bin

        try:
            return os.path.realpath(find_uv_bin())
        except FileNotFoundError:
            pass
    found = shutil.which("uv")
    return os.path.realpath(found) if found else None


def uv_available() -> bool:
    return uv_binary() is not None


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
        # copies, not hard links into the shared cache: a build can never change a cached file
        "UV_LINK_MODE": "copy",
        # requirements are compiled once, when installed; the environment is read-only to hooks
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def installer_of(installer: str) -> str:
    """``uv`` or ``pip``: what installs build requirements (``auto``: uv when available)."""
    return "uv" if installer == "uv" or (installer == "auto" and uv_available()) else "pip"


def sandbox_mode(mode: str) -> str:
    """The sandbox a build gets for setting ``mode`` (auto/bwrap/none): ``bwrap`` or ``none``."""
    bwrap = shutil.which("bwrap")
    if mode == "none" or (mode == "auto" and bwrap is None):
        return "none"
    if bwrap is None:
        raise RuntimeError("PACKYARD_BUILD_SANDBOX=bwrap but bubblewrap is not installed")
    return "bwrap"


def _interpreter_roots() -> list[str]:
    """The Python installation(s) the build's interpreter and the hook runner live in.

    The real prefix, not its parents: with pyenv the interpreter is under ``/root/.pyenv``,
    and only that version's folder is bound, never ``/root``.
    """
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    return sorted(r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots))


def _system_binds(network: bool, extra_ro: list[str]) -> list[str]:
    args: list[str] = []
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC + ETC_CERTS + (ETC_NETWORK if network else ()):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    covered = [*SYSTEM]
    for path in [*_interpreter_roots(), *extra_ro]:
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
            args += ["--ro-bind", path, path]
            covered.append(path)
    return args


def _wrap(binds: list[str], *, network: bool, chdir: Path) -> list[str]:
    bwrap = shutil.which("bwrap") or "bwrap"
    isolation = ["--unshare-all", "--share-net"] if network else ["--unshare-all"]
    return [
        bwrap, *isolation, "--cap-drop", "ALL", "--die-with-parent", "--new-session",
        # a fresh root with only what is bound below; /tmp private; then the root is read-only
        "--tmpfs", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        *binds, "--remount-ro", "/", "--chdir", str(chdir), "--",
    ]  # fmt: skip


def hook_prefix(src: Path, env_dir: Path, writable: list[Path]) -> list[str]:
    """bwrap arguments for one PEP 517 hook: no network, only its own folders writable."""
    binds = _system_binds(False, [])
    binds += ["--ro-bind", str(env_dir), str(env_dir)]
    for path in writable:
        binds += ["--bind", str(path), str(path)]
    return _wrap(binds, network=False, chdir=src)


def install_prefix(work: Path, env_dir: Path, cache: Path, installer_binary: str | None) -> list[str]:
    """bwrap arguments for installing wheels: the network, the environment and the installer's cache."""
    extra = [os.path.dirname(installer_binary)] if installer_binary else []
    binds = _system_binds(True, extra)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"):
        if os.environ.get(name):  # CA bundles named by the variables passed through
            where = os.path.realpath(os.environ[name])
            binds += ["--ro-bind-try", where, where]
    binds += ["--bind", str(env_dir), str(env_dir), "--bind", str(work / "tmp"), str(work / "tmp")]
    for name in ("uv", "pip"):  # the installers' download caches only (never other builds' folders)
        (cache / name).mkdir(parents=True, exist_ok=True)
        binds += ["--bind", str(cache / name), str(cache / name)]
    return _wrap(binds, network=True, chdir=work / "tmp")


DRIVER = Path(__file__).with_name("driver.py")


def driver_command(
    work: Path, src: Path, out: Path, cache: Path, installer: str, mode: str
) -> tuple[list[str], str, str]:
    """(command, installer used, sandbox used) that builds ``src`` into ``out``.

    The driver (``builder/driver.py``) is our code and runs unsandboxed with the build's
    scrubbed environment; it wraps each install and each hook it starts in bubblewrap.
    """
    used = sandbox_mode(mode)
    chosen = installer_of(installer)
    env_dir = work / "env"
    for folder in (env_dir, work / "home", work / "tmp"):
        folder.mkdir(exist_ok=True)
    uv = uv_binary() if chosen == "uv" else None
    hooks = installs = []
    if used == "bwrap":
        hooks = hook_prefix(src, env_dir, [src, out, work / "home", work / "tmp"])
        installs = install_prefix(work, env_dir, cache, uv)
    config = work / "driver.json"
    config.write_text(
        json.dumps(
            {
                "src": str(src),
                "out": str(out),
                "env": str(env_dir),
                "installer": chosen,
                "uv": uv,
                "hook_prefix": hooks,
                "install_prefix": installs,
                "parent": os.getpid(),
            }
        )
    )
    return [sys.executable, "-I", str(DRIVER), str(config)], chosen, used
