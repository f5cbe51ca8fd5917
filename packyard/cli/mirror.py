"""``packyard mirror warm``: pre-fetch a requirement set through a namespace's upstream.

Resolution is left to pip, pointed at the namespace's index: ``pip download`` for each
requested Python version and platform pulls every file it picks through packyard, which
fetches, checks and stores it. Afterwards installs of that set work with the upstream down.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from packyard.cli.output import console, transfer
from packyard.defaults import ClientSettings
from packyard.store.errors import InvalidInput, RemoteFailed


@click.group("mirror", no_args_is_help=True)
def app() -> None:
    """The upstream mirror: pre-fetch what flows will install."""


_SAVED = re.compile(r"^(Saved|File was already downloaded) (.+)$")


def _pip(index: str, requirements: Path, python: str | None, platform: str | None, dest: Path) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input"]
    command += ["-r", str(requirements), "-d", str(dest)]
    if python:
        command += ["--python-version", python]
    if platform:
        command += ["--platform", platform]
    if python or platform:
        command += ["--only-binary=:all:"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PACKYARD_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    secret = ClientSettings.from_env().token
    if secret:  # the namespace may need a read token; pip sends it as Basic auth
        scheme, _, rest = index.partition("://")
        index = f"{scheme}://__token__:{secret}@{rest}"
    env["PIP_INDEX_URL"] = index  # through the environment: ps would show a command line's token
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        if secret:
            tail = tail.replace(secret, "***")
        target = f"python {python or 'current'} / {platform or 'this platform'}"
        raise RemoteFailed(f"resolving {requirements} for {target} failed:\n{tail}")
    return [m.group(2).strip() for line in result.stdout.splitlines() if (m := _SAVED.match(line.strip()))]


@app.command("warm")
@click.argument("ns")
@click.option(
    "-r", "--requirement", "requirements", type=click.Path(path_type=Path), required=True, help="A requirements file."
)
@click.option("--python-version", "python", multiple=True, help="Python version to resolve for (repeatable).")
@click.option("--platform", multiple=True, help="Platform tag, e.g. manylinux2014_x86_64 (repeatable).")
def warm(ns: str, requirements: Path, python: tuple[str, ...], platform: tuple[str, ...]) -> None:
    """Fetch a requirement set's files into NS's mirror (resolved per Python version and platform)."""
    import tempfile

    from packyard.store.names import validate_namespace

    validate_namespace(ns)
    if not requirements.is_file():
        raise InvalidInput(f"{requirements} is not a readable file")
    index = f"{ClientSettings.from_env().url.rstrip('/')}/{ns}/simple/"
    targets = [(p, t) for p in (python or [None]) for t in (platform or [None])]
    fetched: set[str] = set()
    with (
        tempfile.TemporaryDirectory(prefix="packyard-warm-") as tmp,
        transfer(f"warming {ns}", len(targets), unit="targets") as advance,
    ):
        for number, (py, plat) in enumerate(targets):
            dest = Path(tmp) / str(number)
            for name in _pip(index, requirements, py, plat, dest):
                fetched.add(Path(name).name)
            advance(1)
    for name in sorted(fetched):
        console.print(f"cached {name}")
    console.print(f"{len(fetched)} files in the {ns} mirror for {len(targets)} target(s)")
