"""Drives one build step by step with ``build.ProjectBuilder``: install (network, no project
code), then each PEP 517 hook in a sandbox with no network — repeated for dynamic requirements.

The worker runs this file as ``python -I driver.py CONFIG.json`` with the build's scrubbed
environment; it is our code (trusted) and imports only the standard library, ``build`` and
``packaging``. The sandbox argument lists come ready-made from ``builder/sandbox.py`` in the
config, so this file decides nothing about isolation. Its output is the build log.

Build requirements — ``[build-system] requires`` and what ``get_requires_for_build_*``
returns (the backend's own answer, so untrusted) — must be plain PEP 508 requirements
(no URL, no option) and are installed as wheels only: installing a wheel runs no code, so
the one step that has the network runs nothing a tenant wrote.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.requirements import InvalidRequirement, Requirement


class Refused(Exception):
    """A build requirement the driver will not install."""


def checked(requirements: set[str] | list[str]) -> list[str]:
    out = []
    for text in sorted(requirements):
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise Refused(f"build requirement {text!r} is not a valid requirement: {exc}") from None
        if requirement.url:
            raise Refused(f"build requirement {text!r} names a URL; build requirements come from the index")
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        out.append(str(requirement))
    return out


def die_with(parent: int) -> None:
    """Be killed when the worker that started us dies (as bwrap's --die-with-parent does for
    each step), so a killed worker never leaves a build running behind it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    die_with(config["parent"])
    src, out, env_dir = Path(config["src"]), Path(config["out"]), Path(config["env"])
    hook_prefix, install_prefix = config["hook_prefix"], config["install_prefix"]
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    installed: set[str] = set()

    def install(requirements: set[str] | list[str]) -> None:
        wanted = [r for r in checked(requirements) if r not in installed]
        if not wanted:
            return
        print("* Installing packages in isolated environment (wheels only):\n  - " + "\n  - ".join(wanted), flush=True)
        if config["installer"] == "uv":
            command = [config["uv"], "pip", "install", "--python", python, "--no-build", "--compile-bytecode"]
        else:
            command = [sys.executable, "-m", "pip", "--python", python, "install", "--only-binary", ":all:"]
            command += ["--no-warn-script-location"]
        subprocess.run([*install_prefix, *command, "--", *wanted], check=True)
        installed.update(wanted)

    def runner(cmd, cwd=None, extra_environ=None) -> None:  # noqa: ANN001 - pyproject_hooks' runner signature
        env = {**os.environ, **(extra_environ or {})}
        subprocess.run([*hook_prefix, *cmd], cwd=cwd, env=env, check=True)

    builder = ProjectBuilder(src, python_executable=python, runner=runner)
    print("* Installing build requirements (network; no project code runs)", flush=True)
    install(builder.build_system_requires)
    built = []
    for distribution in ("sdist", "wheel"):
        print(f"* Getting build dependencies for {distribution} (no network)...", flush=True)
        install(builder.get_requires_for_build(distribution))
        print(f"* Building {distribution} (no network)...", flush=True)
        built.append(os.path.basename(builder.build(distribution, out)))
    print(f"Successfully built {built[0]} and {built[1]}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Refused as exc:
        print(f"ERROR {exc}", flush=True)
    except BuildBackendException as exc:
        print(f"ERROR Backend operation failed: {exc.exception!r}", flush=True)
    except BuildException as exc:
        print(f"ERROR {exc}", flush=True)
    except subprocess.CalledProcessError as exc:
        print(f"ERROR {exc.cmd[-1] if exc.cmd else 'a step'} exited with status {exc.returncode}", flush=True)
    sys.exit(1)
