"""Scale-out: one vs two server processes (and nginx) on one page, change propagation between
servers, the hot path on PostgreSQL vs SQLite, and uploads over two servers vs one.

1. A project page with 20 files is served by ``packyard serve --workers 1`` and
   ``--workers 2`` (SQLite, local blobs), and the same bytes by nginx with 1 and 2 worker
   processes; wrk measures each in turn, in the same run. Goals: 2 processes ≥ 1.7× one,
   and packyard ≥ 0.4× nginx at equal process count. "2 processes / 1" is measured as two
   processes on the machine's two cores over one process pinned to one core — wrk shares
   the cores in both runs. Left free to use the second core, wrk makes the one-process run
   faster than half the machine allows, and the ratio is capped near ``2s / (s + w)``
   (``s``, ``w``: the server's and wrk's CPU per request; nginx is capped alike): that
   figure, its cap and nginx's are printed beside it.
2. Propagation: two servers on one catalog; 200 times a yank (or unyank) through A, then B's
   page is polled until it shows the change: p50 and p99 of the time from A's 2xx to B
   serving it. Goals: p99 ≤ 100 ms on SQLite, ≤ 1 s on PostgreSQL.
3. Hot path on PostgreSQL vs SQLite: the same page from one process on each catalog
   (goal: within 10 %).
4. Uploads/s with 8 concurrent publishers spread over 2 servers vs all on 1.

The wrk runs of 1 and 3 go in rounds (``--rounds``, default 3) with every server up, each
row's median run reported: on this shared 2-core machine one run's req/s moves by ±20 %
from one run to the next, which a single pair of runs would put into every ratio.

PostgreSQL comes from a throwaway cluster (``tests/support/postgres.py``; Debian's
``postgresql`` package). wrk and nginx come from Debian (``apt-get install wrk nginx``);
wrk is installed when missing and this runs as root. The machine is 2 cores shared with
wrk itself, so figures from a loaded machine are noted as such (the load average is printed).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    CheckFailed,
    Process,
    begin,
    check,
    cpu_seconds,
    exit_status,
    fmt,
    new_parser,
    parse,
    scratch,
    verdict,
)
from bench.index import Figure, Load, ensure_wrk, parse_wrk
from tests.support.clients import JSON_V1, post_upload
from tests.support.dists import make_wheel
from tests.support.procs import free_port, wait_until
from tests.support.sockets import ESTABLISHED, descendants, holders

ADMIN = "bench-admin-token"
NS = "bench"
PROJECT = "scalepkg"


def packyard_env(data: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env.update(
        PACKYARD_DATA=str(data),
        PACKYARD_PORT=str(port),
        PACKYARD_ADMIN_TOKEN=ADMIN,
        PACKYARD_EMBEDDED_WORKER="false",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    if database_url:
        env["PACKYARD_DATABASE_URL"] = database_url
    return env


@contextmanager
def packyard(
    root: Path, name: str, data: Path, *, workers: int = 1, database_url: str | None = None
) -> Iterator[Served]:
    """A running ``packyard serve`` on ``data`` (and the catalog at ``database_url``), all its processes up."""
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "packyard", "serve", "--workers", str(workers)],
        root / f"{name}.log",
        packyard_env(data, port, database_url),
    )
    url = f"http://127.0.0.1:{port}"
    proc.start(f"{url}/healthz", f"packyard ({name})")
    try:
        if workers > 1:  # /healthz answers once one process does: measure only with all of them up
            ready = f"{workers} server processes ready"
            wait_until(lambda: ready in (root / f"{name}.log").read_text(errors="replace"), 120, ready, proc.proc)
        yield Served(url, proc.pid)
    finally:
        proc.stop()


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    """The server's top process: its CPU and its children's is what the server spent."""


@contextmanager
def nginx(root: Path, workers: int, page: bytes) -> Iterator[Served]:
    """nginx serving ``page`` at the project page's path, with ``workers`` worker processes.

    ``reuseport``: a listening socket per worker, as ``packyard serve --workers N`` has.
    """
    port = free_port()
    site = root / f"nginx-{workers}"
    (site / "www" / NS / "simple" / PROJECT).mkdir(parents=True, exist_ok=True)
    (site / "www" / NS / "simple" / PROJECT / "index.html").write_bytes(page)
    conf = site / "nginx.conf"
    # as root, nginx's workers would run as nobody, who cannot enter the private scratch folder
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}worker_processes {workers};\ndaemon off;\npid {site}/nginx.pid;\nerror_log {site}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; client_body_temp_path {site}/tmp; proxy_temp_path {site}/tmp;\n"
        f"  fastcgi_temp_path {site}/tmp; uwsgi_temp_path {site}/tmp; scgi_temp_path {site}/tmp;\n"
        f"  default_type text/html; server {{ listen 127.0.0.1:{port} reuseport; root {site}/www; }} }}\n"
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = Process([binary, "-c", str(conf)], site / "out.log")
    url = f"http://127.0.0.1:{port}"
    proc.start(f"{url}/{NS}/simple/{PROJECT}/", f"nginx ({workers})")
    try:
        yield Served(url, proc.pid)
    finally:
        proc.stop()


def seed(url: str, wheels: list[Path]) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/api/v1/namespaces", json={"name": NS}, headers={"Authorization": f"Bearer {ADMIN}"})
        for wheel in wheels:
            response = post_upload(http, NS, wheel.name, wheel.read_bytes(), ADMIN)
            check(response.status_code == 200, f"upload {wheel.name}: {response.status_code} {response.text[:200]}")


def page_url(url: str) -> str:
    return f"{url}/{NS}/simple/{PROJECT}/"


def warm(url: str, times: int = 50) -> bytes:
    with httpx.Client(timeout=30) as http:
        for _ in range(times):
            response = http.get(page_url(url))
            check(response.status_code == 200, f"GET {page_url(url)}: {response.status_code}")
    return response.content


@dataclass(frozen=True)
class Run:
    """One wrk run on the page, with what the server's processes and wrk spent meanwhile."""

    figure: Figure
    """req/s, p50, and the server's CPU per request (all its processes)."""
    seconds: float
    processes: list[float]
    """CPU seconds of each server process that did work, most first."""
    wrk_cpu: float
    split: list[int]
    """Connections each server process held halfway through, most first."""

    @property
    def cores(self) -> float:
        return sum(self.processes) / self.seconds

    @property
    def wrk_us(self) -> float:
        """wrk's CPU per request, in µs: on a 2-core machine, taken from the servers' share."""
        return self.figure.cpu_us * self.wrk_cpu / max(sum(self.processes), 1e-9)

    def note(self) -> str:
        per = " + ".join(f"{cpu / self.seconds:.2f}" for cpu in self.processes)
        split = "/".join(str(n) for n in self.split) or "?"
        return (
            f"p50 {self.figure.p50_ms:.2f} ms; server {self.cores:.2f} cores ({per}), "
            f"{self.figure.cpu_us:.0f} µs/req; wrk {self.wrk_cpu / self.seconds:.2f} cores, "
            f"{self.wrk_us:.0f} µs/req; connections {split}"
        )


def tree_cpu(pid: int) -> dict[int, float]:
    cpu = {}
    for member in {pid, *descendants(pid)}:
        with suppress(OSError):
            cpu[member] = cpu_seconds(member)
    return cpu


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and of the processes below it onto ``cpus`` (threads made later inherit it)."""
    for member in {pid, *descendants(pid)}:
        for task in Path(f"/proc/{member}/task").glob("*"):
            with suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)


def measure(load: Load, served: Served, cpus: set[int] | None = None) -> Run:
    """wrk on the page; the CPU of every process of the server and of wrk; the connections' split.
    With ``cpus``, the server and wrk run on those cores only (the server gets every core back after)."""
    if cpus is None:
        return _measure(load, served, None)
    pin(served.pid, cpus)
    try:
        return _measure(load, served, cpus)
    finally:
        pin(served.pid, os.sched_getaffinity(0))


def _measure(load: Load, served: Served, cpus: set[int] | None) -> Run:
    cmd = [load.wrk, f"-t{load.threads}", f"-c{load.connections}", f"-d{load.seconds}s", "--latency"]
    before = tree_cpu(served.pid)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with subprocess.Popen(
        [*cmd, page_url(served.url)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),  # noqa: PLW1509 - no threads here
    ) as wrk:
        time.sleep(load.seconds / 2)
        port = int(served.url.rsplit(":", 1)[1])
        taken = holders(port, ESTABLISHED, {served.pid, *descendants(served.pid)})
        output, errors = wrk.communicate(timeout=load.seconds + 60)
    elapsed = time.perf_counter() - start
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = tree_cpu(served.pid)
    if wrk.returncode != 0:
        raise CheckFailed(f"wrk exited {wrk.returncode}: {errors.strip()}")
    spent = sorted((after[p] - before.get(p, 0.0) for p in after), reverse=True)
    spent = [cpu for cpu in spent if cpu >= 0.02 * elapsed]  # the processes that served (not a parent)
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    split = sorted((len(held) for held in taken.values()), reverse=True)
    return Run(parse_wrk(output, sum(spent)), elapsed, spent, wrk_cpu, split)


def median_run(runs: list[Run]) -> Run:
    """The run with the median req/s (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run.figure.rps)[(len(runs) - 1) // 2]


def ceiling(one: Run, two: Run, cores: int) -> float:
    """The 2 / 1 ratio this machine allows: each process serves a request in ``s`` µs of CPU
    (measured with one process), wrk spends ``w`` µs on it (measured with two), all on
    ``cores`` cores: one process is bound by its own core, two by ``cores / (s + w)``."""
    s, w = one.figure.cpu_us, two.wrk_us
    return min(2 / s, cores / (s + w)) / min(1 / s, cores / (s + w))


# -- propagation --------------------------------------------------------------------------------


def propagation(a: str, b: str, writes: int) -> list[float]:
    """Seconds from A's 2xx for a yank/unyank until B's page shows it, for each write."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    filename = f"{PROJECT.replace('-', '_')}-1.0-py3-none-any.whl"
    delays = []
    with httpx.Client(base_url=a, timeout=30, headers=headers) as writer, httpx.Client(timeout=30) as reader:
        for i in range(writes):
            yank = i % 2 == 0
            action = "yank" if yank else "unyank"
            response = writer.post(f"/api/v1/namespaces/{NS}/dists/{PROJECT}/1.0/{action}", json={"reason": "b"})
            check(response.status_code == 200, f"{action}: {response.status_code} {response.text[:200]}")
            done = time.perf_counter()
            deadline = done + 10
            while True:
                files = reader.get(page_url(b), headers={"Accept": JSON_V1}).json()["files"]
                state = next(f["yanked"] for f in files if f["filename"] == filename)
                if (state is not False) == yank:
                    delays.append(time.perf_counter() - done)
                    break
                check(time.perf_counter() < deadline, f"B did not show write {i} within 10 s")
    return delays


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- uploads ------------------------------------------------------------------------------------


def uploads_per_second(urls: list[str], wheels: list[Path], publishers: int = 8) -> float:
    """``publishers`` threads upload ``wheels`` (each once), publisher i to ``urls[i % len(urls)]``."""
    queue = list(wheels)
    lock = threading.Lock()
    errors: list[str] = []

    def publish(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=120) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    wheel = queue.pop()
                response = post_upload(http, NS, wheel.name, wheel.read_bytes(), ADMIN)
                if response.status_code != 200:
                    errors.append(f"{wheel.name}: {response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(publishers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    check(not errors, f"uploads failed: {errors[:3]}")
    return len(wheels) / elapsed


# -- the run ------------------------------------------------------------------------------------


@contextmanager
def throwaway_postgres() -> Iterator[object | None]:
    try:
        from tests.support.postgres import Postgres
    except ImportError:
        yield None
        return
    cluster = Postgres().start()
    try:
        yield cluster
    finally:
        cluster.remove()


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.scale", __doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over the page runs, each row's median reported (default 3)"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--writes", type=int, default=200, help="propagation samples (default 200)")
    parser.add_argument("--uploads", type=int, default=160, help="wheels per upload run (default 160)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL parts")
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs in 1 round, 50 writes, 40 uploads")
    args = parse(
        parser,
        argv,
        1,
        "--duration",
        "--rounds",
        "--writes",
        "--uploads",
        quick={"duration": 3, "rounds": 1, "writes": 50, "uploads": 40},
    )
    out = begin(140, "2 cores shared by wrk, the servers and (on this machine) other jobs")
    errors: list[str] = []
    goals: dict[str, bool | None] = {}
    rows: list[tuple[str, str, str]] = []
    wrk = ensure_wrk(out)
    load = Load(wrk, args.duration, 2, args.connections)
    with scratch("scale") as root:
        wheels = [make_wheel(root / "page", PROJECT, f"1.{i}") for i in range(20)]
        wheels[0] = make_wheel(root / "page", PROJECT, "1.0")
        try:
            # 1. page req/s: 1 and 2 processes, nginx 1 and 2 workers
            data = root / "sqlite-data"
            with packyard(root, "seed", data) as served:
                seed(served.url, wheels)
                page = warm(served.url)
            busy = os.getloadavg()[0]
            pinnable = len(os.sched_getaffinity(0)) >= 2
            one_core = {min(os.sched_getaffinity(0))}
            with ExitStack() as up:  # all four up at once: the rounds alternate between them
                servers = {
                    "packyard 1": up.enter_context(packyard(root, "serve-1", data, workers=1)),
                    "packyard 2": up.enter_context(packyard(root, "serve-2", data, workers=2)),
                    "nginx 1": up.enter_context(nginx(root, 1, page)),
                    "nginx 2": up.enter_context(nginx(root, 2, page)),
                }
                for name in ("packyard 1", "packyard 2"):
                    warm(servers[name].url, 200)
                plan = [("packyard 1", None), ("nginx 1", None), ("packyard 2", None), ("nginx 2", None)]
                if pinnable:
                    plan[2:2] = [("packyard 1", one_core), ("nginx 1", one_core)]
                every: dict[str, list[Run]] = {}
                for round_ in range(args.rounds):
                    for name, cpus in plan:
                        label = name if cpus is None else f"{name}, one core with wrk"
                        out.print(f"[dim]round {round_ + 1}/{args.rounds}: {label}: wrk …[/]")
                        every.setdefault(label, []).append(measure(load, servers[name], cpus))
            runs = {label: median_run(found) for label, found in every.items()}
            busy = max(busy, os.getloadavg()[0])
            for name, run in runs.items():
                rows.append((f"page req/s, {name}", fmt(run.figure.rps), run.note()))
            one, two = runs["packyard 1"], runs["packyard 2"]
            cores = len(os.sched_getaffinity(0))
            if "packyard 1, one core with wrk" in runs:
                # the goal's measure: one core for one process (and its share of wrk) against two
                # cores for two; with wrk on the spare core in the one-process run, the ratio is
                # capped by wrk's share of the cores (next rows), for nginx as for packyard
                pinned = runs["packyard 1, one core with wrk"]
                scale = two.figure.rps / pinned.figure.rps
                nginx_pinned = runs["nginx 1, one core with wrk"]
                rows.append(
                    (
                        "2 processes on 2 cores / 1 on 1 core, wrk alongside",
                        f"{scale:.2f}×",
                        "goal ≥ 1.7×; the cores double for the server and wrk alike (2.00 = linear); nginx "
                        f"{runs['nginx 2'].figure.rps / nginx_pinned.figure.rps:.2f}×",
                    )
                )
                goals["2 processes ≥ 1.7× one (1 core → 2 cores)"] = scale >= 1.7
            plain = two.figure.rps / one.figure.rps
            rows.append(
                (
                    "2 processes / 1, wrk on the spare core in the 1-process run",
                    f"{plain:.2f}×",
                    f"nginx {runs['nginx 2'].figure.rps / runs['nginx 1'].figure.rps:.2f}×; capped by the next row",
                )
            )
            if "packyard 1, one core with wrk" not in runs:
                goals["2 processes ≥ 1.7× one"] = plain >= 1.7  # one core only: nothing to pin to
            rows.append(
                (
                    "2 processes / 1, this machine's ceiling",
                    f"{ceiling(one, two, cores):.2f}×",
                    f"{cores} cores shared by the processes ({one.figure.cpu_us:.0f} µs/req each) "
                    f"and wrk ({two.wrk_us:.0f} µs/req)",
                )
            )
            per_core = (two.figure.rps / two.cores) / (one.figure.rps / one.cores)
            rows.append(
                (
                    "req/s per server core, 2 processes / 1",
                    f"{per_core:.2f}×",
                    "1.00 = the second process serves as much per core as the first",
                )
            )
            for workers in (1, 2):
                ratio = runs[f"packyard {workers}"].figure.rps / runs[f"nginx {workers}"].figure.rps
                rows.append((f"packyard / nginx, {workers} process(es)", f"{ratio:.2f}×", "goal ≥ 0.4×"))
                goals[f"packyard ≥ 0.4× nginx at {workers}"] = ratio >= 0.4
            if busy > cores:
                out.print(
                    f"[yellow]load average {busy:.1f} on {cores} cores during the page runs: other jobs "
                    "took CPU, and each server's processes share one scheduling group (its session's "
                    "autogroup), so 2 processes got no more CPU than 1 would: see the cores per run[/]"
                )

            # 2. propagation, SQLite: two servers on one catalog file
            with packyard(root, "prop-a", data) as a, packyard(root, "prop-b", data) as b:
                warm(b.url)
                delays = propagation(a.url, b.url, args.writes)
            p50, p99 = pct(delays, 0.5) * 1000, pct(delays, 0.99) * 1000
            rows.append(
                (f"propagation, SQLite, {len(delays)} writes", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms (goal ≤ 100)")
            )
            goals["propagation p99 ≤ 100 ms on SQLite"] = p99 <= 100

            # 4. uploads over 1 vs 2 servers (SQLite)
            for count in (1, 2):
                fresh = root / f"upload-data-{count}"
                batch = [make_wheel(root / f"up-{count}", f"up{j}", "1.0") for j in range(args.uploads)]
                with packyard(root, f"up-{count}a", fresh) as a, packyard(root, f"up-{count}b", fresh) as b:
                    seed(a.url, [])
                    rate = uploads_per_second([a.url, b.url][:count], batch)
                rows.append((f"uploads/s, 8 publishers over {count} server(s)", fmt(rate, 1), "SQLite, local blobs"))

            # 2 and 3 on PostgreSQL
            cluster_cm = throwaway_postgres_skipped() if args.no_postgres else throwaway_postgres()
            with cluster_cm as cluster:
                if cluster is None:
                    rows.append(("PostgreSQL parts", "—", "skipped (no tests/support/postgres.py or --no-postgres)"))
                else:
                    db = cluster.create_database("bench")  # type: ignore[attr-defined]
                    pg_data = root / "pg-data"
                    with packyard(root, "pg-seed", pg_data, database_url=db) as served:
                        seed(served.url, wheels)
                    with (
                        packyard(root, "pg-a", pg_data, database_url=db) as a,
                        packyard(root, "pg-b", root / "pg-data-b", database_url=db) as b,
                    ):
                        warm(b.url)
                        delays = propagation(a.url, b.url, args.writes)
                        with packyard(root, "sqlite-hot", data) as lite:
                            warm(a.url, 200)
                            warm(lite.url, 200)
                            hot: dict[str, list[Run]] = {"pg": [], "sqlite": []}
                            for round_ in range(args.rounds):  # alternating, as the page runs
                                out.print(f"[dim]round {round_ + 1}/{args.rounds}: packyard on PostgreSQL: wrk …[/]")
                                hot["pg"].append(measure(load, a))
                                out.print(f"[dim]round {round_ + 1}/{args.rounds}: packyard on SQLite: wrk …[/]")
                                hot["sqlite"].append(measure(load, lite))
                    hot_pg, hot_sqlite = median_run(hot["pg"]).figure, median_run(hot["sqlite"]).figure
                    p50, p99 = pct(delays, 0.5) * 1000, pct(delays, 0.99) * 1000
                    rows.append(
                        (
                            f"propagation, PostgreSQL, {len(delays)} writes",
                            f"p50 {p50:.1f} ms",
                            f"p99 {p99:.1f} ms (goal ≤ 1000)",
                        )
                    )
                    goals["propagation p99 ≤ 1 s on PostgreSQL"] = p99 <= 1000
                    ratio = hot_pg.rps / hot_sqlite.rps
                    rows.append(
                        (
                            "hot path req/s, PostgreSQL vs SQLite",
                            f"{fmt(hot_pg.rps)} vs {fmt(hot_sqlite.rps)}",
                            f"{ratio:.2f}× (goal ≥ 0.9×: at most 10 % slower)",
                        )
                    )
                    goals["hot path on PostgreSQL within 10 % of SQLite"] = ratio >= 0.9
        except (CheckFailed, RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    from rich.table import Table

    table = Table(title="packyard scale-out")
    for column in ("measure", "figure", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    for goal, ok in goals.items():
        out.print(f"{verdict(ok)} {goal}")
    return exit_status(out, errors, goals)


@contextmanager
def throwaway_postgres_skipped() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
