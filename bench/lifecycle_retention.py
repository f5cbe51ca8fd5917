"""Retention at scale: one pass over 100,000 distributions, and the index hot path while it runs.

Run from the repository root: ``python -m bench.lifecycle_retention`` (``--quick`` for 10,000
distributions and 3 s wrk runs); ``bench/lifecycle.py`` runs it with the garbage-collection
half as one command.

The data set is written through the store before the server starts (uploading 100,000 files
over HTTP would measure the upload path): one namespace, ``--projects`` projects with
``--dists`` distributions between them, each project a final release and ``.devN``
pre-releases, all rows pointing at one real wheel's blob (retention reads rows, never bytes).
Beside them, a 6-file project (``hot``) that no policy touches: its page is what wrk asks for.

Then, on a real ``packyard serve`` (local blobs, SQLite catalog; ``--catalog postgresql``
with a throwaway cluster from the ``tests`` fixtures):

1. wrk on the ``hot`` page with the server idle: req/s;
2. the namespace gets ``keep_releases 5`` (the newest 5 pre-releases of every project stay),
   the dry run is timed, then an applying pass over the API, while wrk runs on the same page
   for as long as the pass lasts (the pass bumps the namespace's index generation with every
   batch, so the page is rendered again after each one: the worst case for the hot path);
3. checks the pass removed what the dry run listed, and the hot page still lists its files.

Goal (issue 17): req/s during the pass within 20% of idle. A missed goal or a failed step exits 1.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import (
    CheckFailed,
    begin,
    check,
    exit_status,
    failure,
    fmt,
    new_parser,
    parse,
    scratch,
    verdict,
)
from bench.index import Load, ensure_wrk
from tests.support.dists import make_wheel
from tests.support.procs import Server

NAMESPACE = "bench.retention"
HOT = "hot"
KEEP = 5
JSON = "application/vnd.pypi.simple.v1+json"


@dataclass
class Result:
    catalog: str
    dists: int
    seed_s: float = 0.0
    dry_s: float = 0.0
    planned: int = 0
    pass_s: float = 0.0
    removed: int = 0
    frees: int = 0
    idle_rps: float | None = None
    busy_rps: float | None = None
    busy_seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        if not self.idle_rps or self.busy_rps is None:
            return None
        return self.busy_rps / self.idle_rps

    @property
    def ok(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= 0.8


def seed(data: Path, tmp: Path, dists: int, projects: int, database_url: str | None) -> float:
    """``dists`` rows in ``projects`` projects (one final and .devN pre-releases each), plus
    the ``hot`` project's 6 real files; written through the store, before the server starts."""
    from packyard.store.blobs import LocalBlobStore
    from packyard.store.core import Store

    start = time.perf_counter()
    store = Store(data, LocalBlobStore(data / "blobs"), database_url=database_url)
    try:
        for version in ("1.0", "1.1", "1.2", "2.0", "2.1", "3.0"):
            path = make_wheel(tmp / "hot", HOT, version)
            with path.open("rb") as stream:
                store.dists.add(NAMESPACE, stream, path.name, uploader="bench")
        template = store.dists.get(NAMESPACE, f"{HOT}-1.0-py3-none-any.whl").to_dict()
        per = max(dists // projects, 2)
        stamp = "2026-01-01T00:00:00.000000Z"
        made = 0
        with store.catalog.write() as db:
            for p in range(projects):
                name = f"proj{p:05d}"
                versions = ["1.0"] + [f"1.1.dev{j}" for j in range(per - 1)]
                for version in versions:
                    if made >= dists:
                        break
                    filename = f"{name}-{version}-py3-none-any.whl"
                    row = {**template, "filename": filename, "project": name, "name": name, "version": version}
                    row.update({"upload_time": stamp, "yanked": 0, "core_metadata": 1})
                    db.insert("dists", row)
                    made += 1
            store.generations.bump(NAMESPACE)
    finally:
        store.close()
    return time.perf_counter() - start


def hot_url(server: Server) -> str:
    return f"{server.url}/{NAMESPACE}/simple/{HOT}/"


def warm(url: str) -> None:
    with httpx.Client(timeout=60) as client:
        for _ in range(20):
            response = client.get(url, headers={"Accept": JSON})
            check(response.status_code == 200, f"GET {url}: {response.status_code}")
        check(len(response.json()["files"]) == 6, f"{url} does not list the hot project's 6 files")


def measure_pass(server: Server, load: Load, result: Result) -> None:
    """The dry run, then the applying pass with wrk on the hot page for as long as it runs."""
    assert server.proc is not None
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=3600) as http:
        set_ = http.patch(f"/api/v1/namespaces/{NAMESPACE}/settings", json={"keep_releases": KEEP})
        check(set_.status_code == 200, f"setting the policy: {set_.status_code} {set_.text[:200]}")
        start = time.perf_counter()
        dry = http.get(f"/api/v1/namespaces/{NAMESPACE}/retention")
        result.dry_s = time.perf_counter() - start
        check(dry.status_code == 200, f"dry run: {dry.status_code} {dry.text[:200]}")
        result.planned = dry.json()["count"]
        outcome: dict = {}

        def apply() -> None:
            began = time.perf_counter()
            try:
                outcome["response"] = http.post(f"/api/v1/namespaces/{NAMESPACE}/retention", json={"apply": True})
            finally:
                outcome["seconds"] = time.perf_counter() - began

        runner = threading.Thread(target=apply)
        runner.start()
        rounds = []
        began = time.perf_counter()
        while runner.is_alive():  # wrk in short rounds until the pass ends
            rounds.append(load.measure(hot_url(server), server.proc.pid, JSON))
        runner.join()
        result.busy_seconds = time.perf_counter() - began
        response = outcome["response"]
        check(response.status_code == 200, f"the pass: {response.status_code} {response.text[:200]}")
        body = response.json()
        result.pass_s, result.removed, result.frees = outcome["seconds"], body["count"], body["frees"]["bytes"]
        check(
            result.removed == result.planned, f"the pass removed {result.removed}, the dry run listed {result.planned}"
        )
        result.busy_rps = sum(r.rps for r in rounds) / len(rounds)
    warm(hot_url(server))


@contextlib.contextmanager
def catalog(kind: str) -> Iterator[str | None]:
    """None (SQLite in the data folder) or a throwaway PostgreSQL database's URL."""
    if kind == "sqlite":
        yield None
        return
    from tests.support.postgres import Postgres

    cluster = Postgres().start()
    try:
        yield cluster.create_database("bench")
    finally:
        cluster.remove()


def run_retention(
    out: Console, *, dists: int, projects: int, seconds: int, kind: str = "sqlite"
) -> tuple[Result, str | None]:
    """One measured run (the part ``bench/lifecycle.py`` calls): the result and the error, if any."""
    wrk = ensure_wrk(out)
    load = Load(wrk, seconds, 2, 8)
    result = Result(catalog=kind, dists=dists)
    server: Server | None = None
    with scratch("retention") as tmp, catalog(kind) as url:
        data = tmp / "data"
        try:
            out.print(f"[dim]seeding {dists:,} distributions ({kind}) …[/]")
            result.seed_s = seed(data, tmp, dists, projects, url)
            env = {"PACKYARD_GC_INTERVAL_SECONDS": "0", "PACKYARD_RETENTION_INTERVAL_SECONDS": "0"}
            if url:
                env["PACKYARD_DATABASE_URL"] = url
            server = Server(data, env).start()
            assert server.proc is not None
            warm(hot_url(server))
            out.print("[dim]wrk on the idle hot page …[/]")
            result.idle_rps = load.measure(hot_url(server), server.proc.pid, JSON).rps
            out.print("[dim]dry run, then the pass with wrk beside it …[/]")
            measure_pass(server, load, result)
            return result, None
        except (CheckFailed, httpx.HTTPError, OSError, RuntimeError) as exc:
            return result, failure("retention", exc, server)
        finally:
            if server is not None:
                server.stop()


def report(out: Console, results: list[Result]) -> None:
    table = Table(title="retention: one pass (keep_releases 5 over .devN releases)")
    for column in ("catalog", "distributions", "dry run", "listed", "pass", "removed", "frees", "idle req/s",
                   "req/s during the pass", "ratio (goal ≥ 0.80)", ""):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.catalog,
            fmt(r.dists),
            f"{r.dry_s:.1f} s",
            fmt(r.planned),
            f"{r.pass_s:.1f} s",
            fmt(r.removed),
            f"{r.frees / 1e6:.1f} MB",
            fmt(r.idle_rps),
            fmt(r.busy_rps),
            fmt(r.ratio, 2),
            verdict(r.ok),
        )
    out.print(table)


def add_options(parser) -> None:  # noqa: ANN001 - argparse.ArgumentParser
    parser.add_argument("--dists", type=int, default=100_000, help="distributions in the catalog (default 100,000)")
    parser.add_argument("--projects", type=int, default=1_000, help="projects they belong to (default 1,000)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round (default 5)")
    parser.add_argument("--catalog", choices=("sqlite", "postgresql", "both"), default="sqlite")


QUICK = {"dists": 10_000, "projects": 200, "duration": 3}


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.lifecycle_retention", __doc__)
    add_options(parser)
    parser.add_argument("--quick", action="store_true", help="10,000 distributions, 3 s wrk rounds")
    args = parse(parser, argv, 1, "--dists", "--projects", "--duration", quick=QUICK)
    out = begin(140, "2 cores shared by wrk, the server and (on this machine) other jobs")
    kinds = ["sqlite", "postgresql"] if args.catalog == "both" else [args.catalog]
    results, errors = [], []
    for kind in kinds:
        result, error = run_retention(out, dists=args.dists, projects=args.projects, seconds=args.duration, kind=kind)
        results.append(result)
        errors.append(error)
    report(out, results)
    goals = {f"req/s during a retention pass within 20% of idle ({r.catalog})": r.ok for r in results}
    return exit_status(out, errors, goals)


if __name__ == "__main__":
    raise SystemExit(main())
