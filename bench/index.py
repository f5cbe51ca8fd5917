"""Package-index speed against devpi-server and pypiserver+waitress, measured in one run.

Run from the repository root: ``python -m bench.index`` (``--quick`` for a short run).

The peers are installed into their own virtual environment (``bench/.peers-venv``) so their
dependencies never clash with packyard's; ``wrk`` comes from Debian when it is missing.
Each server runs alone on 127.0.0.1 (the others are stopped), so no idle process shares
the two cores with the one measured. For each server this script:

1. uploads the same 300 files (50 projects x 3 versions x sdist + wheel) with one
   ``twine upload`` and times it (packyard and pypiserver get more rounds on fresh
   servers, median taken: one upload's time swings with the disk's fsync latency);
2. checks the pages list what was uploaded, warms them, and runs wrk on one project page
   (6 files) and on the root listing (50 projects).

Then it measures the p50 latency of one packyard project page with 100 and with 100,000
files in the catalog (rows inserted straight into the stopped server's SQLite file).

The issue's goals: project page >= 5x devpi-server; root listing >= pypiserver+waitress;
twine upload no slower than pypiserver; p50 at 100,000 files <= 1.5x p50 at 100 files.
A missed goal or a failed step exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import (
    CheckFailed,
    Process,
    begin,
    cpu_seconds,
    exit_status,
    fmt,
    log_tail,
    median,
    new_parser,
    require_at_least,
    run_timed,
    scratch,
    server_log,
    verdict,
)
from tests.support.dists import make_sdist, make_wheel
from tests.support.procs import Server, free_port

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
PEER_PACKAGES = ["devpi-server", "devpi-client", "pypiserver", "waitress", "watchdog", "twine"]
"""twine comes along so that every server is fed by the same client version."""
PEER_SCRIPTS = ["devpi-init", "devpi-server", "devpi", "pypi-server", "twine"]

NAMESPACE = "bench"
PROJECTS = 50
VERSIONS = ("1.0.0", "1.1.0", "2.0.0")
PAGE_PROJECT = "bench-proj-25"
DEVPI_USER, DEVPI_PASSWORD, DEVPI_INDEX = "bench", "bench-password", "dev"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
SCALE_SIZES = (100, 100_000)

# the goals from the issue
PROJECT_VS_DEVPI = 5.0
ROOT_VS_PYPISERVER = 1.0
UPLOAD_VS_PYPISERVER = 1.0
SCALE_P50 = 1.5


# -- tools -------------------------------------------------------------------------------


def ensure_peers(venv: Path, out: Console) -> Path:
    """The peers' bin folder, installing them first when any is missing (fresh CI machines)."""
    bin_dir = venv / "bin"
    python = bin_dir / "python"

    def complete() -> bool:
        if not python.exists() or not all((bin_dir / s).exists() for s in PEER_SCRIPTS):
            return False
        return subprocess.run([python, "-c", "import waitress, watchdog"], capture_output=True).returncode == 0

    if not complete():
        out.print(f"[dim]installing {' '.join(PEER_PACKAGES)} into {venv} …[/]")
        run_timed([sys.executable, "-m", "venv", "--clear", str(venv)])
        run_timed([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES])
        if not complete():
            raise CheckFailed(f"the peers are still incomplete in {venv} after pip install")
    return bin_dir


def ensure_wrk(out: Console) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        if os.geteuid() != 0:
            raise CheckFailed("wrk is missing and this is not root: sudo apt-get install -y wrk")
        out.print("[dim]installing wrk (apt-get) …[/]")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run_timed(["apt-get", "update"], env=env)
        run_timed(["apt-get", "install", "-y", "wrk"], env=env)
        wrk = shutil.which("wrk")
        if wrk is None:
            raise CheckFailed("apt-get installed wrk but it is not on PATH")
    return wrk


# -- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    rps: float
    p50_ms: float
    cpu_us: float
    """Server CPU time per request: unlike req/s, barely moved by other load on the machine."""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str, cpu: float) -> Figure:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    count = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or p50 is None or count is None or int(count.group(1)) == 0:
        raise CheckFailed(f"cannot read wrk's output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad:
        raise CheckFailed(f"{bad.group(1)} responses were not 2xx/3xx: the figures would be of errors")
    latency = float(p50.group(1)) * _UNITS[p50.group(2)]
    return Figure(float(rps.group(1)), latency, cpu / int(count.group(1)) * 1e6)


@dataclass(frozen=True)
class Load:
    wrk: str
    seconds: int
    threads: int
    connections: int

    def measure(self, url: str, pid: int, accept: str | None = None) -> Figure:
        """wrk against ``url``, and the CPU time the server ``pid`` spent meanwhile."""
        cmd = [self.wrk, f"-t{self.threads}", f"-c{self.connections}", f"-d{self.seconds}s", "--latency"]
        if accept:
            cmd += ["-H", f"Accept: {accept}"]
        before = cpu_seconds(pid)
        done = subprocess.run(
            [*cmd, url], capture_output=True, text=True, timeout=self.seconds + 60, stdin=subprocess.DEVNULL
        )
        cpu = cpu_seconds(pid) - before
        if done.returncode != 0:
            raise CheckFailed(f"wrk {url} exited {done.returncode}: {done.stderr.strip()}")
        return parse_wrk(done.stdout, cpu)


def warm(url: str, expect: list[str], accept: str | None = None, times: int = 20) -> float:
    """Check the page lists what was uploaded (so wrk measures real pages), warm it, and
    return the first request's time in ms: the cache-miss cost."""
    headers = {"Accept": accept} if accept else {}
    with httpx.Client(headers=headers, timeout=60) as client:
        first = 0.0
        for i in range(times):
            start = time.perf_counter()
            response = client.get(url)
            if i == 0:
                first = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise CheckFailed(f"GET {url}: {response.status_code} {response.text[:200]}")
        missing = [name for name in expect if name not in response.text]
        if missing:
            raise CheckFailed(f"GET {url} lacks {len(missing)} expected names, e.g. {missing[0]}")
    return first


# -- the data set ------------------------------------------------------------------------


def project_name(i: int) -> str:
    return f"bench-proj-{i:02d}"


def make_dists(out: Path) -> list[Path]:
    """The 300 files every server gets: small, valid, and the same bytes for each."""
    files: list[Path] = []
    for i in range(PROJECTS):
        for version in VERSIONS:
            files.append(make_sdist(out, project_name(i), version))
            files.append(make_wheel(out, project_name(i), version))
    return files


def files_of(files: list[Path], project: str) -> list[Path]:
    prefix = project.replace("-", "_") + "-"
    return [f for f in files if f.name.startswith(prefix)]


def twine_upload(bin_dir: Path, url: str, user: str, password: str, files: list[Path], root: Path) -> float:
    """One ``twine upload`` of all ``files``; its wall time in seconds."""
    config = root / "pypirc"
    config.write_text("[distutils]\nindex-servers =\n")
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    cmd = [str(bin_dir / "twine"), "upload", "--non-interactive", "--disable-progress-bar"]
    cmd += ["--config-file", str(config), "--repository-url", url, "-u", user, "-p", password]
    return run_timed([*cmd, *map(str, files)], env=env)


# -- the servers -------------------------------------------------------------------------


class IndexServer(Protocol):
    name: str

    def start(self) -> None: ...

    def upload(self, files: list[Path]) -> float: ...

    def root_url(self) -> str: ...

    def project_url(self, project: str) -> str: ...

    def pid(self) -> int:
        """The serving process, whose CPU time is measured."""
        ...

    def stop(self) -> None: ...


@dataclass
class Packyard:
    """The embedded server (local backend), anonymous reads on, request logging off."""

    root: Path
    bin_dir: Path
    name: str = "packyard"
    server: Server = field(init=False)

    def __post_init__(self) -> None:
        env = {"PACKYARD_ANONYMOUS_READ": "true", "PACKYARD_LOG_REQUESTS": "false"}
        self.server = Server(self.root / "packyard", env)

    def start(self) -> None:
        try:
            self.server.start()
        except RuntimeError as exc:
            raise CheckFailed(f"{exc}\n{log_tail(server_log(self.server))}") from exc

    def upload(self, files: list[Path]) -> float:
        url = f"{self.server.url}/{NAMESPACE}/"
        return twine_upload(self.bin_dir, url, "__token__", self.server.admin_token, files, self.root)

    def root_url(self) -> str:
        return f"{self.server.url}/{NAMESPACE}/simple/"

    def project_url(self, project: str) -> str:
        return f"{self.server.url}/{NAMESPACE}/simple/{project}/"

    def pid(self) -> int:
        assert self.server.proc is not None, "not started"
        return self.server.proc.pid

    def stop(self) -> None:
        self.server.stop()


@dataclass
class PackyardNoFsync(Packyard):
    """The same server with ``PACKYARD_FSYNC=false``: the upload without waiting for the disk,
    as pypiserver does. Reported beside the goal, never instead of it (the default is durable)."""

    name: str = "packyard, PACKYARD_FSYNC=false"

    def __post_init__(self) -> None:
        env = {"PACKYARD_ANONYMOUS_READ": "true", "PACKYARD_LOG_REQUESTS": "false", "PACKYARD_FSYNC": "false"}
        self.server = Server(self.root / "packyard", env)


DEVPI_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
}
"""devpi logs every request at INFO; packyard runs without request logs, so devpi does too."""


@dataclass
class Peer:
    """A peer server on 127.0.0.1, in its own process group once started."""

    root: Path
    bin_dir: Path
    name: str = ""
    port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Devpi(Peer):
    """devpi-server with one user and one non-volatile index with no bases (no PyPI mirror)."""

    name: str = "devpi-server"

    @property
    def index_url(self) -> str:
        return f"{self.url}/{DEVPI_USER}/{DEVPI_INDEX}"

    def start(self) -> None:
        serverdir, clientdir = self.root / "devpi-server", self.root / "devpi-client"
        logging_cfg = self.root / "devpi-logging.json"
        logging_cfg.write_text(json.dumps(DEVPI_LOGGING))
        run_timed([str(self.bin_dir / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi"])
        self.port = free_port()
        cmd = [str(self.bin_dir / "devpi-server"), "--serverdir", str(serverdir), "--port", str(self.port)]
        cmd += ["--host", "127.0.0.1", "--logger-cfg", str(logging_cfg), "--offline-mode"]
        self.process = Process(cmd, self.root / "devpi-server.log")
        self.process.start(f"{self.url}/+api", "devpi-server")
        devpi = [str(self.bin_dir / "devpi"), "--clientdir", str(clientdir)]
        run_timed([devpi[0], "use", *devpi[1:], self.url])
        run_timed([devpi[0], "user", *devpi[1:], "-c", DEVPI_USER, f"password={DEVPI_PASSWORD}"])
        run_timed([devpi[0], "login", *devpi[1:], DEVPI_USER, "--password", DEVPI_PASSWORD])
        run_timed([devpi[0], "index", *devpi[1:], "-c", f"{DEVPI_USER}/{DEVPI_INDEX}", "volatile=False", "bases="])

    def upload(self, files: list[Path]) -> float:
        return twine_upload(self.bin_dir, f"{self.index_url}/", DEVPI_USER, DEVPI_PASSWORD, files, self.root)

    def root_url(self) -> str:
        return f"{self.index_url}/+simple/"

    def project_url(self, project: str) -> str:
        return f"{self.index_url}/+simple/{project}/"


@dataclass
class PyPIServer(Peer):
    """pypiserver on waitress with its cached-dir backend; authentication off (-a . -P .).

    pypiserver 2.x has no ``--server waitress``: ``auto`` lets bottle pick waitress when it
    is installed, which ``start`` checks from the ``Server`` header.
    """

    name: str = "pypiserver+waitress"

    def start(self) -> None:
        packages = self.root / "pypiserver-packages"
        packages.mkdir()
        self.port = free_port()
        cmd = [str(self.bin_dir / "pypi-server"), "run", "-p", str(self.port), "-i", "127.0.0.1"]
        cmd += ["--server", "auto", "--backend", "cached-dir", "--disable-fallback", "-a", ".", "-P", "."]
        self.process = Process([*cmd, str(packages)], self.root / "pypiserver.log")
        self.process.start(f"{self.url}/health", "pypiserver")
        served_by = httpx.get(f"{self.url}/health").headers.get("server", "")
        if served_by != "waitress":
            raise CheckFailed(f"pypiserver runs on {served_by!r}, not waitress: is waitress in {self.bin_dir.parent}?")

    def upload(self, files: list[Path]) -> float:
        return twine_upload(self.bin_dir, f"{self.url}/", "bench", "bench", files, self.root)

    def root_url(self) -> str:
        return f"{self.url}/simple/"

    def project_url(self, project: str) -> str:
        return f"{self.url}/simple/{project}/"


# -- the comparison ----------------------------------------------------------------------


@dataclass
class Result:
    """One server's figures; ``None`` means not measured (an earlier step failed)."""

    name: str
    uploads: list[float] = field(default_factory=list)
    upload_cpu: list[float] = field(default_factory=list)
    project: Figure | None = None
    root: Figure | None = None
    project_json: Figure | None = None
    root_json: Figure | None = None
    error: str | None = None

    @property
    def upload_s(self) -> float | None:
        """The median: one upload's time swings with other load on the machine."""
        return median(self.uploads)

    @property
    def upload_cpu_s(self) -> float | None:
        return median(self.upload_cpu)

    def timed_upload(self, server: IndexServer, files: list[Path]) -> None:
        before = cpu_seconds(server.pid())
        self.uploads.append(server.upload(files))
        self.upload_cpu.append(cpu_seconds(server.pid()) - before)


MEASURED = (CheckFailed, httpx.HTTPError, subprocess.TimeoutExpired, OSError, sqlite3.Error)
"""What a failed step raises; anything else is a bug in this script and propagates."""


def measure_server(server: IndexServer, files: list[Path], load: Load, out: Console) -> Result:
    result = Result(server.name)
    projects = [project_name(i) for i in range(PROJECTS)]
    page_files = [f.name for f in files_of(files, PAGE_PROJECT)]
    try:
        out.print(f"[dim]{server.name}: starting …[/]")
        server.start()
        out.print(f"[dim]{server.name}: twine upload of {len(files)} files …[/]")
        result.timed_upload(server, files)
        warm(server.project_url(PAGE_PROJECT), page_files)
        warm(server.root_url(), projects)
        out.print(f"[dim]{server.name}: wrk …[/]")
        result.project = load.measure(server.project_url(PAGE_PROJECT), server.pid())
        result.root = load.measure(server.root_url(), server.pid())
        if isinstance(server, Packyard):
            warm(server.project_url(PAGE_PROJECT), page_files, PIP_ACCEPT)
            warm(server.root_url(), projects, PIP_ACCEPT)
            result.project_json = load.measure(server.project_url(PAGE_PROJECT), server.pid(), PIP_ACCEPT)
            result.root_json = load.measure(server.root_url(), server.pid(), PIP_ACCEPT)
    except MEASURED as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return result


def upload_again(server: IndexServer, files: list[Path], result: Result) -> None:
    """One more timed upload to a fresh server, for the median of the upload goal."""
    try:
        server.start()
        result.timed_upload(server, files)
    except MEASURED as exc:
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()


# -- catalog size ------------------------------------------------------------------------


def filler_rows(count: int) -> Iterator[dict]:
    """Rows for other projects (6 files each) with made-up hashes: never served, only counted."""
    stamp = "2024-01-01T00:00:00.000000Z"
    for i in range(count):
        project = f"filler-{i // 6:06d}"
        module = project.replace("-", "_")
        version = f"1.0.{i % 6 // 2}"
        wheel = i % 2 == 0
        filename = f"{module}-{version}-py3-none-any.whl" if wheel else f"{module}-{version}.tar.gz"
        sha = hashlib.sha256(filename.encode()).hexdigest()
        meta = hashlib.sha256(b"meta" + filename.encode()).hexdigest()
        yield {
            "namespace": NAMESPACE,
            "filename": filename,
            "project": project,
            "name": project,
            "version": version,
            "filetype": "bdist_wheel" if wheel else "sdist",
            "sha256": sha,
            "size": 2048,
            "metadata_sha256": meta,
            "requires_python": ">=3.8",
            "summary": "filler",
            "upload_time": stamp,
            "uploader": "bench",
            "yanked": 0,
            "core_metadata": int(wheel),  # decided, so the server does not look for their metadata at start
        }


def fill_catalog(catalog: Path, count: int) -> int:
    """Insert ``count`` rows into a stopped server's catalog in one transaction; new total."""
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        with db:
            columns = list(next(filler_rows(1)))
            sql = f"INSERT INTO dists ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
            db.executemany(sql, filler_rows(count))
        return db.execute("SELECT count(*) FROM dists").fetchone()[0]


@dataclass
class ScaleResult:
    files: int
    cold_ms: float | None = None
    page: Figure | None = None
    error: str | None = None


def measure_scale(size: int, files: list[Path], root: Path, bin_dir: Path, load: Load, out: Console) -> ScaleResult:
    """One project page of a fresh packyard whose catalog holds ``size`` files in all."""
    result = ScaleResult(size)
    page = files_of(files, PAGE_PROJECT)
    work = root / f"scale-{size}"
    work.mkdir()
    server = Packyard(work, bin_dir)
    try:
        out.print(f"[dim]packyard with {size:,} files: filling the catalog …[/]")
        server.start()
        server.upload(page)
        server.stop()
        total = fill_catalog(server.server.data / "catalog.db", size - len(page))
        if total != size:
            raise CheckFailed(f"the catalog holds {total} files, not {size}")
        server.start()
        result.cold_ms = warm(server.project_url(PAGE_PROJECT), [f.name for f in page])
        out.print(f"[dim]packyard with {size:,} files: wrk …[/]")
        result.page = load.measure(server.project_url(PAGE_PROJECT), server.pid())
    except MEASURED as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return result


# -- the report --------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


@dataclass
class Goal:
    name: str
    ok: bool | None


@dataclass(frozen=True)
class Target:
    """A goal on packyard's figure over a peer's: ``peer`` 1 is devpi-server, 2 pypiserver."""

    name: str
    text: str
    peer: int
    bound: float
    higher_is_better: bool = True

    def check(self, got: float | None) -> bool | None:
        if got is None:
            return None
        return got >= self.bound if self.higher_is_better else got <= self.bound


def comparison_table(ours: Result, devpi: Result, pypi: Result, load: Load, goals: list[Goal]) -> Table:
    table = Table(
        title=f"package index — {PROJECTS} projects × {len(VERSIONS)} versions × (sdist + wheel); "
        f"wrk -t{load.threads} -c{load.connections} -d{load.seconds}s"
    )
    table.add_column("measure")
    for column in (ours.name, devpi.name, pypi.name, f"{ours.name}\n/ devpi", f"{ours.name}\n/ pypiserver"):
        table.add_column(column, justify="right")
    table.add_column("goal")
    table.add_column("result", justify="center")

    def figure(r: Result, attr: str, part: str) -> float | None:
        found: Figure | None = getattr(r, attr)
        return getattr(found, part) if found else None

    def row(label: str, values: list[float | None], digits: int, target: Target | None = None) -> None:
        ratios = [ratio(values[0], values[1]), ratio(values[0], values[2])]
        cells = [fmt(v, digits) for v in values] + [fmt(r, 2) for r in ratios]
        if target is None:
            table.add_row(label, *cells, "", "")
            return
        ok = target.check(ratios[target.peer - 1])
        goals.append(Goal(target.name, ok))
        table.add_row(label, *cells, target.text, verdict(ok))

    servers = (ours, devpi, pypi)
    pages = (
        (
            "project page",
            f"({2 * len(VERSIONS)} files)",
            "project",
            Target("project page vs devpi-server", f"≥ {PROJECT_VS_DEVPI:g}× devpi", 1, PROJECT_VS_DEVPI),
        ),
        (
            "root listing",
            f"({PROJECTS} projects)",
            "root",
            Target("root listing vs pypiserver", f"≥ {ROOT_VS_PYPISERVER:g}× pypiserver", 2, ROOT_VS_PYPISERVER),
        ),
    )
    for page, size, attr, target in pages:
        row(f"{page} {size} req/s", [figure(r, attr, "rps") for r in servers], 0, target)
        row(f"{page} p50 ms", [figure(r, attr, "p50_ms") for r in servers], 2)
        row(f"{page} server CPU µs/req", [figure(r, attr, "cpu_us") for r in servers], 0)
        row(f"{page} req/s, pip Accept (JSON)", [figure(ours, f"{attr}_json", "rps"), None, None], 0)
    rounds = max(len(ours.uploads), len(pypi.uploads))
    row(
        f"twine upload of {PROJECTS * len(VERSIONS) * 2} files, s" + (f" (median of {rounds})" if rounds > 1 else ""),
        [r.upload_s for r in servers],
        2,
        Target("twine upload vs pypiserver", f"≤ {UPLOAD_VS_PYPISERVER:g}× pypiserver", 2, UPLOAD_VS_PYPISERVER, False),
    )
    row("server CPU during the upload, s", [r.upload_cpu_s for r in servers], 2)
    return table


def scale_table(results: list[ScaleResult], goals: list[Goal]) -> Table:
    table = Table(title=f"packyard project page ({PAGE_PROJECT}, 6 files) against catalog size")
    columns = (
        "files in catalog",
        "first request ms (cache miss)",
        "req/s",
        "server CPU µs/req",
        "p50 ms",
        "p50 / smallest",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("goal")
    table.add_column("result", justify="center")
    base = results[0].page.p50_ms if results[0].page else None
    for r in results:
        p50 = r.page.p50_ms if r.page else None
        growth = ratio(p50, base)
        last = r is results[-1]
        ok = None if growth is None else growth <= SCALE_P50
        table.add_row(
            f"{r.files:,}",
            fmt(r.cold_ms, 1),
            fmt(r.page.rps if r.page else None),
            fmt(r.page.cpu_us if r.page else None),
            fmt(p50, 2),
            fmt(growth, 2),
            f"≤ {SCALE_P50:g}×" if last else "",
            verdict(ok) if last else "",
        )
    goals.append(Goal(f"p50 at {results[-1].files:,} vs {results[0].files:,} files", ok))
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.index", __doc__)
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs and one upload each, for development")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 10, 3 with --quick)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--upload-rounds",
        type=int,
        help="timed uploads to fresh packyard and pypiserver servers, median taken (default 5, 1 with --quick); "
        "devpi-server, whose upload has no goal, gets one",
    )
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV, help=f"default {PEERS_VENV}")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.upload_rounds is None:
        args.upload_rounds = 1 if args.quick else 5
    require_at_least(parser, args, 1, "--duration", "--connections", "--threads", "--upload-rounds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = begin(200)
    bin_dir = ensure_peers(args.peers_venv, out)
    load = Load(ensure_wrk(out), args.duration, args.threads, args.connections)
    out.print(
        "method: each server alone on 127.0.0.1, wrk on the same cores, keep-alive, no Accept header (HTML) "
        "unless marked; devpi-server and packyard without request logs; pages checked and warmed first"
    )
    servers: list[type[Packyard] | type[Devpi] | type[PyPIServer]] = [Packyard, Devpi, PyPIServer]
    results: list[Result] = []
    scale: list[ScaleResult] = []
    with scratch("index") as root:
        files = make_dists(root / "dists")

        def fresh(make: type[Packyard] | type[Devpi] | type[PyPIServer], label: str) -> IndexServer:
            work = root / f"{make.__name__.lower()}-{label}"
            work.mkdir()
            return make(work, bin_dir)

        for make in servers:
            results.append(measure_server(fresh(make, "main"), files, load, out))
        for i in range(1, args.upload_rounds):
            out.print(f"[dim]upload round {i + 1} of {args.upload_rounds} (packyard, pypiserver) …[/]")
            for make, result in ((Packyard, results[0]), (PyPIServer, results[2])):
                upload_again(fresh(make, f"upload-{i}"), files, result)
        no_fsync = Result(PackyardNoFsync.name)
        for i in range(args.upload_rounds):
            out.print(f"[dim]upload round {i + 1} of {args.upload_rounds} (packyard, PACKYARD_FSYNC=false) …[/]")
            upload_again(fresh(PackyardNoFsync, f"nofsync-{i}"), files, no_fsync)
        for size in SCALE_SIZES:
            scale.append(measure_scale(size, files, root, bin_dir, load, out))
    goals: list[Goal] = []
    out.print(comparison_table(*results, load, goals))
    for r in results:
        if len(r.uploads) > 1:
            out.print(f"  {r.name} uploads, s: {' '.join(f'{t:.2f}' for t in r.uploads)}", highlight=False)
    if no_fsync.upload_s is not None and results[2].upload_s:
        out.print(
            f"  {no_fsync.name}: upload {no_fsync.upload_s:.2f} s (median), "
            f"{no_fsync.upload_s / results[2].upload_s:.2f}× pypiserver (information; the goal is the default)",
            highlight=False,
        )
    out.print(scale_table(scale, goals))
    errors = [f"{r.name}: {r.error}" for r in results if r.error]
    errors += [f"packyard with {r.files:,} files: {r.error}" for r in scale if r.error]
    # A goal that could not be measured is missed too.
    return exit_status(out, errors, {goal.name: goal.ok is True for goal in goals})


if __name__ == "__main__":
    sys.exit(main())
