"""``packyard sync``: git repositories into namespaces (and back), one-off or registered."""

from __future__ import annotations

import typer

from packyard.cli.output import client, console, emit_json, table
from packyard.store.errors import InvalidInput

app = typer.Typer(help="Git sync: repositories into namespaces, and namespaces back into git.", no_args_is_help=True)

REF = typer.Option(None, "--ref", help="Branch, tag or commit (default: the remote's default branch).")
PATH = typer.Option("", "--path", help="Sub-folder of the repository to sync (default: the root).")
PREFIX = typer.Option("", "--prefix", help="Folder inside the namespace to sync into (default: the root).")
INCLUDE = typer.Option(None, "--include", help="Only paths matching this glob (repeatable).")
EXCLUDE = typer.Option(None, "--exclude", help="Skip paths matching this glob (repeatable).")
DELETE = typer.Option(False, "--delete", help="Delete namespace files under the prefix that the repository lacks.")
DRY = typer.Option(False, "--dry-run", help="Show the plan; change nothing.")
JSON = typer.Option(False, "--json", help="Print JSON.")
BUILD = typer.Option(False, "--build", help="Then queue a build of every project folder whose files changed.")
BUILD_TO = typer.Option(None, "--build-publish-to", help="Index namespace those builds publish to (default: NS).")
TOKEN_ENV = typer.Option(None, "--token-env", help="Server environment variable holding an https token.")
TOKEN_FILE = typer.Option(None, "--token-file", help="File in the server's secrets folder holding an https token.")
KEY_ENV = typer.Option(None, "--ssh-key-env", help="Server environment variable holding an SSH private key.")
KEY_FILE = typer.Option(None, "--ssh-key-file", help="File in the server's secrets folder holding an SSH key.")
USERNAME = typer.Option("x-access-token", "--username", help="User name sent with an https token.")


def credential(
    token_env: str | None, token_file: str | None, key_env: str | None, key_file: str | None, username: str
) -> dict | None:
    given = [
        (k, v)
        for k, v in (
            ("token_env", token_env),
            ("token_file", token_file),
            ("ssh_key_env", key_env),
            ("ssh_key_file", key_file),
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


def _spec(
    url: str,
    ref: str | None,
    path: str,
    prefix: str,
    include: list[str] | None,
    exclude: list[str] | None,
    delete: bool,
    cred: dict | None,
) -> dict:
    return {
        "url": url,
        "ref": ref,
        "path": path,
        "prefix": prefix,
        "include": include or [],
        "exclude": exclude or [],
        "delete": delete,
        "credential": cred,
    }


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
def run(
    ns: str,
    url: str,
    ref: str = REF,
    path: str = PATH,
    prefix: str = PREFIX,
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
    delete: bool = DELETE,
    dry_run: bool = DRY,
    as_json: bool = JSON,
    build: bool = BUILD,
    build_publish_to: str = BUILD_TO,
    wait: bool = typer.Option(
        False, "--wait", help="With --build: wait for the builds to end; exit non-zero unless all succeeded."
    ),
    token_env: str = TOKEN_ENV,
    token_file: str = TOKEN_FILE,
    ssh_key_env: str = KEY_ENV,
    ssh_key_file: str = KEY_FILE,
    username: str = USERNAME,
) -> None:
    """Sync URL into NS once (plan only with --dry-run)."""
    cred = credential(token_env, token_file, ssh_key_env, ssh_key_file, username)
    body = {
        **_spec(url, ref, path, prefix, include, exclude, delete, cred),
        "dry_run": dry_run,
        "build": build,
        "build_publish_to": build_publish_to,
    }
    if wait and not build:
        raise InvalidInput("--wait waits for the builds that --build queues; pass --build too")
    result = client().sync_run(ns, body)
    if not wait:
        show_result(result, as_json)
        return
    from packyard.cli.builds import log_hint, summary, wait_for

    builds = [wait_for(build_id, follow_log=False) for build_id in result.get("builds", [])]
    if as_json:
        emit_json({**result, "builds": builds})
    else:
        show_result({**result, "builds": []}, False)
        for done in builds:
            console.print(summary(done))
            if done["state"] != "succeeded":
                console.print(log_hint(done))
    if any(done["state"] != "succeeded" for done in builds):
        raise typer.Exit(1)


@app.command("add")
def add(
    name: str,
    namespace: str = typer.Option(..., "--namespace", "-n"),
    url: str = typer.Option(..., "--url"),
    ref: str = REF,
    path: str = PATH,
    prefix: str = PREFIX,
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
    delete: bool = DELETE,
    webhook_secret_env: str = typer.Option(
        None, "--webhook-secret-env", help="Server env var with the webhook secret."
    ),
    build: bool = BUILD,
    build_publish_to: str = BUILD_TO,
    token_env: str = TOKEN_ENV,
    token_file: str = TOKEN_FILE,
    ssh_key_env: str = KEY_ENV,
    ssh_key_file: str = KEY_FILE,
    username: str = USERNAME,
) -> None:
    """Register a named sync (trigger it by name or by webhook)."""
    cred = credential(token_env, token_file, ssh_key_env, ssh_key_file, username)
    body = {
        **_spec(url, ref, path, prefix, include, exclude, delete, cred),
        "name": name,
        "namespace": namespace,
        "webhook_secret_env": webhook_secret_env,
        "build": build,
        "build_publish_to": build_publish_to,
    }
    registered = client().sync_add(body)
    console.print(f"registered sync {registered['name']} -> {registered['namespace']}")


@app.command("list")
def list_(as_json: bool = JSON) -> None:
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
def show(name: str, as_json: bool = JSON) -> None:
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
def rm(name: str) -> None:
    """Remove a registered sync (the namespace's files stay)."""
    client().sync_remove(name)
    console.print(f"removed sync {name}")


@app.command("trigger")
def trigger(name: str, dry_run: bool = DRY, as_json: bool = JSON) -> None:
    """Run a registered sync now."""
    show_result(client().sync_trigger(name, dry_run), as_json)


@app.command("runs")
def runs(name: str, as_json: bool = JSON) -> None:
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
def push(
    ns: str,
    url: str,
    branch: str = typer.Option(..., "--branch", "-b"),
    path: str = typer.Option("", "--path", help="Folder of the repository to write into."),
    prefix: str = typer.Option("", "--prefix", help="Only the namespace files under this folder."),
    message: str = typer.Option(None, "--message", "-m"),
    delete: bool = typer.Option(False, "--delete", help="Delete repository files under --path the namespace lacks."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    token_env: str = TOKEN_ENV,
    token_file: str = TOKEN_FILE,
    ssh_key_env: str = KEY_ENV,
    ssh_key_file: str = KEY_FILE,
    username: str = USERNAME,
) -> None:
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
