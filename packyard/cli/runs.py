"""``packyard pull``, ``fetch``, ``env`` and ``run``: what a task calls at its start.

Quiet unless on a terminal (a flow's log stays clean); ``--json`` for machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from packyard.cli.output import client, console, emit_json, err, transfer
from packyard.runs.keys import activated, describe, exit_status, read_requirements
from packyard.store.errors import InvalidInput

PREFIX = typer.Option("", "--prefix", "-p", help="Only files under this folder.")
INCLUDE = typer.Option(None, "--include", help="Only paths matching this glob (repeatable).")
EXCLUDE = typer.Option(None, "--exclude", help="Skip paths matching this glob (repeatable).")
WITH_PARENTS = typer.Option(False, "--with-parents", help="Lay down the ancestors' files first; nearer wins.")
REQUIREMENTS = typer.Option(None, "-r", "--requirement", help="A requirements file (repeatable).")
WITH = typer.Option(None, "--with", help="A requirement (repeatable).")
PYTHON = typer.Option(None, "--python", help="Python version X.Y (default: this one).")
REFRESH = typer.Option(False, "--refresh", help="Resolve again even if the index did not change.")
SHARE = typer.Option(True, "--share/--no-share", help="Share the lock and the finished environment with other workers.")


def _say(message: str) -> None:
    if err.is_terminal:
        err.print(message)


def _pull(
    ns: str, dest: Path, prefix: str, include: list[str] | None, exclude: list[str] | None, parents: bool
) -> dict:
    from packyard.runs.pull import plan_pull, pull

    total = len(plan_pull(client(), ns, prefix=prefix, include=include, exclude=exclude, with_parents=parents))
    with transfer(f"pull {ns}", total) as advance:
        counts = pull(
            client(), ns, dest, prefix=prefix, include=include, exclude=exclude, with_parents=parents, progress=advance
        )
    _say(f"pulled {ns} into {dest}: {counts['downloaded']} downloaded, {counts['unchanged']} unchanged")
    return counts


def pull(
    ns: str,
    dest: Path = typer.Option(Path("."), "--dest", "-d", help="Working directory to fill."),
    prefix: str = PREFIX,
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
    with_parents: bool = WITH_PARENTS,
) -> None:
    """Download the namespace's files into a working directory (hash-checked, in parallel)."""
    _pull(ns, dest, prefix, include, exclude, with_parents)


def fetch(
    ns: str,
    names: list[str] = typer.Argument(
        ..., metavar="FILENAME_OR_PROJECT...", help="Distribution filenames (etl-0.1.0.tar.gz) or project names (etl)."
    ),
    dest: Path = typer.Option(Path("."), "--dest", "-d"),
    version: str = typer.Option(None, "--version", help="For a project name: this version, not the newest."),
    sdist: bool = typer.Option(
        None, "--sdist/--wheel", help="For a project name: only an sdist, or only a wheel (default: either)."
    ),
) -> None:
    """Download distribution files through the namespace's index (with inheritance), hash-checked.

    A project name fetches its newest file this Python can install: the best wheel for this
    interpreter, else the sdist; yanked files are skipped, and pre-releases unless there is nothing else.
    """
    from packyard.runs.pull import fetch as fetch_files

    kind = None if sdist is None else "sdist" if sdist else "wheel"
    for path in fetch_files(client(), ns, names, dest, version=version, kind=kind):
        print(path)


def _env(  # noqa: ANN202
    ns: str,
    files: list[Path] | None,
    extra: list[str] | None,
    python: str | None,
    refresh: bool,
    share: bool,
    cwd: Path | None = None,
):
    from packyard.runs.envs import EnvCache
    from packyard.settings import get_settings, secret

    settings = get_settings()
    cache = EnvCache(client(), settings.url, settings.cache_dir, secret(settings.token))
    requirements = read_requirements(files, extra)
    return cache.ensure(ns, requirements, python=python, refresh=refresh, share=share, cwd=cwd)


def env(
    ns: str,
    requirement: list[Path] = REQUIREMENTS,
    with_: list[str] = WITH,
    python: str = PYTHON,
    refresh: bool = REFRESH,
    share: bool = SHARE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the path of a ready virtual environment with the requirements resolved against NS."""
    environment = _env(ns, requirement, with_, python, refresh, share)
    if as_json:
        emit_json(environment.to_dict())
    else:
        print(environment.path)


def run(
    ns: str,
    command: list[str] = typer.Argument(..., help="The command, after --."),
    requirement: list[Path] = REQUIREMENTS,
    with_: list[str] = WITH,
    python: str = PYTHON,
    refresh: bool = REFRESH,
    share: bool = SHARE,
    pull_files: bool = typer.Option(False, "--pull", help="Run in a temporary directory holding NS's files."),
) -> None:
    """Run COMMAND in a cached environment (and, with --pull, among NS's files); exit with its status.

    With --pull, the files are pulled first and the command runs among them, and so do the
    requirements: a path such as ``--with .`` or ``--with ./etl-0.1.0.tar.gz`` (and one in
    a -r file) means the pulled one, not one in the caller's directory.
    """
    with tempfile.TemporaryDirectory(prefix="packyard-run-") as tmp:
        cwd = None
        if pull_files:
            _pull(ns, Path(tmp), "", None, None, False)
            cwd = Path(tmp)
        wanted = requirement or with_
        environment = _env(ns, requirement, with_, python, refresh, share, cwd) if wanted else None
        run_env = dict(os.environ)
        if environment is not None:
            run_env = activated(environment.path, run_env)
            _say(describe(environment.key, environment.reused, environment.from_bundle))
        try:
            code = subprocess.call(command, env=run_env, cwd=cwd)
        except FileNotFoundError as exc:
            raise InvalidInput(f"command not found: {command[0]}") from exc
    sys.exit(exit_status(code))


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("fetch")(fetch)
    app.command("env")(env)
    app.command("run")(run)


__all__ = ["register", "console"]
