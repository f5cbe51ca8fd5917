"""The ``packyard`` command: one click group, a sub-group per thing it manages.

click and the standard library only at start-up: a base install (the client) has neither
typer nor rich, and ``packyard --help`` must start in a few hundredths of a second
(``tests/packyard/test_cli_startup.py``). Each command imports what it needs when it runs.
"""

from __future__ import annotations

import click

from packyard.cli import backup, builds, dists, files, maintenance, mirror, namespaces, runs, serve, syncs, tokens
from packyard.cli_errors import run

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(
    name="packyard",
    context_settings=CONTEXT,
    epilog="Listings print tables of whole cells; for scripts, add --json to a listing or show command for JSON. "
    "'pip install packyard' is the client; serve, worker, fsck, gc, restore, replicate, copy-catalog and "
    "'token --local' need "
    "'pip install \"packyard[server]\"'.",
)
@click.version_option(package_name="packyard", message="packyard %(version)s")
def app() -> None:
    """Namespace files, git sync, builds and a Python package index for flows."""


app.add_command(serve.serve, "serve")
app.add_command(namespaces.app, "ns")
app.add_command(files.app, "files")
app.add_command(tokens.app, "token")
app.add_command(dists.app, "dists")
app.add_command(syncs.app, "sync")
app.add_command(builds.app, "build")
app.add_command(builds.builds_app, "builds")
app.add_command(builds.worker, "worker")
app.add_command(mirror.app, "mirror")
runs.register(app)
app.add_command(dists.yank, "yank")
app.add_command(dists.unyank, "unyank")
app.add_command(dists.index_config, "index-config")
app.add_command(maintenance.fsck, "fsck")
app.add_command(maintenance.gc, "gc")
app.add_command(backup.restore, "restore")
app.add_command(backup.replicate, "replicate")
app.add_command(backup.copy_catalog, "copy-catalog")
app.add_command(backup.export, "export")
app.add_command(backup.import_, "import")


def main() -> None:
    run(app)
