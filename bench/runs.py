"""Task runs: what ``packyard run`` adds to a command, and how fast a fresh worker gets an environment.

Run from the repository root: ``python -m bench.runs`` (``--help`` for the options).

Issue 7 sets two goals, measured here side by side in one run against a real
``packyard serve`` (local backend, no build worker) holding 20 pure wheels (the package set
of ``bench/upstream.py``: 50–500 KB of code each, a few dependencies between them):

(a) **warm run overhead**: ``packyard run NS --with yardbench-00 -- python -c pass`` with its
    environment cached and the index unchanged, against the bare ``ENV/bin/python -c pass``
    with that environment's interpreter; wall time around ``subprocess.run``, interleaved,
    after warm-up runs; goal: median(packyard run) − median(bare) <= 0.3 s.
(b) **fresh worker**: ``packyard env NS -r req.txt --json`` with an empty
    ``PACKYARD_CACHE_DIR`` (it must say ``from_bundle: true`` and ``resolution: server``: an
    earlier ``env`` build with ``--share`` stored the lock and the finished environment),
    against the physical reference ``uv venv`` + ``uv pip install --no-index --find-links
    WHEELDIR -r req.txt`` from a local folder holding the same 20 wheels, each with a fresh
    uv cache; goal: median ratio <= 1.2.

Both tables are followed by where packyard's time goes (interpreter start-up, the fast
path's imports against the full CLI's, ``-X importtime``'s heaviest packages of the full
CLI, the three requests of a fresh worker, the unpack), so a missed goal comes with its
explanation. The CLI subprocesses get
``PACKYARD_URL``/``PACKYARD_TOKEN``/``PACKYARD_CACHE_DIR`` and this interpreter's ``bin``
folder first on ``PATH`` (as an activated virtual environment would), so ``packyard`` and
``uv`` are the real executables on both sides, never pyenv shims. A missed goal or a failed
check exits 1; everything lives under one ``/tmp`` folder, removed at the end, and the
server is stopped, even on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.table import Table

from bench.common import (
    CheckFailed,
    begin,
    exit_status,
    failure,
    load_average,
    median,
    new_parser,
    parse,
    run_timed,
    scratch,
    spread,
    timed,
    verdict,
)
from bench.upstream import PackageSet, clean_env, installed, make_package_set, uv_bin
from packyard.runs.bundle import base_interpreter, unpack
from packyard.runs.keys import python_version, read_requirements, resolution_key
from tests.support.procs import Server

NAMESPACE = "bench.runs"
WARM_GOAL_S = 0.3
FRESH_GOAL = 1.2
WITH = "yardbench-00"
TIMEOUT_S = 600.0
BIN = Path(sys.executable).parent


@dataclass
class Result:
    run: list[float] = field(default_factory=list)
    """Wall seconds of ``packyard run NS --with PKG -- python -c pass`` (warm)."""
    bare: list[float] = field(default_factory=list)
    """Wall seconds of ``ENV/bin/python -c pass``."""
    fresh: list[float] = field(default_factory=list)
    """Wall seconds of ``packyard env NS -r req.txt --json`` with an empty cache."""
    reference: list[float] = field(default_factory=list)
    """Wall seconds of ``uv venv`` + ``uv pip install --no-index --find-links``."""
    reuse: dict | None = None
    """``packyard env --json`` for the warm run's requirement after the loop."""
    parts: dict[str, list[float]] = field(default_factory=dict)
    """Where the time goes: label -> wall seconds (see ``Bench.breakdown``)."""
    importtime: list[tuple[int, int, str]] = field(default_factory=list)
    """(self µs, modules, top-level package) of ``import packyard.cli``, heaviest first."""
    packyard_cmd: str = ""
    bundle_bytes: int = 0
    set_bytes: int = 0
    step: str = "start"
    error: str | None = None

    @property
    def overhead(self) -> float | None:
        p, b = median(self.run), median(self.bare)
        return None if p is None or b is None else p - b

    @property
    def ratio(self) -> float | None:
        p, r = median(self.fresh), median(self.reference)
        return None if p is None or not r else p / r

    def verdicts(self) -> dict[str, bool | None]:
        overhead, ratio = self.overhead, self.ratio
        reused = None if self.reuse is None else bool(self.reuse["reused"] and not self.reuse["resolved"])
        return {
            f"warm packyard run within {WARM_GOAL_S} s of the bare command": None
            if overhead is None
            else overhead <= WARM_GOAL_S,
            "the warm run reused its environment and its resolution": reused,
            f"fresh worker from the bundle <= {FRESH_GOAL}× uv --find-links": None
            if ratio is None
            else ratio <= FRESH_GOAL,
        }


def packyard_command() -> list[str]:
    """The installed ``packyard`` script of this interpreter, else ``python -m packyard``."""
    script = BIN / "packyard"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "packyard"]


def heaviest_imports(python: str, module: str, top: int = 12) -> list[tuple[int, int, str]]:
    """``python -X importtime -c 'import MODULE'``, self time summed per top-level package.

    Returns (self µs, modules, package), heaviest first: which distributions the import pulls
    in and what each costs, whichever packyard module asked for it.
    """
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    own: dict[str, int] = {}
    count: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| \s*(\S+)", line)
        if match:
            package = match[3].split(".")[0]
            own[package] = own.get(package, 0) + int(match[1])
            count[package] = count.get(package, 0) + 1
    return sorted(((us, count[p], p) for p, us in own.items()), reverse=True)[:top]


FAST_IMPORTS = "import packyard.entry, packyard.runs.keys, packyard.runs.bundle, http.client, json, tarfile, zlib"
"""What ``packyard env``/``run`` import on the fast path before their first request."""


class Bench:
    """One server, the package set, the CLI environments and the measurements."""

    def __init__(self, root: Path, args: argparse.Namespace, result: Result) -> None:
        self.root, self.args, self.result = root, args, result
        self.uv = uv_bin()
        self.server: Server | None = None
        self.packages: PackageSet | None = None
        self.requirements = root / "requirements.txt"
        self.packyard = packyard_command()
        self.count = 0
        result.packyard_cmd = " ".join(self.packyard)

    # -- environments ------------------------------------------------------------------------

    def cli_env(self, cache: Path) -> dict[str, str]:
        assert self.server is not None
        return clean_env(
            PACKYARD_URL=self.server.url,
            PACKYARD_TOKEN=self.server.admin_token,
            PACKYARD_CACHE_DIR=str(cache),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )

    def fresh_dir(self, label: str) -> Path:
        self.count += 1
        path = self.root / "work" / f"{self.count:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def env_json(self, cache: Path, *args: str) -> dict:
        """``packyard env NS ARGS --json`` with ``cache`` as PACKYARD_CACHE_DIR."""
        log = self.fresh_dir("env-log") / "env.log"
        command = [*self.packyard, "env", NAMESPACE, *args, "--json"]
        proc = subprocess.run(command, env=self.cli_env(cache), capture_output=True, text=True, timeout=TIMEOUT_S)
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise CheckFailed(f"packyard env {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-1500:]}")
        return json.loads(proc.stdout)

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        r = self.result
        r.step = "make the package set"
        self.packages = make_package_set(self.root / "wheels")
        self.packages.requirements(self.requirements)
        r.set_bytes = self.packages.latest_bytes
        self.wheelhouse = self.root / "wheelhouse"  # the physical reference: the 20 wheels the lock uses
        self.wheelhouse.mkdir()
        for wheel in self.packages.latest:
            shutil.copy(wheel, self.wheelhouse / wheel.name)
        r.step = "start packyard"
        self.server = Server(self.root / "data", {"PACKYARD_EMBEDDED_WORKER": "false"})
        self.server.start()
        r.step = "upload the wheels"
        with httpx.Client(base_url=self.server.url, timeout=60) as http:
            admin = {"Authorization": f"Bearer {self.server.admin_token}"}
            response = http.post("/api/v1/namespaces", json={"name": NAMESPACE}, headers=admin)
            if response.status_code != 201:
                raise CheckFailed(f"create {NAMESPACE}: {response.status_code} {response.text[:200]}")
            for wheel in self.packages.wheels:
                name, version = wheel.name.split("-")[:2]
                form = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
                        "filetype": "bdist_wheel"}  # fmt: skip
                response = http.post(
                    f"/{NAMESPACE}/",
                    data=form,
                    files={"content": (wheel.name, wheel.read_bytes(), "application/octet-stream")},
                    auth=("__token__", self.server.admin_token),
                )
                if response.status_code != 200:
                    raise CheckFailed(f"upload {wheel.name}: {response.status_code} {response.text[:200]}")

    # -- (a) warm run ------------------------------------------------------------------------

    def warm_run(self, progress: Callable[[str], None]) -> None:
        r = self.result
        cache = self.root / "cache-warm"
        env = self.cli_env(cache)
        r.step = f"build the environment for --with {WITH}"
        built = self.env_json(cache, "--with", WITH)
        python = built["python"]
        r.step = "check that packyard run uses that environment"
        probe = [*self.packyard, "run", NAMESPACE, "--with", WITH, "--", "python", "-c",
                 "import sys, yardbench_00; print(sys.prefix)"]  # fmt: skip
        proc = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        if proc.returncode != 0 or Path(proc.stdout.strip()).resolve() != Path(built["path"]).resolve():
            raise CheckFailed(f"packyard run ran in {proc.stdout.strip()!r}, not {built['path']}: {proc.stderr[-800:]}")
        run = [*self.packyard, "run", NAMESPACE, "--with", WITH, "--", "python", "-c", "pass"]
        bare = [python, "-c", "pass"]
        r.step = "warm-up runs"
        for _ in range(3):
            run_timed(run, env)
            run_timed(bare, env)
        for i in range(self.args.runs):
            r.step = f"warm run {i + 1}"
            pair = [(run, r.run), (bare, r.bare)]
            for command, times in pair if i % 2 == 0 else pair[::-1]:
                times.append(run_timed(command, env))
        r.reuse = self.env_json(cache, "--with", WITH)
        progress(f"(a) {self.args.runs} warm runs done, load average {load_average()}")

    # -- (b) fresh worker ------------------------------------------------------------------

    def share(self) -> dict:
        """Build the 20-package environment once with --share: this uploads the bundle."""
        r = self.result
        r.step = "build and share the 20-package environment"
        built = self.env_json(self.root / "cache-builder", "-r", str(self.requirements), "--share")
        if built["reused"] or built["from_bundle"]:
            raise CheckFailed(f"the first env build was not a build: {built}")
        got = installed(next((Path(built["path"]) / "lib").glob("python*/site-packages")))
        if len(got) != len(self.packages.names if self.packages else []):
            raise CheckFailed(f"the shared environment holds {len(got)} projects: {sorted(got)}")
        assert self.server is not None
        response = httpx.get(f"{self.server.url}/api/v1/namespaces/{NAMESPACE}/bundles/{built['key']}",
                             headers={"Authorization": f"Bearer {self.server.admin_token}"})  # fmt: skip
        if response.status_code != 200:
            raise CheckFailed(f"no bundle for {built['key']} after env --share: {response.status_code}")
        r.bundle_bytes = len(response.content)
        return built

    def fresh_packyard(self, key: str) -> float:
        cache = self.fresh_dir("fresh-worker")
        command = [*self.packyard, "env", NAMESPACE, "-r", str(self.requirements), "--json"]
        elapsed, output = timed(command, self.cli_env(cache), cache.parent / f"{cache.name}.log", TIMEOUT_S)
        got = json.loads(output[output.index("{") :])
        if not got["from_bundle"] or got["reused"] or got["key"] != key or got["resolution"] != "server":
            raise CheckFailed(f"a fresh worker did not materialise from the bundle: {got}")
        shutil.rmtree(cache, ignore_errors=True)
        return elapsed

    def reference(self) -> float:
        work = self.fresh_dir("reference")
        env = clean_env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(work / "uv-cache"))
        venv = work / "venv"
        first, _ = timed([self.uv, "venv", "--quiet", "--python", sys.executable, str(venv)], env, work / "venv.log")
        install = [self.uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-index",
                   "--find-links", str(self.wheelhouse), "-r", str(self.requirements)]  # fmt: skip
        second, _ = timed(install, env, work / "install.log")
        got = installed(next((venv / "lib").glob("python*/site-packages")))
        if self.packages is None or len(got) != len(self.packages.names):
            raise CheckFailed(f"the reference installed {len(got)} projects")
        self.result.parts.setdefault("reference: uv venv", []).append(first)
        self.result.parts.setdefault("reference: uv pip install --no-index --find-links (20 wheels)", []).append(second)
        shutil.rmtree(work, ignore_errors=True)
        return first + second

    def fresh_worker(self, progress: Callable[[str], None]) -> str:
        r = self.result
        built = self.share()
        r.step = "warm-up: one fresh worker and one reference"
        self.fresh_packyard(built["key"])
        self.reference()
        r.parts.clear()  # the warm-up's reference split is not a measurement
        for i in range(self.args.repeat):
            r.step = f"fresh worker round {i + 1}"
            pair: list[tuple[Callable[[], float], list[float]]] = [
                (lambda: self.fresh_packyard(built["key"]), r.fresh),
                (self.reference, r.reference),
            ]
            for measure, times in pair if i % 2 == 0 else pair[::-1]:
                times.append(measure())
        progress(f"(b) {self.args.repeat} fresh-worker rounds done, load average {load_average()}")
        return built["key"]

    # -- where the time goes --------------------------------------------------------------

    def breakdown(self, key: str) -> None:
        """The pieces of packyard's time, each measured alone, median of N."""
        assert self.server is not None
        r = self.result
        r.step = "breakdown"
        n = self.args.runs
        env = self.cli_env(self.root / "cache-warm")
        parts = r.parts
        for _ in range(n):
            parts.setdefault("python -c pass (this interpreter)", []).append(
                run_timed([sys.executable, "-c", "pass"], env)
            )
            parts.setdefault("python -c 'import packyard.entry + what its fast path imports'", []).append(
                run_timed([sys.executable, "-c", FAST_IMPORTS], env)
            )
            parts.setdefault("python -c 'import packyard.cli' (the full CLI the fast path avoids)", []).append(
                run_timed([sys.executable, "-c", "import packyard.cli"], env)
            )
            parts.setdefault(f"packyard env NS --with {WITH} --json (warm)", []).append(
                run_timed([*self.packyard, "env", NAMESPACE, "--with", WITH, "--json"], env)
            )
        r.importtime = heaviest_imports(sys.executable, "packyard.cli")
        rkey = resolution_key(NAMESPACE, read_requirements([self.requirements], []), python_version(None))
        token = {"Authorization": f"Bearer {self.server.admin_token}"}
        host, port = self.server.url.removeprefix("http://").split(":")
        for _ in range(self.args.repeat):
            work = self.fresh_dir("unpack")
            conn = http.client.HTTPConnection(host, int(port))  # a new connection, as the fast path opens
            timings = []
            for path in (
                f"/api/v1/namespaces/{NAMESPACE}/index-state",
                f"/api/v1/namespaces/{NAMESPACE}/resolutions/{rkey}",
                f"/api/v1/namespaces/{NAMESPACE}/bundles/{key}",
            ):
                start = time.perf_counter()
                conn.request("GET", path, headers=token)
                response = conn.getresponse()
                body = response.read()
                timings.append(time.perf_counter() - start)
                if response.status != 200:
                    raise CheckFailed(f"GET {path}: {response.status}")
            conn.close()
            for label, seconds in zip(("index-state", "shared resolution", "bundle"), timings, strict=True):
                parts.setdefault(f"GET {label} (in-process, one keep-alive connection)", []).append(seconds)
            start = time.perf_counter()
            unpack(io.BytesIO(body), work / "env", None, base_interpreter())
            parts.setdefault("unpack the bundle and relink it (in-process)", []).append(time.perf_counter() - start)
            shutil.rmtree(work, ignore_errors=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def run(args: argparse.Namespace, root: Path, progress: Callable[[str], None]) -> Result:
    result = Result()
    bench = Bench(root, args, result)
    try:
        bench.setup()
        bench.warm_run(progress)
        key = bench.fresh_worker(progress)
        bench.breakdown(key)
        result.step = "done"
    except (
        CheckFailed,
        httpx.HTTPError,
        RuntimeError,
        OSError,
        ValueError,
        KeyError,
        subprocess.SubprocessError,
    ) as exc:
        result.error = failure(result.step, exc, bench.server)
    finally:
        bench.stop()
    return result


def render(result: Result, args: argparse.Namespace) -> Table:
    v = list(result.verdicts().values())
    table = Table(
        title=f"task runs — local backend; (a) median of {args.runs} runs, (b) median of {args.repeat} rounds"
    )
    for name in ("measure", "median (min–max)", "goal", "result"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    table.add_row(f"(a) packyard run NS --with {WITH} -- python -c pass (warm)", spread(result.run, "ms"), "", "")
    table.add_row("(a) bare ENV/bin/python -c pass", spread(result.bare, "ms"), "", "")
    overhead = result.overhead
    table.add_row("(a) difference", "—" if overhead is None else f"{overhead * 1000:+.0f} ms",
                  f"<= {WARM_GOAL_S * 1000:.0f} ms", verdict(v[0]))  # fmt: skip
    reuse = "—" if result.reuse is None else f"reused {result.reuse['reused']}, resolved {result.reuse['resolved']}"
    table.add_row("(a) env after the runs", reuse, "reused, not resolved", verdict(v[1]))
    mb = result.bundle_bytes / 1e6
    table.add_row(f"(b) fresh worker: packyard env -r req.txt (20 projects, bundle {mb:.1f} MB)", spread(result.fresh),
                  "", "")  # fmt: skip
    table.add_row("(b) uv venv + uv pip install --no-index --find-links", spread(result.reference), "", "")
    ratio = result.ratio
    table.add_row("(b) ratio", "—" if ratio is None else f"{ratio:.2f}×", f"<= {FRESH_GOAL}×", verdict(v[2]))
    return table


def render_parts(result: Result) -> Table:
    table = Table(title="where packyard's time goes (each piece measured alone)")
    table.add_column("piece")
    table.add_column("median (min–max)", justify="right")
    for label, values in result.parts.items():
        table.add_row(label, spread(values, "ms"))
    return table


def render_imports(result: Result) -> Table:
    total = sum(us for us, _, _ in result.importtime)
    table = Table(title="import packyard.cli (-X importtime): self time per package")
    for name in ("package", "modules", "self ms"):
        table.add_column(name, justify="left" if name == "package" else "right")
    for own, modules, package in result.importtime:
        table.add_row(package, str(modules), f"{own / 1000:.1f}")
    table.add_row("(these together)", "", f"{total / 1000:.0f}")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.runs", __doc__)
    parser.add_argument("--repeat", type=int, default=5, help="fresh-worker rounds per side (default 5)")
    parser.add_argument("--runs", type=int, default=20, help="warm runs per side (default 20)")
    parser.add_argument("--quick", action="store_true", help="2 fresh-worker rounds and 6 warm runs")
    return parse(parser, argv, 1, "--repeat", "--runs", quick={"repeat": 2, "runs": 6})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = begin(170)
    with scratch("runs") as tmp:
        result = run(args, tmp, lambda line: out.print(line, markup=False, highlight=False))
    out.print(
        f"packyard: {result.packyard_cmd}; uv: {uv_bin()}; package set: 20 projects, {result.set_bytes / 1e6:.1f} MB "
        "of wheels; CLI env: PACKYARD_URL/TOKEN/CACHE_DIR, this interpreter's bin first on PATH"
    )
    out.print(render(result, args))
    if result.parts:
        out.print(render_parts(result))
    if result.importtime:
        out.print(render_imports(result))
    out.print(f"load average at the end {load_average()}")
    return exit_status(out, [result.error], result.verdicts())


if __name__ == "__main__":
    sys.exit(main())
