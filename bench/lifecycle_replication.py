"""Replication lag: how long after an upload's 2xx the catalog replica in the bucket holds it.

The replication half of ``bench/lifecycle.py`` (issue 17: "Replication lag under a steady
10 uploads/s, goal ≤ 2 s"); it also runs alone:

    python -m bench.lifecycle_replication            # 60 s of uploads at 10/s
    python -m bench.lifecycle_replication --quick    # 15 s

It starts a SeaweedFS and a ``packyard serve --replicate`` on the S3 backend (Litestream
streams the SQLite catalog into the bucket under ``catalog/``, packyard/replication.py),
then posts small generated wheels to the upload endpoint as twine does (multipart, the
token as ``__token__``'s password), one every 1/rate seconds by the clock (a few client
threads, so one slow upload does not delay the next), for ``--seconds``. The rate is
measured, not assumed: 2xx answers per second between the first 2xx and the last,
and how late the latest post left its slot; a rate below 95 % of the target fails the run
(the lag would then be measured under a lighter load than the goal's).

How the lag is measured, and why this way for Litestream 0.5.x: Litestream 0.5 ships the
WAL as LTX files under ``catalog/ltx/<level>/<min>-<max>.ltx``, named by *Litestream's own*
transaction ids, which it assigns when it syncs (once a second here, ``SYNC_INTERVAL``), not
when SQLite commits. So the primary has no txid to record at the 2xx that could be compared
with the bucket's latest LTX: which LTX file an upload lands in is only known after the
fact. What can be observed honestly is the replica itself: a ``litestream restore -f``
(follow mode) reads the bucket alone (never the server's data folder) into a scratch file
and applies every new LTX file it finds, polling the bucket every ``FOLLOW`` (0.1 s); this
script reads that file (read-only) every ``POLL`` (0.05 s), and an upload's lag is the time
from its 2xx to the first read of the restored catalog that holds its row. That is an upper
bound on the true lag, by at most one follow interval, one poll, and the follower's apply
time. At the end a fresh, plain ``litestream restore`` must hold every upload too (the
follower saw what a real restore would bring back), and every upload must have appeared
(waiting up to ``SETTLE`` s after the last one).

Goal: p99 lag ≤ 2 s. A missed goal, a rate not held, or a failed step exits 1.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.table import Table

from bench.common import (
    CheckFailed,
    begin,
    check,
    exit_status,
    failure,
    fmt,
    log_tail,
    new_parser,
    parse,
    scratch,
    verdict,
)
from tests.support.clients import post_upload
from tests.support.dists import make_wheel
from tests.support.procs import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedFS, Server, running, s3_env, wait_until

GOAL_S = 2.0
RATE_HELD = 0.95
"""The fraction of the target rate that must be reached for the lag to count as measured under it."""
FOLLOW = "100ms"
POLL = 0.05
SETTLE = 60.0
BUCKET = "packyard-bench"
PREFIX = "replag"
NAMESPACE = "bench.replag"
PROJECT = "replag-probe"
THREADS = 4


@dataclass
class Upload:
    filename: str
    data: bytes
    slot: float = 0.0
    posted: float = 0.0
    acked: float | None = None
    status: int | None = None
    seen: float | None = None

    @property
    def lag(self) -> float | None:
        return None if self.acked is None or self.seen is None else self.seen - self.acked


@dataclass
class Result:
    target: float
    seconds: float
    uploads: list[Upload] = field(default_factory=list)
    restore_holds: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Upload]:
        return [u for u in self.uploads if u.acked is not None]

    @property
    def rate(self) -> float | None:
        done = self.accepted
        if len(done) < 2:
            return None
        acks = [u.acked for u in done if u.acked is not None]
        return (len(acks) - 1) / (max(acks) - min(acks))

    @property
    def late(self) -> float:
        """How late the latest post left its slot (the client keeping up with the schedule)."""
        return max((u.posted - u.slot for u in self.uploads), default=0.0)

    @property
    def lags(self) -> list[float]:
        return sorted(u.lag for u in self.uploads if u.lag is not None)

    def quantile(self, q: float) -> float | None:
        lags = self.lags
        if not lags:
            return None
        if len(lags) == 1:
            return lags[0]
        return statistics.quantiles(lags, n=100, method="inclusive")[round(q * 100) - 1]

    @property
    def rate_ok(self) -> bool | None:
        return None if self.rate is None else self.rate >= RATE_HELD * self.target

    @property
    def ok(self) -> bool | None:
        p99 = self.quantile(0.99)
        return None if p99 is None else p99 <= GOAL_S


def make_uploads(tmp: Path, count: int) -> list[Upload]:
    """``count`` distinct small wheels of one project (versions 0.0.0, 0.0.1, …), made beforehand."""
    out = []
    for i in range(count):
        path = make_wheel(tmp / "wheels", PROJECT, f"0.0.{i}")
        out.append(Upload(path.name, path.read_bytes()))
        path.unlink()
    return out


class Follower:
    """``litestream restore -f`` of the bucket's replica into a scratch file, and a thread that
    reads that file every ``POLL`` s and stamps each upload with when it first showed up."""

    def __init__(self, tmp: Path, settings: object, by_name: dict[str, Upload]) -> None:
        from packyard.replication import child_env, config, litestream_binary

        self.tmp, self.by_name = tmp, by_name
        self.config = tmp / "probe-litestream.yml"
        self.config.write_text(json.dumps(config(settings)))  # the server's own replica settings
        self.env = child_env(settings)  # type: ignore[arg-type]
        self.binary = litestream_binary()
        self.db_path = str(settings.data / "catalog.db")  # type: ignore[attr-defined]
        self.target = tmp / "followed.db"
        self.log = tmp / "follower.log"
        self.proc: subprocess.Popen | None = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="replica-poll", daemon=True)
        self.reads = 0

    def restore(self, output: Path, *extra: str) -> subprocess.CompletedProcess:
        command = [self.binary, "restore", "-config", str(self.config), "-no-expand-env", *extra]
        command += ["-o", str(output), self.db_path]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        command = [self.binary, "restore", "-config", str(self.config), "-no-expand-env", "-f"]
        command += ["-follow-interval", FOLLOW, "-o", str(self.target), self.db_path]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.thread.start()

    def held(self) -> set[str]:
        """Filenames of the namespace's dists in the followed catalog (empty until it exists)."""
        if not self.target.exists():
            return set()
        conn = sqlite3.connect(f"file:{self.target}?mode=ro", uri=True, timeout=1)
        try:
            rows = conn.execute("SELECT filename FROM dists WHERE namespace = ?", (NAMESPACE,))
            return {row[0] for row in rows}
        finally:
            conn.close()

    def _poll(self) -> None:
        while not self.stop_event.is_set():
            try:
                names = self.held()
            except sqlite3.Error:
                names = set()  # mid-apply or not yet a catalog: the next read tells
            now = time.perf_counter()
            self.reads += 1
            for name in names:
                upload = self.by_name.get(name)
                if upload is not None and upload.seen is None:
                    upload.seen = now
            self.stop_event.wait(POLL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def drive(server: Server, uploads: list[Upload], rate: float) -> None:
    """Post every upload in its slot (start + i/rate), from ``THREADS`` client threads."""
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        ThreadPoolExecutor(THREADS, thread_name_prefix="upload") as pool,
    ):

        def post(upload: Upload) -> None:
            upload.posted = time.perf_counter()
            try:
                response = post_upload(http, NAMESPACE, upload.filename, upload.data, server.admin_token)
            except httpx.HTTPError as exc:
                upload.status = -1
                print(f"upload {upload.filename}: {exc}")
                return
            upload.status = response.status_code
            if 200 <= response.status_code < 300:
                upload.acked = time.perf_counter()

        start = time.perf_counter() + 0.2
        futures = []
        for i, upload in enumerate(uploads):
            upload.slot = start + i / rate
            pause = upload.slot - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(post, upload))
        for future in futures:
            future.result()


def measure(tmp: Path, rate: float, seconds: float, out) -> Result:  # noqa: ANN001 - rich Console
    from minio import Minio

    from packyard.settings import Settings

    result = Result(rate, seconds)
    uploads = make_uploads(tmp, round(rate * seconds))
    warmup = Upload(*next((p.name, p.read_bytes()) for p in [make_wheel(tmp / "warm", PROJECT, "0.0.0.dev0")]))
    with running(SeaweedFS(tmp / "weed")) as weed:
        client = Minio(f"127.0.0.1:{weed.s3_port}", S3_ACCESS_KEY, S3_SECRET_KEY, secure=False)
        if not client.bucket_exists(BUCKET):
            client.make_bucket(BUCKET)
        s3 = s3_env(weed, BUCKET, prefix=PREFIX)
        server = Server(tmp / "data", {**s3, "PACKYARD_REPLICATE": "true"})
        settings = Settings(**{k.removeprefix("PACKYARD_").lower(): v for k, v in s3.items()}, data=server.data)
        follower: Follower | None = None
        try:
            server.start()
            with httpx.Client(base_url=server.url, timeout=60) as http:
                first = post_upload(http, NAMESPACE, warmup.filename, warmup.data, server.admin_token)
                check(first.status_code == 200, f"the warm-up upload: {first.status_code} {first.text[:300]}")
            by_name = {u.filename: u for u in [warmup, *uploads]}
            follower = Follower(tmp, settings, by_name)

            # the replica exists once a plain restore holds the warm-up upload; then follow it
            def replica_ready() -> bool:
                probe = tmp / "ready.db"
                for leftover in tmp.glob("ready.db*"):
                    leftover.unlink()
                done = follower.restore(probe)
                if done.returncode != 0 or not probe.exists():
                    return False
                conn = sqlite3.connect(f"file:{probe}?mode=ro", uri=True)
                try:
                    return bool(conn.execute("SELECT 1 FROM dists WHERE filename = ?", (warmup.filename,)).fetchone())
                finally:
                    conn.close()

            wait_until(replica_ready, 60, "the first replica in the bucket")
            follower.start()
            wait_until(lambda: warmup.seen is not None, 60, "litestream restore -f to follow the replica")
            out.print(f"replica followed; {len(uploads)} uploads at {rate:g}/s for {seconds:g} s …")
            result.uploads = uploads
            drive(server, uploads, rate)
            refused = [u for u in uploads if u.acked is None]
            if refused:
                raise CheckFailed(f"{len(refused)} uploads refused, e.g. {refused[0].filename}: {refused[0].status}")
            deadline = time.perf_counter() + SETTLE
            while time.perf_counter() < deadline and any(u.seen is None for u in uploads):
                check(follower.alive(), f"the follower exited:\n{log_tail(follower.log)}")
                time.sleep(POLL)
            missing = [u.filename for u in uploads if u.seen is None]
            check(not missing, f"{len(missing)} uploads never reached the replica within {SETTLE:g} s, e.g. "
                  f"{missing[:3]}\n--- follower ---\n{log_tail(follower.log)}")  # fmt: skip
            follower.stop()
            final = tmp / "final.db"
            done = follower.restore(final)
            check(done.returncode == 0, f"the final litestream restore: {done.stderr[-600:]}")
            conn = sqlite3.connect(f"file:{final}?mode=ro", uri=True)
            try:
                held = {r[0] for r in conn.execute("SELECT filename FROM dists WHERE namespace = ?", (NAMESPACE,))}
            finally:
                conn.close()
            result.restore_holds = len(held & {u.filename for u in uploads})
            check(result.restore_holds == len(uploads),
                  f"a fresh restore holds {result.restore_holds} of {len(uploads)} uploads")  # fmt: skip
        except (CheckFailed, RuntimeError, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            result.errors.append(failure("replication lag", exc, server))
        finally:
            if follower is not None:
                follower.stop()
            server.stop()
    return result


def report(out, result: Result) -> None:  # noqa: ANN001 - rich Console
    table = Table(title="Replication lag: upload 2xx → in the bucket's catalog replica (Litestream)")
    for column in ("target /s", "uploads", "achieved /s", "latest post late", "p50 lag", "p99 lag", "max lag",
                   "fresh restore holds", "rate held", "p99 ≤ 2 s"):  # fmt: skip
        table.add_column(column, justify="right")
    p50, p99 = result.quantile(0.5), result.quantile(0.99)
    lags = result.lags
    table.add_row(
        fmt(result.target, 0),
        f"{len(result.accepted)} / {len(result.uploads)}",
        fmt(result.rate, 2),
        f"{result.late * 1000:.0f} ms",
        "—" if p50 is None else f"{p50:.2f} s",
        "—" if p99 is None else f"{p99:.2f} s",
        "—" if not lags else f"{lags[-1]:.2f} s",
        f"{result.restore_holds} / {len(result.uploads)}",
        verdict(result.rate_ok),
        verdict(result.ok),
    )
    out.print(table)
    out.print(
        f"goals: p99 lag ≤ {GOAL_S:g} s (issue 17); rate held: ≥ {RATE_HELD:.0%} of {result.target:g} uploads/s. "
        f"Lag is an upper bound: the follower polls the bucket every {FOLLOW}, this script reads it every "
        f"{POLL * 1000:.0f} ms; Litestream syncs every 1 s."
    )


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.lifecycle_replication", __doc__)
    parser.add_argument("--seconds", type=int, default=60, help="how long the uploads run (default 60)")
    parser.add_argument("--rate", type=int, default=10, help="uploads per second (default 10)")
    parser.add_argument("--quick", action="store_true", help="15 s of uploads")
    args = parse(parser, argv, 1, "--seconds", "--rate", quick={"seconds": 15})
    out = begin(200, f"uploads {args.rate}/s for {args.seconds} s, SQLite catalog, S3 (SeaweedFS), litestream")
    with scratch("replag") as tmp:
        result = measure(tmp, args.rate, args.seconds, out)
    report(out, result)
    goals = {f"p99 lag ≤ {GOAL_S:g} s": result.ok, f"rate ≥ {RATE_HELD:.0%} of {args.rate}/s": result.rate_ok}
    return exit_status(out, result.errors, goals)


if __name__ == "__main__":
    import sys

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
