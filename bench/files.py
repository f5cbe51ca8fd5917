"""Namespace-file throughput and server memory, through the real HTTP API, on both backends.

Run from the repository root: ``python -m bench.files`` (``--help`` for the quick options).

For each backend (the embedded local directory, and S3 on a SeaweedFS this script starts)
it starts a real ``packyard serve`` and measures, over HTTP with keep-alive:

1. many small files put then got back, sequentially and from a thread pool (files/s);
2. one large file put as a stream and got back as a stream (MiB/s), its sha256 checked;
3. the server's peak RSS (``VmHWM``: the high-water mark since the process started) at
   startup, after the small files, after the large put and after the large get.

The issue's goal is that server memory does not grow with file size: the peak RSS of a
1 GiB put stays under 150 MB. A wrong hash, a failed request or a missed goal exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.table import Table

from bench.common import (
    CheckFailed,
    add_backend_option,
    admin_client,
    begin,
    check,
    chosen_backends,
    exit_status,
    failure,
    fmt,
    new_parser,
    parse,
    scratch,
)
from tests.support.procs import SeaweedFS, Server, s3_env

MiB = 1024 * 1024
MB = 1_000_000
GiB = 1024 * MiB
CHUNK = MiB
SMALL_SIZE = 1024
RSS_GOAL_MB = 150
NAMESPACE = "bench.files"
BUCKET = "packyard-bench"
BIG_TIMEOUT = httpx.Timeout(connect=10, read=900, write=900, pool=10)


@dataclass
class Result:
    """One backend's row. ``None`` means not measured (an earlier step failed)."""

    backend: str
    small_put_seq: float | None = None
    small_get_seq: float | None = None
    small_put_par: float | None = None
    small_get_par: float | None = None
    big_put: float | None = None
    big_get: float | None = None
    rss: dict[str, int] = field(default_factory=dict)
    step: str = "start"
    """What was running when an error happened."""
    error: str | None = None

    def goal_met(self) -> bool | None:
        """Peak RSS after the large put under the goal; None when that was not reached."""
        peak = self.rss.get("put")
        return None if peak is None else peak < RSS_GOAL_MB * MB


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes, as the kernel records it (never resets)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def pattern_chunks(total: int, seed: bytes) -> Iterator[bytes]:
    """``total`` bytes as 1 MiB chunks, each a random block stamped with its index.

    Every chunk differs (so the content hash is real work and no layer can dedupe or
    compress it away), yet the client spends almost no CPU making it, which matters on a
    small machine where client and server share the cores. Nothing is kept between chunks.
    """
    block = bytearray(seed)
    for index, offset in enumerate(range(0, total, CHUNK)):
        block[:8] = index.to_bytes(8, "little")
        yield bytes(block[: min(CHUNK, total - offset)])


def sha256_of(chunks: Iterator[bytes]) -> tuple[str, float]:
    """Digest of a stream and how fast it was made and hashed here (the client's ceiling)."""
    digest, size, start = hashlib.sha256(), 0, time.perf_counter()
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size / MiB / (time.perf_counter() - start)


def timed_rate(count: int, work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


class Bench:
    """The measurements against one running server, in the order that gives RSS meaning."""

    def __init__(self, server: Server, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.client = admin_client(
            server,
            timeout=httpx.Timeout(60),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def url(self, path: str) -> str:
        return f"/api/v1/namespaces/{NAMESPACE}/files/{path}"

    def rss(self) -> int:
        assert self.server.proc is not None
        return vm_hwm(self.server.proc.pid)

    def put_one(self, path: str, body: bytes) -> None:
        response = self.client.put(self.url(path), content=body)
        check(response.status_code == 201, f"PUT {path}: {response.status_code} {response.text[:200]}")
        check(
            response.json()["sha256"] == hashlib.sha256(body).hexdigest(),
            f"PUT {path}: sha256 differs",
        )

    def get_one(self, path: str, body: bytes) -> None:
        response = self.client.get(self.url(path))
        check(response.status_code == 200, f"GET {path}: {response.status_code}")
        check(response.content == body, f"GET {path}: bytes differ from what was put")

    def small(self, label: str, threads: int) -> tuple[float, float]:
        """Put then get ``--small`` distinct 1 KiB files; each call writes new blobs."""
        files = {f"small/{label}/{i:05d}.bin": os.urandom(SMALL_SIZE) for i in range(self.args.small)}

        def each(action: Callable[[str, bytes], None]) -> Callable[[], None]:
            def run() -> None:
                if threads <= 1:
                    for path, body in files.items():
                        action(path, body)
                    return
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda item: action(*item), files.items()))

            return run

        put_rate = timed_rate(len(files), each(self.put_one))
        get_rate = timed_rate(len(files), each(self.get_one))
        return put_rate, get_rate

    def big_put(self, size: int, seed: bytes, expected: str) -> float:
        """Stream ``size`` bytes up with a declared Content-Length, as curl -T or pip would."""
        start = time.perf_counter()
        response = self.client.put(
            self.url("big/blob.bin"),
            content=pattern_chunks(size, seed),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            timeout=BIG_TIMEOUT,
        )
        elapsed = time.perf_counter() - start
        check(response.status_code == 201, f"large PUT: {response.status_code} {response.text[:300]}")
        body = response.json()
        check(body["sha256"] == expected, f"large PUT: server sha256 {body['sha256']} != {expected}")
        check(body["size"] == size, f"large PUT: server size {body['size']} != {size}")
        return size / MiB / elapsed

    def big_get(self, size: int, expected: str) -> float:
        """Stream the large file back, hashing on the way as a careful client would."""
        digest, received = hashlib.sha256(), 0
        start = time.perf_counter()
        with self.client.stream("GET", self.url("big/blob.bin"), timeout=BIG_TIMEOUT) as response:
            check(response.status_code == 200, f"large GET: {response.status_code}")
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                received += len(chunk)
        elapsed = time.perf_counter() - start
        check(received == size, f"large GET: {received} bytes back, {size} sent")
        check(digest.hexdigest() == expected, "large GET: sha256 of the bytes back differs")
        check(
            response.headers.get("etag", "").strip('"') == expected,
            "large GET: ETag is not the sha256",
        )
        return size / MiB / elapsed

    def run(self, result: Result, size: int, seed: bytes, expected: str) -> None:
        result.step = "baseline"
        result.rss["base"] = self.rss()
        result.step = "small files, sequential"
        result.small_put_seq, result.small_get_seq = self.small("seq", 1)
        if self.args.threads > 1:
            result.step = f"small files, {self.args.threads} threads"
            result.small_put_par, result.small_get_par = self.small(f"t{self.args.threads}", self.args.threads)
        result.rss["small"] = self.rss()
        result.step = "large put"
        result.big_put = self.big_put(size, seed, expected)
        result.rss["put"] = self.rss()
        result.step = "large get"
        result.big_get = self.big_get(size, expected)
        result.rss["get"] = self.rss()
        result.step = "done"


def run_backend(backend: str, args: argparse.Namespace, root: Path, size: int, seed: bytes, expected: str) -> Result:
    """Fresh processes per backend, so each row's VmHWM belongs to that backend alone."""
    result = Result(backend)
    env = {"PACKYARD_MAX_UPLOAD_BYTES": str(max(2 * GiB, size + MiB))}
    data = root / backend / "data"
    with contextlib.ExitStack() as stack:
        if backend == "s3":
            weed = SeaweedFS(root / "seaweedfs")
            stack.callback(weed.stop)  # before start: a failed start still leaves a process
            weed.start()
            env.update(s3_env(weed, BUCKET, prefix="bench"))
        server = Server(data, env)
        stack.callback(server.stop)
        try:
            server.start()
            bench = Bench(server, args)  # after start: the port is chosen there
            stack.callback(bench.client.close)
            bench.run(result, size, seed, expected)
        except (CheckFailed, httpx.HTTPError, RuntimeError, OSError, ValueError, KeyError) as exc:
            # Up to 10 s for the state: a server killed for its memory may still be dying.
            result.error = failure(result.step, exc, server, wait=10)
    return result


def mb(value: int | None) -> str:
    return "—" if value is None else f"{value / MB:,.0f}"


def render(results: list[Result], args: argparse.Namespace, size: int) -> Table:
    big = f"{size // GiB} GiB" if size % GiB == 0 else f"{size // MiB} MiB"
    par = f"{args.threads} thr"
    table = Table(title=f"packyard namespace files — {args.small} × 1 KiB, 1 × {big}")
    table.add_column("backend")
    table.add_column("small put\nfiles/s seq", justify="right")
    table.add_column("small get\nfiles/s seq", justify="right")
    if args.threads > 1:
        table.add_column(f"small put\nfiles/s {par}", justify="right")
        table.add_column(f"small get\nfiles/s {par}", justify="right")
    table.add_column(f"{big} put\nMiB/s", justify="right")
    table.add_column(f"{big} get\nMiB/s", justify="right")
    table.add_column("RSS MB\nbaseline", justify="right")
    table.add_column("RSS MB\nafter small", justify="right")
    table.add_column("RSS MB\nafter put", justify="right")
    table.add_column("RSS MB\nafter get", justify="right")
    table.add_column(f"put peak\n< {RSS_GOAL_MB} MB", justify="center")
    for r in results:
        goal = r.goal_met()
        row = [r.backend, fmt(r.small_put_seq), fmt(r.small_get_seq)]
        if args.threads > 1:
            row += [fmt(r.small_put_par), fmt(r.small_get_par)]
        row += [fmt(r.big_put, 1), fmt(r.big_get, 1)]
        row += [mb(r.rss.get(k)) for k in ("base", "small", "put", "get")]
        row.append(
            "[red]ERROR[/]" if r.error else "—" if goal is None else "[green]PASS[/]" if goal else "[red]FAIL[/]"
        )
        table.add_row(*row)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.files", __doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large file (default 1024)")
    parser.add_argument("--small", type=int, default=1000, help="number of 1 KiB files (default 1000)")
    parser.add_argument(
        "--threads",
        type=int,
        default=8,
        help="client threads for the second small run; <=1 skips it (default 8)",
    )
    add_backend_option(parser)
    return parse(parser, argv, 1, "--size-mib", "--small")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = args.size_mib * MiB
    seed = os.urandom(CHUNK)
    expected, client_rate = sha256_of(pattern_chunks(size, seed))
    out = begin(180, "throughput shares the cores", f"client generate+sha256 {client_rate:,.0f} MiB/s on one core")
    threads = f" then {args.threads} threads" if args.threads > 1 else ""
    out.print(
        f"method: one httpx.Client with keep-alive; small files {SMALL_SIZE} B random, "
        f"sequential{threads}; large file streamed in {CHUNK // MiB} MiB chunks with "
        "Content-Length, got back streamed and sha256-checked; "
        "RSS = server VmHWM (peak since start), 1 MB = 10^6 bytes"
    )
    results: list[Result] = []
    with scratch("files") as tmp:
        for backend in chosen_backends(args):
            out.print(f"[dim]running {backend} …[/]")
            results.append(run_backend(backend, args, tmp, size, seed, expected))
    out.print(render(results, args, size))
    errors = []
    for r in results:
        if r.error:
            errors.append(f"{r.backend}: {r.error}")
        elif r.goal_met() is False:
            errors.append(f"{r.backend}: large-put peak RSS {mb(r.rss['put'])} MB ≥ goal {RSS_GOAL_MB} MB")
    return exit_status(out, errors)


if __name__ == "__main__":
    sys.exit(main())
