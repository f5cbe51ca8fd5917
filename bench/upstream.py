"""Installs through packyard's warm upstream mirror against installs straight from the upstream.

Run from the repository root: ``python -m bench.upstream`` (``--help`` for the options).

Issue 6 promises that putting packyard between pip/uv and an upstream index costs little
once the mirror is warm: installing a 20-package set through it takes at most 1.2x the time
of installing it directly. This script measures exactly that, in one run, side by side:

1. It makes 20 pure wheels in-process (``tests.support.dists.make_wheel``; 50–500 KB of
   module body each, two versions per project, a few dependencies between them) and writes
   them as a static PEP 503 index (``simple/<project>/index.html`` with ``#sha256=`` links),
   served by ``python -m http.server``.
2. It starts a real ``packyard serve`` (local backend, no build worker) with a namespace
   whose ``upstream`` is that static index, and warms the mirror with one pip and one uv
   install through packyard (pages cached, files fetched, checked and stored).
3. Then, N rounds (default 5), each installing the whole set into a fresh ``--target``:
   pip (``--no-cache-dir``) and uv (``--no-cache``), through packyard and directly, the order
   rotating per round so load drifts hit every side. Every install is checked (20 projects,
   newest versions), and the upstream's log must show no request during the packyard
   installs (the mirror really is warm).

Goal: median(packyard) / median(direct) <= 1.2 for each installer; a miss or a failed check
exits 1. A second direct reference is shown beside it, not gated: the same files behind the
same http.server code with a listen backlog of 128 instead of 5. The stock backlog overflows
under uv's ~20 parallel connections and every dropped SYN costs uv a 1 s retransmission, so
against the stock server uv's ratio flatters packyard; the backlog-128 ratio is the honest one.

Everything lives under one ``/tmp`` folder, removed at the end, and every server is stopped,
even on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import math
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name
from rich.table import Table

from bench.common import (
    CheckFailed,
    Process,
    admin_client,
    begin,
    cpu_seconds,
    exit_status,
    failure,
    load_average,
    median,
    new_parser,
    parse,
    scratch,
    spread,
    timed,
    verdict,
)
from tests.support.dists import make_wheel
from tests.support.procs import Server, free_port

NAMESPACE = "bench.upstream"
PROJECT_PREFIX = "yardbench"
COUNT = 20
OLD, NEW = "1.0.0", "1.1.0"
RATIO_GOAL = 1.2
UPSTREAM_TTL_S = 3600
"""The server's page TTL: longer than any run, so every measured install sees a warm mirror."""


# -- shared with bench/runs.py -------------------------------------------------------------------


def uv_bin() -> str:
    """The real uv binary of this interpreter's ``uv`` package (not a pyenv shim: +70 ms a call)."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return find_uv_bin()
    found = shutil.which("uv")
    if found is None:
        raise RuntimeError("uv is not installed: pip install uv")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's environment without packyard, pip, uv or twine settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYARD_", "PIP_", "UV_", "TWINE_"))}
    env.update(NO_COLOR="1", **extra)
    return env


def installed(site: Path) -> dict[str, str]:
    """Normalized name -> version of every ``*.dist-info`` in ``site``."""
    found = {}
    for path in site.glob("*.dist-info"):
        match = re.fullmatch(r"(.+)-([^-]+)\.dist-info", path.name)
        if match:
            found[str(canonicalize_name(match[1]))] = match[2]
    return found


# -- the package set -------------------------------------------------------------------------------


@dataclass
class PackageSet:
    """A set of projects as wheels: ``latest`` holds the newest wheel of each project."""

    names: list[str]
    wheels: list[Path]
    latest: list[Path]
    requires: dict[str, list[str]]

    def requirements(self, path: Path) -> Path:
        path.write_text("".join(f"{name}\n" for name in self.names))
        return path

    @property
    def latest_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.latest)


def module_body(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of valid Python that compresses like real code (~2:1), not like zeros."""
    lines: list[str] = []
    total, n = 0, 0
    while total < size:
        if n % 8 == 7:
            line = f"def f_{n:05d}(x, y={rng.randrange(1000)}):\n    return (x * {rng.randrange(97)} + y) % 7919\n"
        else:
            line = f'C_{n:05d} = "{rng.randbytes(36).hex()}"\n'
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines)


def make_package_set(out: Path, count: int = COUNT, seed: int = 6) -> PackageSet:
    """``count`` projects ``yardbench-NN``, versions 1.0.0 and 1.1.0, 50–500 KB of code each.

    Sizes are log-uniform; some projects (11 of 20 with the default seed) depend on one or two later ones,
    so the installers resolve a small graph, not a flat list. The same seed gives the same set.
    """
    rng = random.Random(seed)
    names = [f"{PROJECT_PREFIX}-{i:02d}" for i in range(count)]
    requires: dict[str, list[str]] = {}
    wheels: list[Path] = []
    latest: list[Path] = []
    for i, name in enumerate(names):
        later = names[i + 1 :]
        deps = rng.sample(later, k=min(len(later), rng.choice((1, 2)))) if later and rng.random() < 0.35 else []
        requires[name] = [f"{dep}>=1.0" for dep in deps]
        size = int(math.exp(rng.uniform(math.log(50_000), math.log(500_000))))
        for version in (OLD, NEW):
            wheel = make_wheel(out, name, version, requires=requires[name], module_body=module_body(rng, size))
            wheels.append(wheel)
        latest.append(wheels[-1])
    return PackageSet(names, wheels, latest, requires)


# -- the upstream: a static PEP 503 directory behind python -m http.server -------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_static_index(root: Path, wheels: list[Path]) -> None:
    """``simple/index.html``, ``simple/<project>/index.html`` (with ``#sha256=``) and ``files/``."""
    pages: dict[str, list[str]] = {}
    (root / "files").mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy(wheel, root / "files" / wheel.name)
        project = str(canonicalize_name(wheel.name.split("-")[0]))
        link = f'<a href="../../files/{wheel.name}#sha256={sha256_of(wheel)}">{html.escape(wheel.name)}</a><br>'
        pages.setdefault(project, []).append(link)
    for project, links in pages.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("\n".join(["<!DOCTYPE html>", "<html><body>", *links, "</body></html>", ""]))
    root_links = [f'<a href="{p}/">{p}</a><br>' for p in sorted(pages)]
    (root / "simple" / "index.html").write_text(
        "\n".join(["<!DOCTYPE html><html><body>", *root_links, "</body></html>"])
    )


BACKLOG_SNIPPET = """\
import http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = int(sys.argv[2])
http.server.test(http.server.SimpleHTTPRequestHandler, Server, port=int(sys.argv[1]), bind="127.0.0.1")
"""
"""``python -m http.server`` with one change: the listen backlog (``socketserver`` default 5)."""


@dataclass
class StaticIndex:
    """``python -m http.server`` over a folder; its stderr log is where requests are counted.

    With ``backlog``, the same handler and server class, only with that listen backlog: the
    stock backlog of 5 overflows when uv opens its ~20 parallel connections, and each dropped
    SYN costs uv a 1 s retransmission, which is the server's limit, not the protocol's.
    """

    root: Path
    log: Path
    backlog: int | None = None
    port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> StaticIndex:
        self.port = free_port()
        if self.backlog is None:
            command = [sys.executable, "-u", "-m", "http.server", str(self.port), "--bind", "127.0.0.1"]
        else:
            command = [sys.executable, "-u", "-c", BACKLOG_SNIPPET, str(self.port), str(self.backlog)]
        self.process = Process(command, self.log, cwd=self.root)
        self.process.start(self.url, "http.server", timeout=30)
        return self

    def requests(self) -> int:
        """How many requests the server has logged so far."""
        if not self.log.exists():
            return 0
        return len(re.findall(r'"[A-Z]+ \S+ HTTP/[\d.]+" \d{3}', self.log.read_text(errors="replace")))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# -- the measurement -------------------------------------------------------------------------------

INSTALLERS = ("pip", "uv")
ROUTES = ("packyard", "direct", "direct-b128")
"""Through packyard's mirror; straight from ``python -m http.server`` (the goal's reference);
straight from the same files behind http.server with a listen backlog of 128 (a stricter one)."""
BACKLOG = 128


@dataclass
class Result:
    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """(installer, route) -> wall times of the measured installs."""
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """(installer, route) -> CPU seconds the serving process spent per install."""
    upstream_hits_during_packyard: int = 0
    warm_fetches: int | None = None
    set_bytes: int = 0
    step: str = "start"
    error: str | None = None

    def ratio(self, installer: str, reference: str = "direct") -> float | None:
        p, d = median(self.times.get((installer, "packyard"), [])), median(self.times.get((installer, reference), []))
        return None if p is None or not d else p / d

    def verdicts(self) -> dict[str, bool | None]:
        """The goals that decide the exit status (the backlog-128 ratios are shown, not gated)."""
        out: dict[str, bool | None] = {}
        for installer in INSTALLERS:
            r = self.ratio(installer)
            out[f"{installer} packyard / direct <= {RATIO_GOAL}"] = None if r is None else r <= RATIO_GOAL
        measured = any(self.times.get((i, "packyard")) for i in INSTALLERS)
        out["no upstream request during packyard installs"] = (
            self.upstream_hits_during_packyard == 0 if measured else None
        )
        return out


class Bench:
    """The servers, the installers and the rounds."""

    def __init__(self, root: Path, args: argparse.Namespace, result: Result) -> None:
        self.root, self.args, self.result = root, args, result
        self.uv = uv_bin()
        self.requirements = root / "requirements.txt"
        self.expected: dict[str, str] = {}
        self.server: Server | None = None
        self.statics: dict[str, StaticIndex] = {}
        self.count = 0

    def command(self, installer: str, index: str, target: Path) -> tuple[list[str], dict[str, str]]:
        if installer == "pip":
            command = [sys.executable, "-m", "pip", "install", "--target", str(target), "--no-cache-dir"]
            env = clean_env(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        else:
            command = [self.uv, "pip", "install", "--target", str(target), "--no-cache", "--python", sys.executable]
            env = clean_env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never")
        return [*command, "--index-url", index, "-r", str(self.requirements)], env

    def serving(self, route: str) -> tuple[str, int]:
        """(index URL, pid of the process answering it) for a route."""
        if route == "packyard":
            assert self.server is not None and self.server.proc is not None
            return f"{self.server.url}/{NAMESPACE}/simple/", self.server.proc.pid
        static = self.statics[route]
        return static.url, static.pid

    def install(self, installer: str, route: str) -> tuple[float, float]:
        """One install of the whole set into a fresh target: (wall seconds, server CPU seconds)."""
        self.count += 1
        target = self.root / "targets" / f"{self.count:03d}-{installer}-{route}"
        index, pid = self.serving(route)
        command, env = self.command(installer, index, target)
        cpu0 = cpu_seconds(pid)
        elapsed, _ = timed(command, env, self.root / "logs" / f"{target.name}.log")
        cpu = cpu_seconds(pid) - cpu0
        got = installed(target)
        if got != self.expected:
            differing = sorted(set(self.expected.items()) ^ set(got.items()))[:6]
            raise CheckFailed(f"{installer} via {route} installed {len(got)} projects, differing in {differing}")
        shutil.rmtree(target, ignore_errors=True)
        return elapsed, cpu

    def setup(self) -> None:
        r = self.result
        r.step = "make the package set"
        packages = make_package_set(self.root / "wheels")
        packages.requirements(self.requirements)
        self.expected = {name: NEW for name in packages.names}
        r.set_bytes = packages.latest_bytes
        r.step = "start the static upstreams"
        write_static_index(self.root / "static", packages.wheels)
        for route, backlog in (("direct", None), ("direct-b128", BACKLOG)):
            static = StaticIndex(self.root / "static", self.root / f"{route}-http.log", backlog)
            self.statics[route] = static
            static.start()
        upstream = self.statics["direct"]
        r.step = "start packyard"
        env = {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_UPSTREAM_TTL": str(UPSTREAM_TTL_S)}
        self.server = Server(self.root / "data", env)
        self.server.start()
        with admin_client(self.server, timeout=30) as http:
            response = http.post("/api/v1/namespaces", json={"name": NAMESPACE})
            if response.status_code != 201:
                raise CheckFailed(f"create {NAMESPACE}: {response.status_code} {response.text[:200]}")
            response = http.patch(f"/api/v1/namespaces/{NAMESPACE}/settings", json={"upstream": upstream.url})
            if response.status_code != 200:
                raise CheckFailed(f"set the upstream: {response.status_code} {response.text[:200]}")
        for dirname in ("targets", "logs"):
            (self.root / dirname).mkdir()

    def warm(self) -> None:
        """Warm the mirror (pip, then uv) and each direct path once; nothing here is measured."""
        r = self.result
        upstream = self.statics["direct"]
        before = upstream.requests()
        for installer in INSTALLERS:
            r.step = f"warm the mirror with {installer}"
            self.install(installer, "packyard")
        r.warm_fetches = upstream.requests() - before
        for installer in INSTALLERS:
            for route in ROUTES[1:]:
                r.step = f"warm-up {installer} {route}"
                self.install(installer, route)

    def rounds(self, progress: Callable[[str], None]) -> None:
        r = self.result
        upstream = self.statics["direct"]
        for i in range(self.args.repeat):
            for k, installer in enumerate(INSTALLERS):
                shift = (i + k) % len(ROUTES)  # rotate the order so load drifts hit every route
                for route in ROUTES[shift:] + ROUTES[:shift]:
                    r.step = f"round {i + 1}: {installer} via {route}"
                    hits = upstream.requests()
                    elapsed, cpu = self.install(installer, route)
                    if route == "packyard":
                        r.upstream_hits_during_packyard += upstream.requests() - hits
                    r.times.setdefault((installer, route), []).append(elapsed)
                    r.cpu.setdefault((installer, route), []).append(cpu)
            progress(f"round {i + 1}/{self.args.repeat} done, load average {load_average()}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        for static in self.statics.values():
            static.stop()


def run(args: argparse.Namespace, root: Path, progress: Callable[[str], None]) -> Result:
    result = Result()
    bench = Bench(root, args, result)
    try:
        bench.setup()
        bench.warm()
        bench.rounds(progress)
        result.step = "done"
    except (CheckFailed, httpx.HTTPError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result.error = failure(result.step, exc, bench.server)
    finally:
        bench.stop()
    return result


def render(result: Result, args: argparse.Namespace) -> Table:
    size = result.set_bytes / 1e6
    table = Table(
        title=f"install {COUNT} pure wheels ({size:.1f} MB) into a fresh --target, no client cache: packyard's warm "
        f"mirror vs python -m http.server; median (min–max) of {args.repeat}"
    )
    columns = (
        "installer", "via packyard", "direct", "ratio", "goal", "result", f"direct, backlog {BACKLOG}",
        f"ratio vs backlog {BACKLOG} (info)", "serving CPU/install packyard | direct",
    )  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name == "installer" else "right")
    for installer in INSTALLERS:
        ratio, strict = result.ratio(installer), result.ratio(installer, "direct-b128")
        ok = None if ratio is None else ratio <= RATIO_GOAL
        cpu_p = median(result.cpu.get((installer, "packyard"), []))
        cpu_d = median(result.cpu.get((installer, "direct"), []))
        cpu = "—" if cpu_p is None or cpu_d is None else f"{cpu_p:.2f} s | {cpu_d:.2f} s"
        table.add_row(
            installer,
            spread(result.times.get((installer, "packyard"), [])),
            spread(result.times.get((installer, "direct"), [])),
            "—" if ratio is None else f"{ratio:.2f}×",
            f"<= {RATIO_GOAL}×",
            verdict(ok),
            spread(result.times.get((installer, "direct-b128"), [])),
            "—" if strict is None else f"{strict:.2f}×",
            cpu,
        )
    return table


def render_rounds(result: Result) -> Table:
    """Every measured install, so a load spike in one round is visible next to the medians."""
    table = Table(title="each round (seconds)")
    table.add_column("round", justify="right")
    columns = [(i, r) for i in INSTALLERS for r in ROUTES]
    for installer, route in columns:
        table.add_column(f"{installer} {route}", justify="right")
    rounds = max((len(v) for v in result.times.values()), default=0)
    for n in range(rounds):
        cells = []
        for key in columns:
            values = result.times.get(key, [])
            cells.append(f"{values[n]:.2f}" if n < len(values) else "—")
        table.add_row(str(n + 1), *cells)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.upstream", __doc__)
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds per installer and route (default 5)")
    parser.add_argument("--quick", action="store_true", help="two rounds, while developing")
    return parse(parser, argv, 1, "--repeat", quick={"repeat": 2})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = begin(170)
    out.print(
        f"method: {COUNT} projects × 2 versions as a static PEP 503 index; packyard serve (local backend), namespace "
        f"{NAMESPACE} with that index (python -m http.server) as upstream, warmed by one pip and one uv install; "
        f"then per round and installer one install via packyard, one from python -m http.server and one from "
        f"http.server with listen backlog {BACKLOG}, order rotating; pip --no-cache-dir, uv --no-cache; CPU from /proc"
    )
    with scratch("upstream") as tmp:
        result = run(args, tmp, lambda line: out.print(line, markup=False, highlight=False))
    out.print(render(result, args))
    if result.times:
        out.print(render_rounds(result))
    warm = "—" if result.warm_fetches is None else str(result.warm_fetches)
    out.print(
        f"upstream requests while warming: {warm}; during the measured packyard installs: "
        f"{result.upstream_hits_during_packyard}; load average at the end {load_average()}"
    )
    return exit_status(out, [result.error], result.verdicts())


if __name__ == "__main__":
    sys.exit(main())
