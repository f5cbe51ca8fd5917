"""The garbage-collection half of ``bench/lifecycle.py``: ``packyard gc --apply`` over many blobs.

A store is made directly (no server: a million uploads would measure the upload path, not
the collector): N small blobs, of which a tenth are referenced by no catalog row, and
``file_revisions`` rows for the rest, written in one SQLite transaction. Then ``packyard gc
--apply --grace 1`` runs as its own process, the way an operator runs it, and the run
reports its wall time and its peak RSS (its ``VmHWM``, polled), and checks that exactly
the garbage went and every referenced blob stayed.

The goal (issue 17): memory flat in the number of blobs and at most 200 MB — so the local
backend is measured at two sizes (100,000 and 1,000,000 by default) and S3 (a SeaweedFS this
script starts, as the other benches do) at 100,000.

    python -m bench.lifecycle_gc                      # local 100k and 1M, S3 100k (~15 min on 2 cores)
    python -m bench.lifecycle_gc --local 20000 --s3 0 # quick, while developing
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import begin, check, exit_status, new_parser, scratch, verdict
from tests.support.procs import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedFS, s3_env

GOAL_MB = 200
GARBAGE = 0.10
BUCKET = "packyard-bench"
PREFIX = "gc"


class _Runs(list):
    def __init__(self, out) -> None:  # noqa: ANN001 - rich Console or None
        super().__init__()
        self.out = out

    def append(self, run: GcRun) -> None:
        super().append(run)
        if self.out is not None:
            self.out.print(f"done: {run}")


@dataclass
class GcRun:
    backend: str
    blobs: int
    garbage: int
    populate_s: float = 0.0
    gc_s: float = 0.0
    peak_mb: float = 0.0
    removed: int = 0
    left: int = 0
    error: str | None = None


def content(i: int) -> bytes:
    return f"packyard gc bench blob {i}\n".encode()


def catalog(data: Path, referenced: list[tuple[str, int]]) -> None:
    """A migrated catalog whose ``file_revisions`` reference ``referenced`` (sha256, size)."""
    env = {**os.environ, "PACKYARD_DATA": str(data)}
    code = "from packyard.store.catalog import Catalog; import sys; Catalog(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", code, str(data / "catalog.db")], check=True, env=env)
    conn = sqlite3.connect(data / "catalog.db")
    try:
        with conn:
            conn.execute(
                "INSERT INTO namespaces (name, created, settings) VALUES ('bench', '2026-01-01T00:00:00Z', '{}')"
            )
            conn.executemany(
                "INSERT INTO file_revisions (namespace, path, revision, sha256, size, deleted, created) "
                "VALUES ('bench', ?, 1, ?, ?, 0, '2026-01-01T00:00:00Z')",
                ((f"f/{i}", sha, size) for i, (sha, size) in enumerate(referenced)),
            )
    finally:
        conn.close()


def populate_local(data: Path, n: int) -> tuple[int, int]:
    """Write N blobs where the local backend keeps them; reference all but every tenth."""
    root = data / "blobs" / "blobs"
    for a in range(256):
        for b in range(256):
            os.makedirs(root / f"{a:02x}" / f"{b:02x}", exist_ok=True)
    referenced: list[tuple[str, int]] = []
    garbage = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    base = str(root)
    for i in range(n):
        body = content(i)
        sha = hashlib.sha256(body).hexdigest()
        fd = os.open(f"{base}/{sha[:2]}/{sha[2:4]}/{sha}", flags, 0o644)
        os.write(fd, body)
        os.close(fd)
        if i % int(1 / GARBAGE) == 0:
            garbage += 1
        else:
            referenced.append((sha, len(body)))
    (data / "blobs" / "tmp").mkdir(parents=True, exist_ok=True)
    catalog(data, referenced)
    return n, garbage


def populate_s3(data: Path, weed: SeaweedFS, n: int) -> tuple[int, int]:
    from minio import Minio

    client = Minio(f"127.0.0.1:{weed.s3_port}", S3_ACCESS_KEY, S3_SECRET_KEY, secure=False)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)

    def put(i: int) -> tuple[str, int, bool]:
        import io

        body = content(i)
        sha = hashlib.sha256(body).hexdigest()
        client.put_object(BUCKET, f"{PREFIX}/blobs/{sha[:2]}/{sha}", io.BytesIO(body), len(body))
        return sha, len(body), i % int(1 / GARBAGE) == 0

    referenced: list[tuple[str, int]] = []
    garbage = 0
    with ThreadPoolExecutor(16) as pool:
        for sha, size, is_garbage in pool.map(put, range(n), chunksize=256):
            if is_garbage:
                garbage += 1
            else:
                referenced.append((sha, size))
    data.mkdir(parents=True, exist_ok=True)
    catalog(data, referenced)
    return n, garbage


def peak_rss_mb(pid: int, done: threading.Event, seen: list[int]) -> None:
    """Poll the process's VmHWM (its own peak RSS, kB) until it exits.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the parent's peak into a child across
    vfork/exec, so a parent that populated a big store would be measured instead of gc.
    """
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    seen.append(int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return
        done.wait(0.05)


def run_gc(env: dict[str, str]) -> tuple[float, float, dict]:
    """``packyard gc --apply`` as its own process: wall seconds, peak RSS in MB (10^6 bytes), its report."""
    import json

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "packyard", "gc", "--apply", "--grace", "1", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    done, seen = threading.Event(), [0]
    poller = threading.Thread(target=peak_rss_mb, args=(proc.pid, done, seen), daemon=True)
    poller.start()
    out, err = proc.communicate()
    done.set()
    poller.join()
    elapsed = time.perf_counter() - started
    check(proc.returncode == 0, f"packyard gc exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return elapsed, max(seen) * 1024 / 1e6, json.loads(out)


def count_left(env: dict[str, str]) -> int:
    code = (
        "from packyard.settings import get_settings; from packyard.wiring import open_blobs; "
        "print(sum(1 for _ in open_blobs(get_settings()).entries()))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout)


def measure(root: Path, backend: str, n: int, weed: SeaweedFS | None = None) -> GcRun:
    data = root / f"{backend}-{n}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")} | {"PACKYARD_DATA": str(data)}
    started = time.perf_counter()
    if backend == "local":
        total, garbage = populate_local(data, n)
    else:
        assert weed is not None
        total, garbage = populate_s3(data, weed, n)
        env |= s3_env(weed, BUCKET, PREFIX)
    run = GcRun(backend, total, garbage, populate_s=time.perf_counter() - started)
    time.sleep(2)  # every blob older than the 1 s grace
    run.gc_s, run.peak_mb, report = run_gc(env)
    run.removed = report["removed"]["count"]
    run.left = count_left(env)
    check(run.removed == garbage, f"gc removed {run.removed} blobs, {garbage} were garbage")
    check(run.left == total - garbage, f"{run.left} blobs left, {total - garbage} are referenced")
    check(not report["damaged"], "gc reported damage on a consistent store")
    return run


def gc_runs(root: Path, local_sizes: list[int], s3_sizes: list[int], out=None) -> list[GcRun]:  # noqa: ANN001
    """Every configured run; a failed one is reported with its error and the others go on.
    Each run is printed as it ends (``out``, a rich Console): the largest take many minutes."""
    runs = _Runs(out)
    for n in local_sizes:
        try:
            runs.append(measure(root, "local", n))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            runs.append(GcRun("local", n, n // 10, error=str(exc)))
        finally:
            with contextlib.suppress(OSError):
                subprocess.run(["rm", "-rf", str(root / f"local-{n}")], check=False)
    if s3_sizes:
        weed = SeaweedFS(root / "seaweedfs")
        try:
            weed.start()
            for n in s3_sizes:
                try:
                    runs.append(measure(root, "s3", n, weed))
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    runs.append(GcRun("s3", n, n // 10, error=str(exc)))
        finally:
            weed.stop()
    return runs


def gc_table(out, runs: list[GcRun]) -> dict[str, bool | None]:  # noqa: ANN001 - rich Console
    """Print the runs; the goals: every peak <= 200 MB, and flat (the largest run's peak within
    25 % of the smallest's on the same backend)."""
    from rich.table import Table

    table = Table(title="packyard gc --apply (10 % garbage)")
    for column in ("backend", "blobs", "garbage", "populate s", "gc s", "blobs/s", "peak RSS MB", "error"):
        table.add_column(column)
    for run in runs:
        rate = f"{run.blobs / run.gc_s:,.0f}" if run.gc_s else "-"
        table.add_row(
            run.backend,
            f"{run.blobs:,}",
            f"{run.garbage:,}",
            f"{run.populate_s:.0f}",
            f"{run.gc_s:.1f}",
            rate,
            f"{run.peak_mb:.0f}",
            run.error or "",
        )
    out.print(table)
    ok = [r for r in runs if not r.error]
    goals: dict[str, bool | None] = {
        f"gc peak RSS <= {GOAL_MB} MB": all(r.peak_mb <= GOAL_MB for r in ok) if ok else None
    }
    for backend in ("local", "s3"):
        sized = sorted((r for r in ok if r.backend == backend), key=lambda r: r.blobs)
        if len(sized) >= 2:
            goals[f"gc memory flat on {backend} ({sized[0].blobs:,} -> {sized[-1].blobs:,} blobs)"] = (
                sized[-1].peak_mb <= sized[0].peak_mb * 1.25
            )
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.lifecycle_gc", __doc__)
    parser.add_argument("--local", default="100000,1000000", help="blob counts on the local backend (comma list)")
    parser.add_argument("--s3", default="100000", help="blob counts on S3 (comma list; 0 skips S3)")
    args = parser.parse_args(argv)
    sizes = {k: [int(x) for x in getattr(args, k).split(",") if int(x) > 0] for k in ("local", "s3")}
    out = begin(140)
    with scratch("gc") as root:
        runs = gc_runs(root, sizes["local"], sizes["s3"], out)
    goals = gc_table(out, runs)
    for goal, ok in goals.items():
        out.print(f"{goal}: {verdict(ok)}")
    return exit_status(out, [r.error for r in runs], goals)


if __name__ == "__main__":
    sys.exit(main())
