"""``packyard ns``: create, list and show namespaces."""

from __future__ import annotations

import typer

from packyard.cli.output import client, console, emit_json, table
from packyard.store.errors import InvalidInput

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


def effective_rows(effective: dict) -> list[dict]:
    """One row per effective setting, with the namespace it comes from (the server computes
    both; this only lays them out). ``(default)``: no namespace of the chain sets it;
    ``(withheld)``: set in a namespace this caller may not read."""
    rows = [{"setting": "index chain", "value": " > ".join(effective["index_chain"]), "from": ""}]
    for key, unset in (("inherit", ""), ("upstream", "(none)"), ("upstream_auth_env", "(none)")):
        item = effective[key]
        value = "(withheld)" if item.get("withheld") else unset if item["value"] is None else item["value"]
        rows.append({"setting": key, "value": value, "from": item["from"] or "(default)"})
    for key, unset in (("upstream_allow", "(any)"), ("upstream_deny", "(none)")):
        for item in effective[key] or [{"patterns": [], "from": None}]:
            value = "(withheld)" if item.get("withheld") else " ".join(item["patterns"]) or unset
            rows.append({"setting": key, "value": value, "from": item["from"] or "(default)"})
    return rows


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a namespace: its own settings, the effective ones and where each comes from, file count, size."""
    ns = client().namespace(name)
    if as_json:
        emit_json(ns)
        return
    table([ns], ["name", "files", "bytes", "created", "created_by", "settings"])
    table(effective_rows(ns["effective"]), ["setting", "value", "from"], title="effective settings")


@app.command("set")
def set_(
    name: str,
    inherit: bool = typer.Option(
        None, "--inherit/--no-inherit", help="List the ancestors' files in this namespace's index."
    ),
    upstream: str = typer.Option(None, "--upstream", help="Index URL for names no namespace in the chain has."),
    no_upstream: bool = typer.Option(False, "--no-upstream", help="No upstream here, even if an ancestor has one."),
    inherit_upstream: bool = typer.Option(False, "--inherit-upstream", help="Drop this namespace's own setting."),
    upstream_auth_env: str = typer.Option(
        None, "--upstream-auth-env", help="Server env var with upstream credentials."
    ),
    allow: list[str] = typer.Option(None, "--upstream-allow", help="Only these names (globs) from upstream."),
    deny: list[str] = typer.Option(None, "--upstream-deny", help="Never these names (globs) from upstream."),
) -> None:
    """Change namespace settings (admin role)."""
    changes: dict = {}
    if inherit is not None:
        changes["inherit"] = inherit
    if sum(bool(x) for x in (upstream, no_upstream, inherit_upstream)) > 1:
        raise InvalidInput("give one of --upstream, --no-upstream, --inherit-upstream")
    if upstream:
        changes["upstream"] = upstream
    elif no_upstream:
        changes["upstream"] = ""
    elif inherit_upstream:
        changes["upstream"] = None
    if upstream_auth_env is not None:
        changes["upstream_auth_env"] = upstream_auth_env or None
    if allow:
        changes["upstream_allow"] = allow
    if deny:
        changes["upstream_deny"] = deny
    ns = client().update_settings(name, **changes)
    console.print(f"{ns['name']} settings: {ns['settings']}")
