"""``packyard ns``: create, list and show namespaces."""

from __future__ import annotations

import typer

from packyard.cli.output import client, console, emit_json, table

app = typer.Typer(help="Namespaces: create, list, show.", no_args_is_help=True)


@app.command("create")
def create(name: str) -> None:
    """Create NAME (and any missing ancestor)."""
    ns = client().create_namespace(name)
    console.print(f"created namespace {ns['name']}")


@app.command("ls")
def ls(
    under: str = typer.Option(None, "--under", help="Only this namespace and its children."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List namespaces."""
    rows = client().namespaces(under)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["name", "created", "created_by"])


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a namespace: settings, file count, size."""
    ns = client().namespace(name)
    if as_json:
        emit_json(ns)
    else:
        table([ns], ["name", "files", "bytes", "created", "created_by", "settings"])


@app.command("set")
def set_(
    name: str,
    inherit: bool = typer.Option(
        None, "--inherit/--no-inherit", help="List the ancestors' files in this namespace's index."
    ),
) -> None:
    """Change namespace settings (admin role)."""
    changes = {key: value for key, value in {"inherit": inherit}.items() if value is not None}
    ns = client().update_settings(name, **changes)
    console.print(f"{ns['name']} settings: {ns['settings']}")
