"""What ``pip install packyard`` and ``pip install 'packyard[server]'`` cost: packages, bytes, seconds.

One command, from the repository root: ``python -m bench.install``. It builds the wheel,
then for the client (no extras) and for the server installs it into fresh virtual
environments, ``--repeat`` times each, three ways: ``pip`` (the venv's own, as ``python -m
venv`` makes it, with this machine's pip configuration), ``pip-local`` (the same pip from
the wheels downloaded beforehand, ``--no-index --find-links``: the install without the
index's network time) and ``uv`` (a warm cache: a second ``uv pip install`` into another
fresh environment). It prints the fastest run (wall-clock, and CPU time: on a busy machine
the steadier figure), the distributions installed (pip and
setuptools of the venv itself not counted) and their bytes on disk, and the start-up of
``packyard --help`` in the client install (CPU time of the process, the steadier figure on a
busy machine; wall-clock beside it). The standard library only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except ImportError:
        return shutil.which("uv") or "uv"


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children): on a busy machine the
    CPU time is what the install costs, the wall time what it waited for besides."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python3.*/site-packages")
    return found


def inventory(venv: Path) -> tuple[list[str], int]:
    """Installed distributions (not pip/setuptools) and the bytes of their files."""
    site = site_packages(venv)
    names, total = [], 0
    for info in site.glob("*.dist-info"):
        name = info.name.split("-")[0].lower()
        if name in ("pip", "setuptools"):
            continue
        names.append(name)
        for line in (info / "RECORD").read_text().splitlines():
            path = (site / line.split(",")[0]).resolve()
            if path.is_file():
                total += path.stat().st_size
    return sorted(names), total


def startup(command: list[str], runs: int = 20) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) of ``command``."""
    cpus, walls = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(cpus), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--client-only", action="store_true", help="Skip the server install.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packyard-bench-install-") as tmp:
        work = Path(tmp)
        subprocess.run([uv(), "build", "--wheel", "-q", "--out-dir", work / "dist", ROOT], check=True)
        (wheel,) = (work / "dist").glob("packyard-*.whl")
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
        )
        print(f"{'install':22s} {'tool':9s} {'packages':>8s} {'MB':>7s} {'wall s':>7s} {'CPU s':>6s}")
        client_venv = None
        installs = [("packyard", str(wheel)), ("packyard[server]", f"{wheel}[server]")]
        for label, spec in installs[:1] if args.client_only else installs:
            wheels = work / f"wheels-{label}"
            for tool in ("pip", "pip-local", "uv"):
                best = (float("inf"), float("inf"))
                cache = work / f"uv-cache-{label}"
                if tool == "pip-local":  # the wheels downloaded once: the install without the index
                    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", wheels, spec], check=True)
                if tool == "uv":  # warm the cache once: the figure is an install, not a download
                    warm = work / f"warm-{label}"
                    subprocess.run([uv(), "venv", "-q", warm], check=True)
                    env = {**os.environ, "UV_CACHE_DIR": str(cache)}
                    timed([uv(), "pip", "install", "-q", "--python", warm / "bin" / "python", spec], env)
                for n in range(args.repeat):
                    venv = work / f"{tool}-{label}-{n}"
                    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
                    if tool == "pip":
                        seconds = timed([venv / "bin" / "pip", "install", "-q", spec])
                    elif tool == "pip-local":
                        pip = [venv / "bin" / "pip", "install", "-q", "--no-index", "--find-links", wheels, spec]
                        seconds = timed(pip)
                    else:
                        env = {**os.environ, "UV_CACHE_DIR": str(cache)}
                        seconds = timed([uv(), "pip", "install", "-q", "--python", venv / "bin" / "python", spec], env)
                    best = (min(best[0], seconds[0]), min(best[1], seconds[1]))
                names, size = inventory(venv)
                print(f"{label:22s} {tool:9s} {len(names):8d} {size / 1e6:7.1f} {best[0]:7.2f} {best[1]:6.2f}")
                if label == "packyard" and tool == "uv":
                    print(f"{'':22s} {' '.join(names)}")
                    client_venv = venv
        assert client_venv is not None
        packyard = str(client_venv / "bin" / "packyard")
        subprocess.run([client_venv / "bin" / "python", "-m", "compileall", "-q", site_packages(client_venv)])
        for argv in (["--help"], ["files", "--help"], ["run", "--help"]):
            cpu, wall = startup([packyard, *argv])
            print(
                f"packyard {' '.join(argv):14s} start-up: {cpu * 1000:4.0f} ms CPU, {wall * 1000:4.0f} ms wall (median)"
            )


if __name__ == "__main__":
    main()
