"""``packyard build``, ``packyard builds`` and ``packyard worker``."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from packyard.cli.output import client, console, emit_json, table
from packyard.defaults import absolute

DONE = ("succeeded", "failed", "cancelled")


class _DefaultToStart(TyperGroup):
    """``packyard build NS ...`` starts a build; ``packyard build show|logs|cancel ID`` inspect one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "NS [--path P] [--publish-to NS] [--wait] [OPTIONS]")
        formatter.write_usage(ctx.command_path, "show|logs|cancel BUILD_ID")


app = typer.Typer(
    cls=_DefaultToStart,
    help=(
        "Build NS's project into an sdist and a wheel and publish them: "
        "packyard build NS --path etl --publish-to company.sales --wait "
        "(the same as 'packyard build start NS ...'; 'packyard build start --help' lists its options). "
        "Or inspect a build: show, logs, cancel."
    ),
    no_args_is_help=True,
)
builds_app = typer.Typer(help="Builds: list.", no_args_is_help=True)


def wait_for(build_id: int, follow_log: bool) -> dict:
    offset = 0
    while True:
        if follow_log:
            data, _ = client().build_log(build_id, offset)
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
                offset += len(data)
        build = client().build_info(build_id)
        if build["state"] in DONE:
            if follow_log:
                data, _ = client().build_log(build_id, offset)
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            return build
        time.sleep(0.5)


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
def start(
    ns: str,
    path: str = typer.Option("", "--path", help="Project folder in the namespace (holds pyproject.toml or setup.py)."),
    publish_to: str = typer.Option(None, "--publish-to", help="Index namespace to publish to (default: NS)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the build to end; exit non-zero unless it succeeded."),
    force: bool = typer.Option(False, "--force", help="Build even if this source already built."),
    timeout: int = typer.Option(None, "--timeout", help="Seconds before the build is killed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Queue a build of NS: 'packyard build NS ...' (the same source already built is answered from cache)."""
    build = client().build(
        {"namespace": ns, "path": path, "publish_to": publish_to, "force": force, "timeout": timeout}
    )
    cached = build.get("cached")
    if wait and build["state"] not in DONE:
        build = {**wait_for(build["id"], follow_log=False), "cached": cached}
    if as_json:
        emit_json(build)
    else:
        console.print(("cached " if cached else "") + summary(build))
    if wait and build["state"] != "succeeded":
        if not as_json:
            console.print(log_hint(build))
        raise typer.Exit(1)


@app.command("show")
def show(build_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
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
def logs(
    build_id: int, follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the build ends.")
) -> None:
    """Print a build's log."""
    if follow:
        wait_for(build_id, follow_log=True)
        return
    data, _ = client().build_log(build_id)
    sys.stdout.buffer.write(data)


@app.command("cancel")
def cancel(build_id: int) -> None:
    """Cancel a queued or running build."""
    build = client().cancel_build(build_id)
    state = "cancel requested" if build["state"] == "running" else build["state"]
    console.print(f"build {build_id}: {state}")


@builds_app.command("ls")
def ls(namespace: str = typer.Option(None, "--namespace", "-n"), as_json: bool = typer.Option(False, "--json")) -> None:
    """List builds, newest first."""
    rows = client().builds(namespace)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "state", "namespace", "path", "publish_to", "artifacts", "created", "error"])


def worker(
    once: bool = typer.Option(False, "--once", help="Run at most one build, then exit."),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between claims when the queue is empty."),
    name: str = typer.Option(None, "--name", help="Worker name shown on its builds."),
    cache: Path = typer.Option(None, "--cache", help="Download cache for build backends."),
) -> None:
    """Run a build worker against PACKYARD_URL (needs an admin token for '*')."""
    from packyard.builder.worker import Worker
    from packyard.client import Client
    from packyard.worker import HttpWorkerAPI

    settings = _settings()
    api = HttpWorkerAPI(Client.from_settings(settings), name)
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


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
