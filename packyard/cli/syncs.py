"""``packyard sync``: git repositories into namespaces (and back), one-off or registered."""

from __future__ import annotations

import sys

import click

from packyard.cli.output import client, console, emit_json, options, table
from packyard.store.errors import InvalidInput


@click.group("sync", no_args_is_help=True)
def app() -> None:
    """Git sync: repositories into namespaces, and namespaces back into git."""


REF = click.option("--ref", help="Branch, tag or commit (default: the remote's default branch).")
SPEC = options(
    click.option("--path", default="", help="Sub-folder of the repository to sync (default: the root)."),
    click.option("--prefix", default="", help="Folder inside the namespace to sync into (default: the root)."),
    click.option("--include", multiple=True, help="Only paths matching this glob (repeatable)."),
    click.option("--exclude", multiple=True, help="Skip paths matching this glob (repeatable)."),
    click.option("--delete", is_flag=True, help="Delete namespace files under the prefix that the repository lacks."),
)
DRY = click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
BUILD = options(
    click.option("--build", is_flag=True, help="Then queue a build of every project folder whose files changed."),
    click.option("--build-publish-to", help="Index namespace those builds publish to (default: NS)."),
)
CREDENTIAL = options(
    click.option("--token-env", help="Server environment variable holding an https token."),
    click.option("--token-file", help="File in the server's secrets folder holding an https token."),
    click.option("--ssh-key-env", help="Server environment variable holding an SSH private key."),
    click.option("--ssh-key-file", help="File in the server's secrets folder holding an SSH key."),
    click.option("--username", default="x-access-token", show_default=True, help="User name sent with an https token."),
)


def credential(
    token_env: str | None, token_file: str | None, ssh_key_env: str | None, ssh_key_file: str | None, username: str
) -> dict | None:
    given = [
        (k, v)
        for k, v in (
            ("token_env", token_env),
            ("token_file", token_file),
            ("ssh_key_env", ssh_key_env),
            ("ssh_key_file", ssh_key_file),
        )
        if v
    ]
    if not given:
        return None
    if len(given) > 1:
        raise InvalidInput("name one credential: --token-env, --token-file, --ssh-key-env or --ssh-key-file")
    option, value = given[0]
    kind = "token" if option.startswith("token") else "ssh_key"
    where = "env" if option.endswith("env") else "file"
    return {"kind": kind, where: value, "username": username}


SIGNS = {"added": "+", "updated": "~", "deleted": "-", "skipped": "!"}


def show_result(result: dict, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    for entry in result["entries"]:
        if entry["status"] != "unchanged":
            reason = f"  ({entry['reason']})" if entry.get("reason") else ""
            console.print(f"{SIGNS[entry['status']]} {entry['path']}{reason}")
    counts = ", ".join(f"{v} {k}" for k, v in result["counts"].items())
    verb = "would sync" if result["dry_run"] else "synced"
    console.print(
        f"{verb} {result['url']} {result['ref']} @ {result['commit'][:12]} into {result['namespace']}: {counts}"
    )
    for warning in result.get("warnings", []):
        console.print(f"warning: {warning}")
    for build_id in result.get("builds", []):
        console.print(f"queued build {build_id} (packyard build logs {build_id} --follow)")


@app.command("run")
@click.argument("ns")
@click.argument("url")
@REF
@SPEC
@DRY
@JSON
@BUILD
@click.option(
    "--wait", is_flag=True, help="With --build: wait for the builds to end; exit non-zero unless all succeeded."
)
@CREDENTIAL
def run(
    ns: str, url: str, ref: str | None, path: str, prefix: str, include: tuple[str, ...], exclude: tuple[str, ...],
    delete: bool, dry_run: bool, as_json: bool, build: bool, build_publish_to: str | None, wait: bool,
    token_env: str | None, token_file: str | None, ssh_key_env: str | None, ssh_key_file: str | None, username: str,
) -> None:  # fmt: skip
    """Sync URL into NS once (plan only with --dry-run)."""
    cred = credential(token_env, token_file, ssh_key_env, ssh_key_file, username)
    if wait and not build:
        raise InvalidInput("--wait waits for the builds that --build queues; pass --build too")
    result = client().sync_run(
        ns, url, ref=ref, path=path, prefix=prefix, include=include, exclude=exclude, delete=delete,
        credential=cred, dry_run=dry_run, build=build, build_publish_to=build_publish_to,
    )  # fmt: skip
    if not wait:
        show_result(result, as_json)
        return
    from packyard.cli.builds import log_hint, summary

    builds = [client().wait_build(build_id) for build_id in result.get("builds", [])]
    if as_json:
        emit_json({**result, "builds": builds})
    else:
        show_result({**result, "builds": []}, False)
        for done in builds:
            console.print(summary(done))
            if done["state"] != "succeeded":
                console.print(log_hint(done))
    if any(done["state"] != "succeeded" for done in builds):
        sys.exit(1)


@app.command("add")
@click.argument("name")
@click.option("--namespace", "-n", required=True)
@click.option("--url", required=True)
@REF
@SPEC
@click.option("--webhook-secret-env", help="Server env var with the webhook secret.")
@BUILD
@CREDENTIAL
def add(
    name: str, namespace: str, url: str, ref: str | None, path: str, prefix: str, include: tuple[str, ...],
    exclude: tuple[str, ...], delete: bool, webhook_secret_env: str | None, build: bool, build_publish_to: str | None,
    token_env: str | None, token_file: str | None, ssh_key_env: str | None, ssh_key_file: str | None, username: str,
) -> None:  # fmt: skip
    """Register a named sync (trigger it by name or by webhook)."""
    cred = credential(token_env, token_file, ssh_key_env, ssh_key_file, username)
    registered = client().sync_add(
        name, namespace, url, ref=ref, path=path, prefix=prefix, include=include, exclude=exclude, delete=delete,
        credential=cred, webhook_secret_env=webhook_secret_env, build=build, build_publish_to=build_publish_to,
    )  # fmt: skip
    console.print(f"registered sync {registered['name']} -> {registered['namespace']}")


@app.command("list")
@JSON
def list_(as_json: bool) -> None:
    """List registered syncs."""
    rows = client().syncs()
    if as_json:
        emit_json(rows)
        return
    table(
        [{**r, "url": r["spec"]["url"], "ref": r["spec"]["ref"] or "(default)"} for r in rows],
        ["name", "namespace", "url", "ref", "created"],
    )


@app.command("show")
@click.argument("name")
@JSON
def show(name: str, as_json: bool) -> None:
    """Show a registered sync."""
    registered = client().sync(name)
    if as_json:
        emit_json(registered)
        return
    spec = registered["spec"]
    table(
        [{**registered, **spec}], ["name", "namespace", "url", "ref", "path", "prefix", "delete", "webhook_secret_env"]
    )


@app.command("rm")
@click.argument("name")
def rm(name: str) -> None:
    """Remove a registered sync (the namespace's files stay)."""
    client().sync_remove(name)
    console.print(f"removed sync {name}")


@app.command("trigger")
@click.argument("name")
@DRY
@JSON
def trigger(name: str, dry_run: bool, as_json: bool) -> None:
    """Run a registered sync now."""
    show_result(client().sync_trigger(name, dry_run), as_json)


@app.command("runs")
@click.argument("name")
@JSON
def runs(name: str, as_json: bool) -> None:
    """A registered sync's history: commit, counts per status, duration, error."""
    rows = client().sync_runs(name)
    if as_json:
        emit_json(rows)
        return
    table(
        rows,
        ["id", "started", "commit_sha", "dry_run", "added", "updated", "deleted", "unchanged", "duration", "error"],
    )


@app.command("push")
@click.argument("ns")
@click.argument("url")
@click.option("--branch", "-b", required=True)
@click.option("--path", default="", help="Folder of the repository to write into.")
@click.option("--prefix", default="", help="Only the namespace files under this folder.")
@click.option("--message", "-m")
@click.option("--delete", is_flag=True, help="Delete repository files under --path the namespace lacks.")
@DRY
@JSON
@CREDENTIAL
def push(
    ns: str, url: str, branch: str, path: str, prefix: str, message: str | None, delete: bool, dry_run: bool,
    as_json: bool, token_env: str | None, token_file: str | None, ssh_key_env: str | None, ssh_key_file: str | None,
    username: str,
) -> None:  # fmt: skip
    """Commit NS's files into BRANCH of URL and push (show the diff only with --dry-run)."""
    body = {
        "url": url,
        "branch": branch,
        "path": path,
        "prefix": prefix,
        "message": message,
        "delete": delete,
        "dry_run": dry_run,
        "credential": credential(token_env, token_file, ssh_key_env, ssh_key_file, username),
    }
    result = client().sync_push(ns, body)
    if as_json:
        emit_json(result)
        return
    for change in result["changes"]:
        console.print(f"{SIGNS.get(change['status'], '?')} {change['path']}")
    if result["dry_run"]:
        console.print(f"would push {len(result['changes'])} changes to {result['url']} {branch}")
    elif result["pushed"]:
        console.print(f"pushed {result['commit'][:12]} to {result['url']} {branch}")
    else:
        console.print(f"nothing to push: {branch} already matches {ns}")
