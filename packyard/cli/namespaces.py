"""``packyard ns``: create, list and show namespaces, change their settings, see their usage."""

from __future__ import annotations

import click

from packyard.cli.output import client, console, emit_json, table
from packyard.store.errors import InvalidInput

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("ns", no_args_is_help=True)
def app() -> None:
    """Namespaces: create, list, show."""


@app.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create NAME (and any missing ancestor)."""
    ns = client().create_namespace(name)
    console.print(f"created namespace {ns['name']}")


@app.command("ls")
@click.option("--under", help="Only this namespace and its children.")
@JSON
def ls(under: str | None, as_json: bool) -> None:
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
@click.argument("name")
@JSON
def show(name: str, as_json: bool) -> None:
    """Show a namespace: its own settings, the effective ones and where each comes from, file count, size."""
    ns = client().namespace(name)
    if as_json:
        emit_json(ns)
        return
    table([ns], ["name", "files", "bytes", "created", "created_by", "settings"])
    table(effective_rows(ns["effective"]), ["setting", "value", "from"], title="effective settings")


@app.command("set")
@click.argument("name")
@click.option("--inherit/--no-inherit", default=None, help="List the ancestors' files in this namespace's index.")
@click.option("--upstream", help="Index URL for names no namespace in the chain has.")
@click.option("--no-upstream", is_flag=True, help="No upstream here, even if an ancestor has one.")
@click.option("--inherit-upstream", is_flag=True, help="Drop this namespace's own setting.")
@click.option("--upstream-auth-env", help="Server env var with upstream credentials.")
@click.option("--upstream-allow", "allow", multiple=True, help="Only these names (globs) from upstream.")
@click.option("--upstream-deny", "deny", multiple=True, help="Never these names (globs) from upstream.")
@click.option("--keep-releases", help="Keep the newest N matching releases per project (never the newest release).")
@click.option(
    "--keep-release-pattern",
    help="Releases the release policy touches: prerelease (default: pre- and .dev releases), all, or a "
    "version specifier such as '<2'.",
)
@click.option("--keep-release-days", help="Remove matching releases older than D days.")
@click.option("--keep-revisions", help="Keep the last N revisions of a path besides its head.")
@click.option("--keep-revision-days", help="Remove non-head revisions older than D days.")
@click.option("--keep-build-log-days", help="Remove build logs, and failed builds, finished more than D days ago.")
@click.option("--keep-mirrored-days", help="Remove mirrored upstream files not requested for D days.")
@click.option("--keep-bundle-days", help="Remove environment bundles and resolutions not used for D days.")
@click.option("--quota", help="Bytes this namespace and its children may hold, e.g. 20GiB, 500MB; 'none' removes it.")
def set_(
    name: str, inherit: bool | None, upstream: str | None, no_upstream: bool, inherit_upstream: bool,
    upstream_auth_env: str | None, allow: tuple[str, ...], deny: tuple[str, ...], keep_releases: str | None,
    keep_release_pattern: str | None, keep_release_days: str | None, keep_revisions: str | None,
    keep_revision_days: str | None, keep_build_log_days: str | None, keep_mirrored_days: str | None,
    keep_bundle_days: str | None, quota: str | None,
) -> None:  # fmt: skip
    """Change namespace settings (admin role).

    Each --keep-* takes a value, 'off' (no such policy here, even if an ancestor has one) or
    'inherit' (drop this namespace's own value)."""
    changes: dict = {}
    for key, value in (
        ("keep_releases", keep_releases),
        ("keep_release_pattern", keep_release_pattern),
        ("keep_release_days", keep_release_days),
        ("keep_revisions", keep_revisions),
        ("keep_revision_days", keep_revision_days),
        ("keep_build_log_days", keep_build_log_days),
        ("keep_mirrored_days", keep_mirrored_days),
        ("keep_bundle_days", keep_bundle_days),
    ):
        if value is not None:
            changes[key] = None if value == "inherit" else value  # the server checks the value
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
        changes["upstream_allow"] = list(allow)
    if deny:
        changes["upstream_deny"] = list(deny)
    if quota is not None:
        changes["quota"] = None if quota.strip().lower() == "none" else quota  # the server parses sizes
    ns = client().update_settings(name, **changes)
    console.print(f"{ns['name']} settings: {ns['settings']}")


@app.command("retention")
@click.argument("name")
@click.option("--apply", is_flag=True, help="Remove; without it, only list what would go.")
@JSON
def retention(name: str, apply: bool, as_json: bool) -> None:
    """Run NAME's retention policies (and its children's) now: a dry run by default (admin role).

    Rows go; their blobs go with the collector (``packyard gc`` or the server's), past its grace."""
    result = client().retention(name, apply=apply)
    if as_json:
        emit_json(result)
        return
    print_plan(result)


def print_plan(result: dict) -> None:
    """What a retention pass removed or would remove, one line each, and the totals."""
    verb = "removed" if result["applied"] else "would remove"
    for item in result["items"]:
        console.print(
            f"{verb} {item['kind']} {item['namespace']} {item['name']} ({item['size']} bytes): {item['reason']}"
        )
    frees = result["frees"]
    console.print(
        f"retention: {verb} {result['count']} rows ({result['bytes']} bytes); "
        f"frees {frees['count']} blobs ({frees['bytes']} bytes) once collected"
    )


USAGE_COLUMNS = ("files", "revisions", "distributions", "bundles", "build_logs", "mirrored", "stored")


def _cell(tally: dict | None) -> str:
    from packyard.store.blobs.base import human_size

    return "-" if tally is None else f"{tally['count']} / {human_size(tally['bytes'])}"


@app.command("usage")
@click.argument("name", required=False)
@JSON
def usage(name: str | None, as_json: bool) -> None:
    """Bytes and counts per kind, per namespace, with and without children (each blob once in 'stored').

    Without NAME, the whole store (a token whose scope is '*')."""
    report = client().usage(name)
    if as_json:
        emit_json(report)
        return
    rows = [
        {"namespace": row["namespace"], **{c: _cell(row[c]) for c in USAGE_COLUMNS}} for row in report["namespaces"]
    ]
    total = report["subtree"]
    label = f"{name} with children" if name else "all namespaces"
    rows.append({"namespace": label, **{c: _cell(total[c]) for c in USAGE_COLUMNS}})
    table(rows, ["namespace", *USAGE_COLUMNS], title="usage (count / bytes); stored counts each blob once")
    from packyard.store.blobs.base import human_size

    for quota in report.get("quotas", []):
        if quota.get("withheld"):
            console.print(f"quota set on {quota['namespace']} (withheld: not readable with this token)")
        else:
            share = f"{100 * quota['used'] / quota['quota']:.0f}%" if quota["quota"] else ""
            console.print(
                f"quota on {quota['namespace']}: {human_size(quota['used'])} of {human_size(quota['quota'])} used "
                f"({share})"
            )
