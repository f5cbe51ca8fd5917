"""Build latency: a cold build through packyard against the bare ``python -m build``, and a cached rebuild.

Run from the repository root: ``python -m bench.build`` (``--help`` for the options).

It writes a small setuptools project, starts a real ``packyard serve`` (local backend, its
embedded build worker on), puts the project's files into a namespace, and measures, in the
same run and side by side:

1. a cold build through packyard: from ``POST /api/v1/builds`` until ``GET
   /api/v1/builds/{id}`` says ``succeeded`` (polled every 25 ms). Each round bumps the
   project's version, so the source key differs and nothing is cached; median of N rounds;
2. the bare reference on the same files in a temporary folder: ``python -m build --sdist
   --wheel --installer uv --outdir OUT SRC``, with its own uv cache and the same index as
   packyard's worker; median of N rounds, interleaved with (1);
3. a rebuild of unchanged source: ``POST /api/v1/builds`` for the source that just
   succeeded, ~50 times on one keep-alive client; each answer must say ``"cached": true``
   with the earlier build's id, and ``GET /api/v1/builds`` must list no new build.

Both sides get one unmeasured warm-up build first, so their uv caches hold the build
backend (packyard's worker caches under ``{data}/build-cache/uv``). Goals (issue 5): cold
packyard / bare <= 1.15, the cached round trip <= 50 ms, zero builds during the cached
phase. A missed goal or a failed check exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from packyard.builder.sandbox import NETWORK_VARIABLES
from rich.table import Table

from bench.common import (
    CheckFailed,
    admin_client,
    begin,
    check,
    exit_status,
    failure,
    median,
    new_parser,
    parse,
    scratch,
    timed,
    verdict,
)
from tests.support.procs import Server

NAMESPACE = "bench.build"
PROJECT = "packyard-bench-build"
PACKAGE = "benchpkg"
RATIO_GOAL = 1.15
CACHED_GOAL_MS = 50.0
POLL_S = 0.025
BUILD_WAIT_S = 600.0
DEFAULT_INDEX = "https://pypi.org/simple"
CA_VARIABLES = [name for name in NETWORK_VARIABLES if "PROXY" not in name.upper()]


@dataclass
class Round:
    """One measured cold build through packyard (client and server clocks, seconds)."""

    version: str
    build_id: int
    total: float
    """POST sent → ``succeeded`` seen by the client."""
    queued: float
    """``created`` → ``started``: how long the job waited for the worker to claim it."""
    running: float
    """``started`` → ``finished``: materialise, ``python -m build`` in the sandbox, hand-in, publish."""
    seen: float
    """``finished`` → the client's poll saw it."""


@dataclass
class Result:
    """Everything measured; ``None`` means not reached (an earlier step failed)."""

    rounds: list[Round] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    cached_ms: list[float] = field(default_factory=list)
    builds_during_cached: int | None = None
    sandbox: str = "?"
    installer: str = "?"
    index_url: str = DEFAULT_INDEX
    backend: str | None = None
    step: str = "start"
    error: str | None = None

    @property
    def packyard_median(self) -> float | None:
        return median([r.total for r in self.rounds])

    @property
    def bare_median(self) -> float | None:
        return median(self.bare)

    @property
    def ratio(self) -> float | None:
        p, b = self.packyard_median, self.bare_median
        return None if p is None or not b else p / b

    @property
    def cached_median(self) -> float | None:
        return median(self.cached_ms)

    def verdicts(self) -> dict[str, bool | None]:
        """Each goal: True met, False missed, None not measured."""
        ratio, cached = self.ratio, self.cached_median
        return {
            "ratio": None if ratio is None else ratio <= RATIO_GOAL,
            "cached": None if cached is None else cached <= CACHED_GOAL_MS,
            "builds": None if self.builds_during_cached is None else self.builds_during_cached == 0,
        }


def project_files(version: str) -> dict[str, bytes]:
    """A small setuptools project; the version is in two files, so a bump changes the source key."""
    pyproject = f"""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{PROJECT}"
version = "{version}"
description = "A small project that bench/build.py builds over and over"
requires-python = ">=3.9"

[tool.setuptools]
packages = ["{PACKAGE}"]
"""
    modules = {
        "__init__.py": f'"""The benchmark package."""\n\n__version__ = "{version}"\n',
        "core.py": "def add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def scale(xs: list[int], k: int) -> list[int]:\n    return [x * k for x in xs]\n",
        "utils.py": "import datetime\n\n\ndef standardize_date_format(s: str) -> str:\n"
        '    return datetime.date.fromisoformat(s).strftime("%Y-%m-%d")\n',
        "text.py": "def slug(s: str) -> str:\n    return '-'.join(s.lower().split())\n",
        "cli.py": "import sys\n\nfrom benchpkg.core import add\n\n\ndef main() -> None:\n"
        "    print(add(*map(int, sys.argv[1:3])))\n",
    }
    files = {"pyproject.toml": pyproject.encode(), "README.md": b"# packyard-bench-build\n"}
    files.update({f"{PACKAGE}/{name}": body.encode() for name, body in modules.items()})
    return files


def stamp(value: str) -> float:
    """A catalog timestamp (ISO 8601, UTC, ``Z``) as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Bare:
    """The reference: ``python -m build --installer uv`` on the same files, its own warm uv cache."""

    def __init__(self, root: Path, index_url: str) -> None:
        self.root = root
        self.cache = root / "uv-cache"
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYARD_", "UV_"))}
        # The same index as packyard's worker and a private cache; everything else as the
        # caller's shell has it (CA variables included), as a developer would run it.
        env.update(
            {
                "UV_CACHE_DIR": str(self.cache),
                "UV_DEFAULT_INDEX": index_url,
                "UV_INDEX_URL": index_url,
                "TMPDIR": str(root / "tmp"),
            }
        )
        self.env = env

    def build(self, files: dict[str, bytes], label: str) -> float:
        """Write the files and build them; returns the wall time of ``python -m build`` alone."""
        work = self.root / label
        src, out = work / "src", work / "out"
        for path, body in files.items():
            (src / path).parent.mkdir(parents=True, exist_ok=True)
            (src / path).write_bytes(body)
        command = [sys.executable, "-m", "build", "--sdist", "--wheel", "--installer", "uv", "--outdir", str(out)]
        # Its own process group, killed whole on any exit: uv spawns children.
        elapsed, _ = timed([*command, str(src)], self.env, work / "build.log", BUILD_WAIT_S, cwd=work)
        built = sorted(p.name for p in out.iterdir())
        check(len(built) == 2, f"bare build {label} made {built}")
        shutil.rmtree(src)
        return elapsed


class Bench:
    """The measurements against one running server."""

    def __init__(self, server: Server, args: argparse.Namespace, bare_root: Path, result: Result) -> None:
        self.server, self.args, self.bare_root, self.result = server, args, bare_root, result
        self.client = admin_client(server, timeout=httpx.Timeout(60))

    def put_files(self, files: dict[str, bytes], only: set[str] | None = None) -> None:
        for path, body in files.items():
            if only is not None and path not in only:
                continue
            response = self.client.put(f"/api/v1/namespaces/{NAMESPACE}/files/{path}", content=body)
            check(response.status_code in (200, 201), f"PUT {path}: {response.status_code} {response.text[:200]}")

    def post_build(self) -> httpx.Response:
        return self.client.post("/api/v1/builds", json={"namespace": NAMESPACE, "path": ""})

    def builds(self) -> list[dict]:
        response = self.client.get("/api/v1/builds")
        check(response.status_code == 200, f"GET /api/v1/builds: {response.status_code}")
        return response.json()

    def cold(self, files: dict[str, bytes], version: str) -> Round:
        """Put the bumped files, then time POST → succeeded."""
        self.put_files(files, only={"pyproject.toml", f"{PACKAGE}/__init__.py"})
        start = time.perf_counter()
        response = self.post_build()
        check(response.status_code == 201, f"POST build {version}: {response.status_code} {response.text[:300]}")
        body = response.json()
        check(body.get("cached") is False, f"POST build {version}: answered from the cache")
        build_id = body["id"]
        deadline = start + BUILD_WAIT_S
        while True:
            build = self.client.get(f"/api/v1/builds/{build_id}").json()
            if build["state"] in ("succeeded", "failed", "cancelled"):
                seen, total = time.time(), time.perf_counter() - start
                break
            check(time.perf_counter() < deadline, f"build {build_id} still {build['state']} after {BUILD_WAIT_S:.0f}s")
            time.sleep(POLL_S)
        log = self.client.get(f"/api/v1/builds/{build_id}/log").text
        tail = "\n".join(log.splitlines()[-20:])
        check(build["state"] == "succeeded", f"build {build_id} ({version}) {build['state']}: {build['error']}\n{tail}")
        self.note_settings(build, log)
        created, started, finished = (stamp(build[k]) for k in ("created", "started", "finished"))
        return Round(version, build_id, total, started - created, finished - started, seen - finished)

    def note_settings(self, build: dict, log: str) -> None:
        """What the worker really ran with: sandbox and installer come from its log's header."""
        for line in log.splitlines():
            if line.startswith("[packyard] installer "):
                parts = dict(p.strip().split(" ", 1) for p in line[len("[packyard] ") :].split(",")[:2])
                self.result.installer = parts.get("installer", "?")
                self.result.sandbox = parts.get("sandbox", "?")
        self.result.backend = build.get("backend")

    def cached(self, expected_id: int) -> None:
        """POST the unchanged source ~50 times; every answer must be the earlier build."""
        listed = self.builds()
        last = max((b["id"] for b in listed), default=0)
        for i in range(self.args.requests + 1):
            start = time.perf_counter()
            response = self.post_build()
            elapsed = (time.perf_counter() - start) * 1000
            check(response.status_code == 200, f"cached POST: {response.status_code} {response.text[:300]}")
            body = response.json()
            check(body.get("cached") is True, "cached POST: the answer does not say cached")
            check(body["id"] == expected_id, f"cached POST: build {body['id']}, expected {expected_id}")
            check(body["state"] == "succeeded", f"cached POST: the earlier build is {body['state']}")
            if i:  # the first request is a warm-up for the connection
                self.result.cached_ms.append(elapsed)
        after = self.builds()
        new_rows = [b for b in after if b["id"] > last]
        self.result.builds_during_cached = max(len(new_rows), len(after) - len(listed))

    def run(self) -> None:
        r = self.result
        bare = Bare(self.bare_root, r.index_url)
        r.step = "put the project"
        self.put_files(project_files("0.0.0"))
        r.step = "packyard warm-up build"
        warm = self.cold(project_files("0.0.0"), "0.0.0")
        index_url = self.client.get(f"/api/v1/builds/{warm.build_id}").json()["settings"]["index_url"]
        if index_url != r.index_url:
            r.index_url = index_url
            bare = Bare(self.bare_root, index_url)
        r.step = "bare warm-up build"
        bare.build(project_files("0.0.0"), "warm")
        last = warm.build_id
        for i in range(1, self.args.repeat + 1):
            version = f"0.1.{i}"
            files = project_files(version)
            r.step = f"packyard cold build {i}"
            round_ = self.cold(files, version)
            r.rounds.append(round_)
            last = round_.build_id
            r.step = f"bare build {i}"
            r.bare.append(bare.build(files, f"round-{i}"))
        r.step = "cached rebuilds"
        self.cached(last)
        r.step = "done"


def run(args: argparse.Namespace, root: Path) -> Result:
    """A fresh server and fresh caches under ``root``; everything stops before returning."""
    result = Result()
    data = root / "data"
    server_tmp = root / "server-tmp"
    server_tmp.mkdir()
    # The worker's build folders go under our temporary root, so even a killed run leaves nothing.
    server = Server(data, {"TMPDIR": str(server_tmp)})
    with contextlib.ExitStack() as stack:
        stack.callback(server.stop)
        try:
            server.start()
            bench = Bench(server, args, root / "bare", result)
            stack.callback(bench.client.close)
            bench.run()
        except (CheckFailed, httpx.HTTPError, RuntimeError, OSError, ValueError, KeyError) as exc:
            result.error = failure(result.step, exc, server)
    return result


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def render(result: Result, args: argparse.Namespace) -> Table:
    v = result.verdicts()
    n = args.repeat
    table = Table(title=f"packyard builds — setuptools project, median of {n}, local backend")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("result", justify="center")
    spread = ""
    if result.rounds:
        totals = [r.total for r in result.rounds]
        spread = f" ({min(totals):.2f}–{max(totals):.2f})"
    table.add_row("cold build through packyard (POST → succeeded)", secs(result.packyard_median) + spread, "", "")
    spread = f" ({min(result.bare):.2f}–{max(result.bare):.2f})" if result.bare else ""
    table.add_row("bare python -m build --installer uv", secs(result.bare_median) + spread, "", "")
    ratio = result.ratio
    table.add_row(
        "ratio packyard / bare", "—" if ratio is None else f"{ratio:.2f}×", f"<= {RATIO_GOAL}×", verdict(v["ratio"])
    )
    cached = result.cached_median
    cached_text = "—" if cached is None else f"{cached:.1f} ms"
    if result.cached_ms:
        cached_text += f" (max {max(result.cached_ms):.1f})"
    table.add_row(
        f"cached rebuild round trip (median of {len(result.cached_ms)})", cached_text, f"<= {CACHED_GOAL_MS:.0f} ms",
        verdict(v["cached"]),
    )  # fmt: skip
    builds = "—" if result.builds_during_cached is None else str(result.builds_during_cached)
    table.add_row("builds run during the cached phase", builds, "0", verdict(v["builds"]))
    return table


def render_rounds(result: Result) -> Table:
    """Where packyard's time goes, from the build record's own timestamps, next to the bare build."""
    table = Table(title="cold rounds: packyard's time split by its build record (created / started / finished)")
    names = ("round", "build", "packyard total", "queued (claim wait)", "running", "seen after finish", "bare")
    for name in (*names, "running − bare"):
        table.add_column(name, justify="right")
    for i, r in enumerate(result.rounds):
        bare = result.bare[i] if i < len(result.bare) else None
        extra = None if bare is None else r.running - bare
        seen = f"{r.seen * 1000:.0f} ms"
        row = [r.version, str(r.build_id), secs(r.total), secs(r.queued), secs(r.running), seen, secs(bare)]
        table.add_row(*row, "—" if extra is None else f"{extra:+.2f} s")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.build", __doc__)
    parser.add_argument("--repeat", type=int, default=3, help="measured cold builds on each side (default 3)")
    parser.add_argument("--requests", type=int, default=50, help="cached rebuild requests timed (default 50)")
    parser.add_argument("--quick", action="store_true", help="one cold round each and 20 cached requests")
    return parse(parser, argv, 1, "--repeat", "--requests", quick={"repeat": 1, "requests": 20})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bwrap = shutil.which("bwrap")
    cas = [name for name in CA_VARIABLES if os.environ.get(name)]
    out = begin(
        160,
        f"bubblewrap {'at ' + bwrap if bwrap else 'not installed'}",
        f"CA variables set (passed to packyard's builds): {', '.join(cas) or 'none'}",
    )
    dwb = "set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "unset"
    out.print(
        f"bare build env: this shell's (PYTHONDONTWRITEBYTECODE {dwb}; packyard's worker always sets it) "
        "+ its own UV_CACHE_DIR + packyard's build index"
    )
    out.print(
        f"method: one warm-up build per side, then {args.repeat} interleaved rounds (packyard, then bare) "
        f"with a bumped version; packyard timed POST → succeeded polling every {POLL_S * 1000:.0f} ms; "
        f"bare timed around the python -m build process; cached = {args.requests} POSTs of unchanged source "
        "on one keep-alive client"
    )
    with scratch("build") as tmp:
        result = run(args, tmp)
    out.print(
        f"packyard's worker ran: installer {result.installer}, sandbox {result.sandbox}, "
        f"backend {result.backend or '?'}, index {result.index_url}"
    )
    out.print(render(result, args))
    if result.rounds:
        out.print(render_rounds(result))
    return exit_status(out, [result.error], result.verdicts())


if __name__ == "__main__":
    sys.exit(main())
