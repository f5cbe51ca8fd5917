"""Web UI page times at scale, and the index hot path's req/s with and without the UI.

1. Seeds one namespace straight through the store (no HTTP): 100,000 distribution rows over
   5,000 projects (all pointing at one real wheel blob), 10,000 files (half of them in one
   folder), 2,000 builds, sync runs and shared resolutions.
2. Starts ``packyard serve`` on that data, signs in through ``/ui/login`` and times every
   page (sequential requests after a warm-up): p50 and p95 against the 100 ms goal.
3. Runs wrk on one project's index page against a server with the UI and one with
   ``PACKYARD_UI=false``, alternating, on the same data: the UI must not slow the hot path.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from packyard.store.blobs import LocalBlobStore
from packyard.store.catalog import locked_hashes, now
from packyard.store.core import Store
from packyard.store.files import Change
from rich.table import Table

from bench.common import CheckFailed, begin, check, cpu_seconds, exit_status, failure, fmt, new_parser, scratch, verdict
from bench.index import Load, ensure_wrk, warm
from tests.support.dists import make_wheel
from tests.support.procs import Server

NS = "bench.team"
GOAL_MS = 100.0


def seed(data: Path, dists: int, files: int, projects: int) -> dict:
    """Fill the catalog through the store's own catalog and blob APIs; what the pages need to know."""
    store = Store(data, LocalBlobStore(data / "blobs"), admin_secret="x")
    store.namespaces.create(NS, "bench")
    wheel = make_wheel(data.parent / "wheel", "benchpkg", "1.0")
    blob = store.blobs.put(io.BytesIO(wheel.read_bytes()))
    meta = store.blobs.put(io.BytesIO(b"Metadata-Version: 2.1\nName: benchpkg\nVersion: 1.0\nRequires-Dist: idna\n\n"))
    per = dists // projects
    rows = []
    for p in range(projects):
        project = f"proj-{p:05d}"
        for v in range(per):
            version = f"{v // 10}.{v % 10}.0"
            rows.append(
                {
                    "namespace": NS,
                    "filename": f"{project.replace('-', '_')}-{version}-py3-none-any.whl",
                    "project": project,
                    "name": project,
                    "version": version,
                    "filetype": "bdist_wheel",
                    "sha256": blob.sha256,
                    "size": blob.size,
                    "metadata_sha256": meta.sha256,
                    "requires_python": ">=3.9",
                    "summary": f"project {p}",
                    "upload_time": now(),
                    "uploader": f"build:{(p % 2000) + 1}",
                    "yanked": 0,
                    "core_metadata": 1,  # a wheel's metadata is always advertised (PEP 658)
                }
            )
    with store.catalog.write() as db:
        db.insert_all("dists", rows)
    body = store.blobs.put(io.BytesIO(b"def run():\n    return 1\n"))
    body2 = store.blobs.put(io.BytesIO(b"def run():\n    return 2\n"))
    changes = [Change(f"flows/flow_{i:05d}.py", body.sha256, body.size) for i in range(files // 2)]
    changes += [Change(f"lib/m{i % 100:02d}/mod_{i:05d}.py", body.sha256, body.size) for i in range(files // 2)]
    store.files.apply(NS, changes, author="bench", origin="sync:abcdef012345")
    store.files.apply(NS, [Change("flows/flow_00000.py", body2.sha256, body2.size)], author="bench", origin="put")
    snapshot = json.dumps([{"path": "pyproject.toml", "revision": 1, "sha256": body.sha256, "size": body.size}])
    builds = [
        {
            "namespace": NS,
            "path": "lib/m00",
            "publish_to": NS,
            "key": f"{i:064x}",
            "state": "succeeded",
            "snapshot": snapshot,
            "settings": "{}",
            "created": now(),
            "started": now(),
            "finished": now(),
            "artifacts": "[]",
            "cancel_requested": 0,
        }
        for i in range(2000)
    ]
    runs = [
        {"sync": "bench", "namespace": NS, "url": "https://example.com/repo.git", "ref": "main",
         "commit_sha": "abcdef012345" + "0" * 28, "dry_run": 0, "added": files, "updated": 0, "deleted": 0,
         "unchanged": 0, "skipped": 0, "started": now(), "finished": now(), "duration": 1.0, "actor": "bench"}
        for _ in range(200)
    ]  # fmt: skip
    lock = "\n".join(f"proj-{p:05d}==0.0.0 \\\n    --hash=sha256:{i:064x}" for i, p in enumerate(range(200)))
    lock += f"\nproj-00000==0.0.0 \\\n    --hash=sha256:{blob.sha256}\n"  # every lock pins the benchmark's wheel
    resolutions = [
        {"namespace": NS, "key": f"{i:064x}", "state": "s", "lock": lock, "env_key": f"{i:064x}",
         "python": "3.11", "platform": "linux", "requirements": "[]", "created": time.time(), "created_by": "bench"}
        for i in range(1000)
    ]  # fmt: skip
    with store.catalog.write() as db:
        db.insert_all("builds", builds)
        db.insert_all("sync_runs", runs)
        db.insert_all("resolutions", resolutions)
        db.insert_all(
            "resolution_files",
            ({"namespace": NS, "key": r["key"], "sha256": sha} for r in resolutions for sha in locked_hashes(lock)),
        )
        db.insert(
            "syncs",
            {"name": "bench", "namespace": NS, "spec": json.dumps({"spec": {"url": "https://example.com/repo.git"}}),
             "created": now(), "created_by": "bench"}
        )  # fmt: skip
    store.catalog.close()
    last = projects - 1
    return {"project": "proj-00000", "last_offset": (projects // 100 - 1) * 100, "last": f"proj-{last:05d}"}


def pages(facts: dict, files: int, projects: int) -> dict[str, str]:
    flows = files // 2
    return {
        "home": "/ui/",
        "search": "/ui/?q=flow_0999",
        "files /": f"/ui/ns/{NS}/files",
        f"files flows/ ({flows:,})": f"/ui/ns/{NS}/files?prefix=flows/",
        "files flows/ last page": f"/ui/ns/{NS}/files?prefix=flows/&after=flow_{flows - 101:05d}.py",
        "file page": f"/ui/ns/{NS}/file/flows/flow_00000.py",
        "diff": f"/ui/ns/{NS}/diff/flows/flow_00000.py?a=1&b=2",
        f"packages ({projects:,} projects)": f"/ui/ns/{NS}/packages",
        "packages last page": f"/ui/ns/{NS}/packages?offset={facts['last_offset']}",
        "project page": f"/ui/ns/{NS}/project/{facts['project']}",
        "dist page (used by)": f"/ui/ns/{NS}/dist/proj_00000-0.0.0-py3-none-any.whl",
        "builds": f"/ui/ns/{NS}/builds",
        "builds last page": f"/ui/ns/{NS}/builds?offset=1900",
        "build page": "/ui/builds/1",
        "commit page": f"/ui/ns/{NS}/commit/abcdef012345",
        "syncs": f"/ui/ns/{NS}/syncs",
        "sync page": "/ui/syncs/bench",
        "settings": f"/ui/ns/{NS}/settings",
        "tokens": "/ui/tokens",
    }


def sign_in(client: httpx.Client, secret: str) -> None:
    client.get("/ui/login")
    form = {"token": secret, "login_csrf": client.cookies.get("packyard_login") or "", "next": "/ui/"}
    response = client.post("/ui/login", data=form)
    check(response.status_code == 303 and "packyard_session" in client.cookies, f"sign-in failed: {response.text}")


def time_pages(server: Server, urls: dict[str, str], repeat: int) -> dict[str, tuple[float, float, float]]:
    """p50 and p95 wall time of each page, and the server's CPU time per request (which the
    other load on a shared machine moves much less than wall time)."""
    out = {}
    assert server.proc is not None
    with httpx.Client(base_url=server.url, timeout=60) as client:
        sign_in(client, server.admin_token)
        for name, path in urls.items():
            times = []
            for _ in range(3):
                response = client.get(path)
                check(response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}")
            cpu = cpu_seconds(server.proc.pid)
            for _ in range(repeat):
                start = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                check(response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}")
            cpu_ms = (cpu_seconds(server.proc.pid) - cpu) / repeat * 1000
            times.sort()
            out[name] = (statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], cpu_ms)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.ui", __doc__)
    parser.add_argument("--dists", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed requests per page (after 3 warm-ups)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="wrk runs per server (alternating)")
    args = parser.parse_args(argv)
    out = begin(140, f"{args.dists:,} dists, {args.files:,} files, {args.projects:,} projects in {NS}")
    errors: list[str | None] = []
    goals: dict[str, bool | None] = {}
    with scratch("ui") as tmp:
        data = tmp / "data"
        data.mkdir()
        started = time.perf_counter()
        facts = seed(data, args.dists, args.files, args.projects)
        out.print(f"seeded in {time.perf_counter() - started:.1f} s")
        urls = pages(facts, args.files, args.projects)
        server: Server | None = None
        try:
            server = Server(data, {"PACKYARD_EMBEDDED_WORKER": "false"}, admin_token="bench-admin").start()
            timings = time_pages(server, urls, args.repeat)
            server.stop()
            table = Table(title="web UI pages (signed in as admin, sequential, ms)")
            for column in ("page", "p50 ms", "p95 ms", "server CPU ms/req", f"p95 ≤ {GOAL_MS:.0f} ms"):
                table.add_column(column, justify="left" if column == "page" else "right")
            for name, (p50, p95, cpu_ms) in timings.items():
                table.add_row(name, fmt(p50, 1), fmt(p95, 1), fmt(cpu_ms, 1), verdict(p95 <= GOAL_MS))
            out.print(table)
            goals[f"every page p95 ≤ {GOAL_MS:.0f} ms"] = all(p95 <= GOAL_MS for _, p95, _ in timings.values())

            load = Load(ensure_wrk(out), args.duration, 2, 8)
            figures: dict[str, list] = {"UI on": [], "UI off (PACKYARD_UI=false)": []}
            order = [("UI on", "true"), ("UI off (PACKYARD_UI=false)", "false")]
            for round_ in range(args.rounds):
                for label, ui in order if round_ % 2 == 0 else order[::-1]:  # alternate who goes first
                    env = {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_UI": ui}
                    server = Server(data, env, admin_token="bench-admin").start()
                    page = f"{server.url}/{NS}/simple/{facts['project']}/"
                    warm(page, [facts["project"].replace("-", "_")])
                    figures[label].append(load.measure(page, server.proc.pid))
                    server.stop()
            table = Table(
                title=f"index hot path: wrk -c8 on /{NS}/simple/{facts['project']}/ ({args.rounds} runs each)"
            )
            for column in ("server", "req/s (each run)", "req/s median", "p50 ms", "server CPU µs/req"):
                table.add_column(column, justify="left" if column == "server" else "right")
            medians = {}
            for label, runs in figures.items():
                medians[label] = statistics.median(f.rps for f in runs)
                table.add_row(
                    label,
                    " / ".join(fmt(f.rps) for f in runs),
                    fmt(medians[label]),
                    fmt(statistics.median(f.p50_ms for f in runs), 2),
                    fmt(statistics.median(f.cpu_us for f in runs)),
                )
            out.print(table)
            on, off = medians.values()
            out.print(f"UI on / UI off: {on / off:.2f} (1.00 = unchanged; ±10 % is run-to-run noise here)")
            goals["hot path req/s unchanged by the UI (within 10 %)"] = on >= 0.9 * off
        except (CheckFailed, OSError, httpx.HTTPError, RuntimeError) as exc:
            errors.append(failure("bench.ui", exc, server))
        finally:
            if server is not None:
                server.stop()
    return exit_status(out, errors, goals)


if __name__ == "__main__":
    sys.exit(main())
