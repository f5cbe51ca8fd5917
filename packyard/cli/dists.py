"""``packyard dists``, ``yank``, ``unyank`` and ``index-config``: the package index from the shell."""

from __future__ import annotations

import click

from packyard.cli.output import client, console, emit_json, table
from packyard.defaults import ClientSettings

FILE = click.option("--file", "-f", "filename", help="Only this file, not the whole release.")


@click.group("dists", no_args_is_help=True)
def app() -> None:
    """Distribution files in a namespace's package index."""


@app.command("ls")
@click.argument("ns")
@click.argument("project", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls(ns: str, project: str | None, as_json: bool) -> None:
    """List the namespace's own files (inherited ones are listed in their namespace); PROJECT: only its."""
    rows = client().dists(ns, project)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["filename", "version", "size", "requires_python", "yanked", "yanked_reason", "upload_time"])


@app.command("rm")
@click.argument("ns")
@click.argument("project")
@click.argument("version")
@FILE
def rm(ns: str, project: str, version: str, filename: str | None) -> None:
    """Delete a release (every file of VERSION) or one file, for good."""
    removed = client().delete_dists(ns, project, version, filename)
    for dist in removed:
        console.print(f"deleted {ns}:{dist['filename']}")


@click.command("yank")
@click.argument("ns")
@click.argument("project")
@click.argument("version")
@click.option("--reason", "-r", default="", help="Shown to installers (PEP 592).")
@FILE
def yank(ns: str, project: str, version: str, reason: str, filename: str | None) -> None:
    """Yank a release or one file: installers skip it unless pinned with ==."""
    for dist in client().yank(ns, project, version, reason, filename):
        console.print(f"yanked {ns}:{dist['filename']}" + (f" ({reason})" if reason else ""))


@click.command("unyank")
@click.argument("ns")
@click.argument("project")
@click.argument("version")
@FILE
def unyank(ns: str, project: str, version: str, filename: str | None) -> None:
    """Undo a yank."""
    for dist in client().unyank(ns, project, version, filename):
        console.print(f"unyanked {ns}:{dist['filename']}")


@click.command("index-config")
@click.argument("ns")
def index_config(ns: str) -> None:
    """Print ready-to-paste pip, uv, twine and uv publish settings for NS."""
    base = ClientSettings.from_env().url.rstrip("/")
    simple, upload = f"{base}/{ns}/simple/", f"{base}/{ns}/"
    name = ns.replace(".", "-")
    print(
        f"""# pip: ~/.config/pip/pip.conf (or pip install --index-url {simple} ...)
[global]
index-url = {simple}

# uv: pyproject.toml (or uv pip install --index-url {simple} ...)
[[tool.uv.index]]
name = "{name}"
url = "{simple}"
publish-url = "{upload}"
default = true

# twine: ~/.pypirc, then: twine upload -r {name} dist/*
[distutils]
index-servers = {name}

[{name}]
repository = {upload}
username = __token__
password = <a packyard token with the write role on {ns}>

# uv publish
UV_PUBLISH_URL={upload} UV_PUBLISH_USERNAME=__token__ UV_PUBLISH_PASSWORD=<token> uv publish
# or, with the [[tool.uv.index]] above: uv publish --index {name}"""
    )
