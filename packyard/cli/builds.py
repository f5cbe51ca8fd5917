"""``packyard build``, ``packyard builds`` and ``packyard worker``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from packyard.cli.output import client, console, emit_json, table
from packyard.defaults import absolute


class _DefaultToStart(click.Group):
    """``packyard build NS ...`` starts a build; ``packyard build show|logs|cancel ID`` inspect one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "NS [--path P] [--publish-to NS] [--wait] [OPTIONS]")
        formatter.write_usage(ctx.command_path, "show|logs|cancel BUILD_ID")


@click.group("build", cls=_DefaultToStart, no_args_is_help=True)
def app() -> None:
    """Build NS's project into an sdist and a wheel and publish them:
    packyard build NS --path etl --publish-to company.sales --wait
    (the same as 'packyard build start NS ...'; 'packyard build start --help' lists its options).
    Or inspect a build: show, logs, cancel."""


@click.group("builds", no_args_is_help=True)
def builds_app() -> None:
    """Builds: list."""


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def log_hint(build: dict) -> str:
    """The exact command that shows a build's log (what a failure tells the user to run)."""
    return f"see the log: packyard build logs {build['id']}"


def summary(build: dict) -> str:
    text = f"build {build['id']} {build['state']}: {build['namespace']}:{build['path'] or '/'} -> {build['publish_to']}"
    if build.get("artifacts"):
        text += f" ({', '.join(build['artifacts'])})"
    if build.get("error"):
        text += f" — {build['error']}"
    return text


@app.command("start")
@click.argument("ns")
@click.option("--path", default="", help="Project folder in the namespace (holds pyproject.toml or setup.py).")
@click.option("--publish-to", help="Index namespace to publish to (default: NS).")
@click.option("--wait", is_flag=True, help="Wait for the build to end; exit non-zero unless it succeeded.")
@click.option("--force", is_flag=True, help="Build even if this source already built.")
@click.option("--timeout", type=int, help="Seconds before the build is killed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(
    ns: str, path: str, publish_to: str | None, wait: bool, force: bool, timeout: int | None, as_json: bool
) -> None:
    """Queue a build of NS: 'packyard build NS ...' (the same source already built is answered from cache)."""
    build = client().build(ns, path, publish_to=publish_to, force=force, timeout=timeout, wait=wait)
    if as_json:
        emit_json(build)
    else:
        console.print(("cached " if build.get("cached") else "") + summary(build))
    if wait and build["state"] != "succeeded":
        if not as_json:
            console.print(log_hint(build))
        sys.exit(1)


@app.command("show")
@click.argument("build_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(build_id: int, as_json: bool) -> None:
    """Show a build."""
    build = client().build_info(build_id)
    if as_json:
        emit_json(build)
    else:
        console.print(summary(build))
        table(
            [build],
            ["key", "backend", "python_version", "source_date_epoch", "created", "started", "finished", "worker"],
        )


@app.command("logs")
@click.argument("build_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Stream until the build ends.")
def logs(build_id: int, follow: bool) -> None:
    """Print a build's log."""
    if follow:
        client().wait_build(build_id, log=_write)
        return
    data, _ = client().build_log(build_id)
    sys.stdout.buffer.write(data)


@app.command("cancel")
@click.argument("build_id", type=int)
def cancel(build_id: int) -> None:
    """Cancel a queued or running build."""
    build = client().cancel_build(build_id)
    state = "cancel requested" if build["state"] == "running" else build["state"]
    console.print(f"build {build_id}: {state}")


@builds_app.command("ls")
@click.option("--namespace", "-n")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls(namespace: str | None, as_json: bool) -> None:
    """List builds, newest first."""
    rows = client().builds(namespace)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "state", "namespace", "path", "publish_to", "artifacts", "created", "error"])


@click.command("worker")
@click.option("--once", is_flag=True, help="Run at most one build, then exit.")
@click.option("--poll", type=float, default=1.0, help="Seconds between claims when the queue is empty.")
@click.option("--name", help="Worker name shown on its builds.")
@click.option("--cache", type=click.Path(path_type=Path), help="Download cache for build backends.")
def worker(once: bool, poll: float, name: str | None, cache: Path | None) -> None:
    """Run a build worker against PACKYARD_URL (needs an admin token for '*'; packyard[server])."""
    from packyard.cli.extras import require_server

    require_server("worker")
    from packyard.builder.worker import Worker
    from packyard.client import Client
    from packyard.settings import get_settings, secret
    from packyard.worker import HttpWorkerAPI

    settings = get_settings()
    api = HttpWorkerAPI(Client(settings.url, secret(settings.token)), name)
    runner = Worker(
        api,
        cache=absolute(cache or Path.home() / ".cache" / "packyard-builds"),
        sandbox=settings.build_sandbox,
        poll=poll,
    )
    console.print(f"worker {api.name} serving {settings.url}")
    if once:
        done = runner.run_once()
        if done is not None:
            console.print(summary(done))
        return
    stop = threading.Event()
    try:
        runner.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
