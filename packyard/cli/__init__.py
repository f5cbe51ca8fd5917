"""The ``packyard`` command: one typer app, a sub-app per thing it manages."""

from __future__ import annotations

import typer

from packyard.cli import backup, builds, dists, files, maintenance, mirror, namespaces, runs, serve, syncs, tokens
from packyard.cli_errors import run

app = typer.Typer(
    name="packyard",
    help="Namespace files, git sync, builds and a Python package index for flows.",
    epilog="Listings print tables, cut to fit a terminal and in whole lines when piped; "
    "for scripts, add --json to a listing or show command for JSON.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(namespaces.app, name="ns")
app.add_typer(files.app, name="files")
app.add_typer(tokens.app, name="token")
app.add_typer(dists.app, name="dists")
app.add_typer(syncs.app, name="sync")
app.add_typer(builds.app, name="build")
app.add_typer(builds.builds_app, name="builds")
app.command("worker")(builds.worker)
app.add_typer(mirror.app, name="mirror")
runs.register(app)
app.command("yank")(dists.yank)
app.command("unyank")(dists.unyank)
app.command("index-config")(dists.index_config)
app.command("fsck")(maintenance.fsck)
app.command("gc")(maintenance.gc)
app.command("restore")(backup.restore)
app.command("replicate")(backup.replicate)
app.command("export")(backup.export)
app.command("import")(backup.import_)


def main() -> None:
    run(app)
