"""What every benchmark script does besides measuring: signals, console, options, processes, report.

Each ``bench/*.py`` starts real servers, measures, prints tables and exits 1 on a failed check
or a missed goal. The parts of that which are the same in all of them live here, so that a fix
(a leaked process group, a squeezed table, a missing log tail) lands in every script at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import groupby
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

from tests.support.procs import Server, wait_until


class CheckFailed(Exception):
    """Something answered, but not as it must: the figures would be meaningless."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- the run ------------------------------------------------------------------------------------


def terminate(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` stops its servers and removes its files."""
    raise SystemExit(128 + signum)


def console(width: int) -> Console:
    """The terminal's console; when piped, a fixed ``width`` so wide tables are not squeezed to 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=width)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def machine_line(*notes: str) -> str:
    """The report's first line: every figure depends on the cores and on what else runs on them."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    line = (
        f"machine: nproc {len(os.sched_getaffinity(0))}, {platform.machine()}, {python}; "
        f"load average (1/5/15 min) {load_average()} at start"
    )
    return "; ".join([line, *notes])


def begin(width: int, *notes: str) -> Console:
    """Start a run: SIGTERM raises SystemExit from now on, and the report opens with the machine line."""
    signal.signal(signal.SIGTERM, terminate)
    out = console(width)
    out.print(machine_line(*notes))
    return out


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """One folder in /tmp for everything a run writes, removed at the end even on failure."""
    with tempfile.TemporaryDirectory(prefix=f"packyard-bench-{name}-", dir="/tmp", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


# -- options ------------------------------------------------------------------------------------

BACKENDS = ("local", "s3")


def new_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m MODULE --help``, described by the first line of the module's docstring."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n")[0])


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")


def chosen_backends(args: argparse.Namespace) -> list[str]:
    return list(BACKENDS) if args.backend == "both" else [args.backend]


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: int, *options: str) -> None:
    """A usage error (exit 2) unless every named option (``"--repeat"``, …) is at least ``minimum``."""
    if all(getattr(args, option.lstrip("-").replace("-", "_")) >= minimum for option in options):
        return
    names = f"{', '.join(options[:-1])} and {options[-1]}" if len(options) > 1 else options[0]
    parser.error(f"{names} must be at least {minimum}")


def parse(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    minimum: int,
    *options: str,
    quick: Mapping[str, int] | None = None,
) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick`` the ``quick`` values win over any given; then ``require_at_least``."""
    args = parser.parse_args(argv)
    if quick and args.quick:
        vars(args).update(quick)
    require_at_least(parser, args, minimum, *options)
    return args


# -- processes ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM to the process's group, SIGKILL after ``grace`` seconds (at once when 0), then reap it.

    The whole group, since servers and build tools start children that would outlive the leader;
    nothing once the leader is reaped, since its group id may belong to someone else by then.
    """
    if proc.poll() is not None:
        return
    if grace > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def timed(command: list[str], env: dict[str, str] | None, log: Path, timeout: float = 600,
          cwd: Path | None = None) -> tuple[float, str]:  # fmt: skip
    """Wall time of one process (its own group, killed whole on any exit) and its output, kept in ``log``.

    A non-zero exit is a failed check, with the output's tail in the message.
    """
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
            elapsed = time.perf_counter() - start
        finally:
            stop_group(proc, grace=0)
    text = log.read_text(errors="replace")
    if code != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise CheckFailed(f"{' '.join(command[:6])} ... exited {code}:\n{tail}")
    return elapsed, text


def run_timed(command: list[str], env: dict[str, str] | None = None, *, timeout: float = 900) -> float:
    """Wall time of a process whose output matters only when it fails (a non-zero exit fails the check)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-20:])
        raise CheckFailed(f"{' '.join(command[:8])} ... exited {done.returncode}:\n{tail}")
    return elapsed


class Process:
    """A server in its own process group, output in ``log``; stopping it stops all it started."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.cmd, self.log, self.env, self.cwd = cmd, log, env, cwd
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, ready_url: str, what: str, timeout: float = 120) -> None:
        """Start it and wait until ``ready_url`` answers 200 (a failed start says why, from the log)."""
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            wait_until(lambda: httpx.get(ready_url, timeout=5).status_code == 200, timeout, what, self.proc)
        except RuntimeError as exc:
            raise CheckFailed(f"{exc}\n{log_tail(self.log)}") from exc

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None


def admin_client(server: Server, **kwargs: Any) -> httpx.Client:
    """One keep-alive client for ``server`` that sends its admin token with every request."""
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, **kwargs)


def server_log(server: Server) -> Path:
    """Where ``tests.support.procs.Server`` writes the output of ``packyard serve``."""
    return server.data.parent / f"{server.data.name}-server.log"


def log_tail(path: Path, lines: int = 20) -> str:
    """The log's last lines, runs of one line collapsed (a retrying worker repeats itself)."""
    with contextlib.suppress(OSError):
        runs = [(text, sum(1 for _ in group)) for text, group in groupby(path.read_text(errors="replace").splitlines())]
        return "\n".join(text if n == 1 else f"{text}  [×{n}]" for text, n in runs[-lines:])
    return ""


def server_state(server: Server | None, wait: float = 0) -> str:
    """Whether the server outlived a failure (after up to ``wait`` s): a dead one explains a refused connection."""
    if server is None or server.proc is None:
        return "not started"
    try:
        code = server.proc.wait(timeout=wait) if wait > 0 else server.proc.poll()
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        return f"still running {wait:.0f} s later" if wait > 0 else "still running"
    return f"exited by signal {-code}" if code < 0 else f"exited with code {code}"


def failure(step: str, exc: BaseException, server: Server | None, wait: float = 0) -> str:
    """A failed step for the report: the exception, the server's state and the tail of its log."""
    text = f"{step}: {type(exc).__name__}: {exc} (server {server_state(server, wait)})"
    tail = "" if server is None else log_tail(server_log(server))
    return f"{text}\n--- server log (last lines) ---\n{tail}" if tail else text


# -- the report ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators, or a dash when it was not measured."""
    return "—" if value is None else f"{value:,.{digits}f}"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: list[float], unit: str = "s") -> str:
    """``median (min–max)``, or a dash: the median alone hides a load spike in one round."""
    if not values:
        return "—"
    m = statistics.median(values)
    if unit == "ms":
        return f"{m * 1000:.0f} ms ({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"
    return f"{m:.2f} s ({min(values):.2f}–{max(values):.2f})"


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else "[green]PASS[/]" if ok else "[red]FAIL[/]"


def exit_status(out: Console, errors: Iterable[str | None], goals: Mapping[str, bool | None] | None = None) -> int:
    """Print every error and missed goal in red, as plain text (errors hold log tails); 1 if there was any."""
    lines = [e for e in errors if e] + [f"goal missed: {g}" for g, ok in (goals or {}).items() if ok is False]
    for line in lines:
        out.print(line, style="red", markup=False, highlight=False)
    return 1 if lines else 0
