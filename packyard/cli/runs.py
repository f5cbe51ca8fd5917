"""``packyard pull``, ``fetch``, ``env`` and ``run``: what a task calls at its start.

Quiet unless on a terminal (a flow's log stays clean); ``--json`` for machines. Each is a
thin layer over :class:`packyard.client.Client` (``pull``, ``fetch``, ``environment``, ``run``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from packyard.cli.output import client, emit_json, err, options, transfer

PATH = click.Path(path_type=Path)


ENV_OPTIONS = options(
    click.option(
        "-r", "--requirement", "requirement", type=PATH, multiple=True, help="A requirements file (repeatable)."
    ),
    click.option("--with", "with_", multiple=True, help="A requirement (repeatable)."),
    click.option("--python", help="Python version X.Y (default: this one)."),
    click.option("--refresh", is_flag=True, help="Resolve again even if the index did not change."),
    click.option(
        "--share/--no-share", default=True, help="Share the lock and the finished environment with other workers."
    ),
)


def _say(message: str) -> None:
    if err.is_terminal:
        err.print(message)


def _pull(ns: str, dest: Path, prefix: str, include: list[str], exclude: list[str], parents: bool) -> dict:
    c = client()
    total = len(c.plan_pull(ns, prefix, include=include, exclude=exclude, with_parents=parents))
    with transfer(f"pull {ns}", total, unit="files") as advance:
        counts = c.pull(ns, dest, prefix, include=include, exclude=exclude, with_parents=parents, progress=advance)
    _say(f"pulled {ns} into {dest}: {counts['downloaded']} downloaded, {counts['unchanged']} unchanged")
    return counts


@click.command("pull")
@click.argument("ns")
@click.option("--dest", "-d", type=PATH, default=Path("."), help="Working directory to fill.")
@click.option("--prefix", "-p", default="", help="Only files under this folder.")
@click.option("--include", multiple=True, help="Only paths matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip paths matching this glob (repeatable).")
@click.option("--with-parents", is_flag=True, help="Lay down the ancestors' files first; nearer wins.")
def pull(
    ns: str, dest: Path, prefix: str, include: tuple[str, ...], exclude: tuple[str, ...], with_parents: bool
) -> None:
    """Download the namespace's files into a working directory (hash-checked, in parallel)."""
    _pull(ns, dest, prefix, list(include), list(exclude), with_parents)


@click.command("fetch")
@click.argument("ns")
@click.argument("names", nargs=-1, required=True, metavar="FILENAME_OR_PROJECT...")
@click.option("--dest", "-d", type=PATH, default=Path("."))
@click.option("--version", help="For a project name: this version, not the newest.")
@click.option(
    "--sdist/--wheel", default=None, help="For a project name: only an sdist, or only a wheel (default: either)."
)
def fetch(ns: str, names: tuple[str, ...], dest: Path, version: str | None, sdist: bool | None) -> None:
    """Download distribution files through the namespace's index (with inheritance), hash-checked.

    Each name is a distribution filename (etl-0.1.0.tar.gz) or a project name (etl). A
    project name fetches its newest file this Python can install: the best wheel for this
    interpreter, else the sdist; yanked files are skipped, and pre-releases unless there is nothing else.
    """
    kind = None if sdist is None else "sdist" if sdist else "wheel"
    for path in client().fetch(ns, *names, dest=dest, version=version, kind=kind):
        print(path)


@click.command("env")
@click.argument("ns")
@ENV_OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env(
    ns: str, requirement: tuple[Path, ...], with_: tuple[str, ...], python: str | None, refresh: bool, share: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Print the path of a ready virtual environment with the requirements resolved against NS."""
    environment = client().environment(
        ns, with_, requirement_files=requirement, python=python, refresh=refresh, share=share
    )
    if as_json:
        emit_json(environment.to_dict())
    else:
        print(environment.path)


@click.command("run")
@click.argument("ns")
@click.argument("command", nargs=-1, required=True)
@ENV_OPTIONS
@click.option("--pull", "pull_files", is_flag=True, help="Run in a temporary directory holding NS's files.")
def run(
    ns: str, command: tuple[str, ...], requirement: tuple[Path, ...], with_: tuple[str, ...], python: str | None,
    refresh: bool, share: bool, pull_files: bool,
) -> None:  # fmt: skip
    """Run COMMAND (after --) in a cached environment (and, with --pull, among NS's files); exit with its status.

    With --pull, the files are pulled first and the command runs among them, and so do the
    requirements: a path such as ``--with .`` or ``--with ./etl-0.1.0.tar.gz`` (and one in
    a -r file) means the pulled one, not one in the caller's directory.
    """
    from packyard.runs.keys import describe

    c = client()
    if pull_files:  # pulled here, not by Client.run, for the progress line and the message
        import tempfile

        with tempfile.TemporaryDirectory(prefix="packyard-run-") as tmp:
            _pull(ns, Path(tmp), "", [], [], False)
            code = c.run(
                ns, command, requirements=with_, requirement_files=requirement, python=python, refresh=refresh,
                share=share, cwd=tmp, on_environment=lambda e: _say(describe(e.key, e.reused, e.from_bundle)),
            )  # fmt: skip
    else:
        code = c.run(
            ns, command, requirements=with_, requirement_files=requirement, python=python, refresh=refresh,
            share=share, on_environment=lambda e: _say(describe(e.key, e.reused, e.from_bundle)),
        )  # fmt: skip
    sys.exit(code)


def register(app: click.Group) -> None:
    for command in (pull, fetch, env, run):
        app.add_command(command)
