"""Git sync of a generated 10,000-file repository through the real HTTP API, on both backends.

Run from the repository root: ``python -m bench.sync`` (``--help`` for the options).

It writes a deterministic git repository (mostly small text files in nested folders, a
few of 10–100 KB; ``git fast-import``, so it takes about a second) and, for each backend
(the embedded local directory, and S3 on a SeaweedFS this script starts), a real
``packyard serve``. Against a ``file://`` URL of the repository it measures:

1. the first sync (every file added);
2. a no-op re-sync — goal: at most 2 s and zero blobs written — and the dry-run plan of
   the same no-op;
3. a re-sync after one file changed in a new commit — goal: exactly one blob written and
   one new revision.

Blobs written are taken from the response's ``blobs_written`` and checked independently
by counting the store's blobs before and after (files under ``{data}/blobs/blobs``, or
objects under the S3 prefix); revisions are counted in ``file_revisions`` of the catalog.
A missed goal or a failed check exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
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
    add_backend_option,
    admin_client,
    begin,
    check,
    chosen_backends,
    exit_status,
    failure,
    new_parser,
    parse,
    scratch,
)
from tests.support.procs import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedFS, Server, s3_env

NAMESPACE = "bench.sync"
BUCKET = "packyard-bench"
S3_PREFIX = "bench-sync"
BRANCH = "main"
NOOP_GOAL_S = 2.0
SEED = 20240604
SYNC_TIMEOUT = httpx.Timeout(connect=10, read=3600, write=60, pool=10)
WORDS = [
    *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma", "omega"),
    *("packyard", "namespace", "revision", "blob", "sync", "mirror", "commit", "branch", "import"),
    *("export", "config", "value", "table", "index", "schema", "flow", "task", "trigger", "input"),
    *("output", "retry", "timeout", "cron", "label", "owner", "region", "cluster", "service"),
]
MEDIUM_EVERY = 200
"""One file in this many is 10–100 KB; the rest are 100 B–2 KB (a few MB in all)."""


@dataclass
class Repo:
    """The generated repository and what the benchmark needs to know about it."""

    path: Path
    files: int
    total_bytes: int
    changed_path: str
    """The small file the third step rewrites."""
    seconds: float

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()


@dataclass
class Result:
    """One backend's figures; a missing key means that step was not reached."""

    backend: str
    values: dict[str, float | int] = field(default_factory=dict)
    step: str = "start"
    error: str | None = None


@dataclass(frozen=True)
class Row:
    """A line of the table: a figure, how to show it, and its goal (if it has one)."""

    key: str
    label: str
    fmt: Callable[[float | int], str]
    goal: str = ""
    passes: Callable[[float | int, int], bool] | None = None
    """``passes(value, files)``: True when the goal (or correctness check) is met."""


def seconds(value: float | int) -> str:
    return f"{value:.2f} s"


def count(value: float | int) -> str:
    return f"{int(value):,}"


ROWS = (
    Row("first_wall", "first sync: time (HTTP)", seconds),
    Row("first_server", "first sync: server duration", seconds),
    Row("first_added", "first sync: added", count, "= files", lambda v, n: v == n),
    Row("first_blobs", "first sync: blobs_written", count, "= files", lambda v, n: v == n),
    Row("first_store", "first sync: blobs in store (delta)", count, "= files", lambda v, n: v == n),
    Row("noop_wall", "no-op re-sync: time (HTTP)", seconds, f"<= {NOOP_GOAL_S:g} s", lambda v, n: v <= NOOP_GOAL_S),
    Row("noop_server", "no-op re-sync: server duration", seconds),
    Row("noop_unchanged", "no-op re-sync: unchanged", count, "= files", lambda v, n: v == n),
    Row("noop_blobs", "no-op re-sync: blobs_written", count, "0", lambda v, n: v == 0),
    Row("noop_store", "no-op re-sync: blobs in store (delta)", count, "0", lambda v, n: v == 0),
    Row("noop_revisions", "no-op re-sync: new revisions", count, "0", lambda v, n: v == 0),
    Row("dry_wall", "no-op dry-run plan: time (HTTP)", seconds),
    Row("dry_server", "no-op dry-run plan: server duration", seconds),
    Row("dry_unchanged", "no-op dry-run plan: unchanged", count, "= files", lambda v, n: v == n),
    Row("dry_store", "no-op dry-run plan: blobs in store (delta)", count, "0", lambda v, n: v == 0),
    Row("one_wall", "one file changed: time (HTTP)", seconds),
    Row("one_server", "one file changed: server duration", seconds),
    Row("one_updated", "one file changed: updated", count, "1", lambda v, n: v == 1),
    Row("one_unchanged", "one file changed: unchanged", count, "= files - 1", lambda v, n: v == n - 1),
    Row("one_blobs", "one file changed: blobs_written", count, "1", lambda v, n: v == 1),
    Row("one_store", "one file changed: blobs in store (delta)", count, "1", lambda v, n: v == 1),
    Row("one_revisions", "one file changed: new revisions", count, "1", lambda v, n: v == 1),
)


# -- the repository -------------------------------------------------------------------------


def _text(rng: random.Random, size: int, header: str) -> bytes:
    """``size`` bytes of word-salad text starting with a line that makes the file unique.

    Unique contents matter: identical files would share one blob, and then "blobs
    written" could not be compared with "files added".
    """
    words: list[str] = [header]
    length = len(header)
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words).encode()[:size]


def _layout(rng: random.Random, files: int) -> list[tuple[str, int]]:
    """(path, size) of every file in nested folders; sizes log-uniform in their range."""
    out = []
    for i in range(files):
        depth = rng.randint(1, 4)
        folders = [f"{('src', 'docs', 'flows', 'lib', 'conf')[rng.randrange(5)]}{rng.randrange(4)}"]
        folders += [f"d{rng.randrange(8)}" for _ in range(depth - 1)]
        low, high = (10_000, 100_000) if i % MEDIUM_EVERY == MEDIUM_EVERY - 1 else (100, 2_000)
        size = int(round(low * (high / low) ** rng.random()))
        ext = rng.choice(("txt", "yml", "py", "md", "sql"))
        out.append(("/".join([*folders, f"f{i:05d}.{ext}"]), size))
    return out


def _fast_import(repo: Path, commands: bytes) -> None:
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=commands, check=True)


def _commit(message: str, stamp: int, parent: bool) -> bytes:
    """A fast-import commit header with fixed identity and time (same seed, same sha)."""
    msg = message.encode()
    who = f"bench <bench@packyard.invalid> {stamp} +0000"
    head = f"commit refs/heads/{BRANCH}\nauthor {who}\ncommitter {who}\ndata {len(msg)}\n".encode() + msg + b"\n"
    if parent:
        head += f"from refs/heads/{BRANCH}^0\n".encode()
    return head


def _blob(mark: int, data: bytes) -> bytes:
    return f"blob\nmark :{mark}\ndata {len(data)}\n".encode() + data + b"\n"


def make_repo(path: Path, files: int, seed: int) -> Repo:
    """A bare repository with one commit of ``files`` files, written by ``git fast-import``."""
    start = time.perf_counter()
    rng = random.Random(seed)
    layout = _layout(rng, files)
    subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(path)], check=True)
    parts: list[bytes] = []
    total = 0
    for mark, (name, size) in enumerate(layout, start=1):
        data = _text(rng, size, f"# {name} seed {seed}\n")
        total += len(data)
        parts.append(_blob(mark, data))
    parts.append(_commit(f"{files} generated files", 1_700_000_000, parent=False))
    parts += [f"M 100644 :{mark} {name}\n".encode() for mark, (name, _) in enumerate(layout, start=1)]
    _fast_import(path, b"".join(parts))
    changed = next(name for name, size in layout if size < 10_000)
    return Repo(path, files, total, changed, time.perf_counter() - start)


def change_one_file(repo: Repo) -> None:
    """Commit new bytes for one file on top of the branch (nothing else changes)."""
    data = f"# {repo.changed_path} rewritten by the benchmark\n".encode() * 8
    commands = _blob(1, data) + _commit("change one file", 1_700_000_100, parent=True)
    commands += f"M 100644 :1 {repo.changed_path}\n".encode()
    _fast_import(repo.path, commands)


# -- one backend ----------------------------------------------------------------------------


class Bench:
    """The three steps against one running server, each counted from the outside too."""

    def __init__(self, server: Server, repo: Repo, count_blobs: Callable[[], int]) -> None:
        self.server = server
        self.repo = repo
        self.count_blobs = count_blobs
        self.client = admin_client(server, timeout=SYNC_TIMEOUT)

    def revisions(self) -> int:
        """Rows in ``file_revisions`` for the namespace, read straight from the catalog."""
        catalog = self.server.data / "catalog.db"
        with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT count(*) FROM file_revisions WHERE namespace = ?", (NAMESPACE,)).fetchone()
        return int(row[0])

    def latest_revision(self, path: str) -> int:
        catalog = self.server.data / "catalog.db"
        with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT max(revision) FROM file_revisions WHERE namespace = ? AND path = ?", (NAMESPACE, path)
            ).fetchone()
        return int(row[0] or 0)

    def sync(self, *, dry_run: bool = False) -> tuple[dict, float]:
        body = {"url": self.repo.url, "dry_run": dry_run}
        start = time.perf_counter()
        response = self.client.post(f"/api/v1/namespaces/{NAMESPACE}/sync", json=body)
        wall = time.perf_counter() - start
        check(response.status_code == 200, f"sync: HTTP {response.status_code} {response.text[:300]}")
        return response.json(), wall

    def step(self, result: Result, name: str, *, dry_run: bool = False) -> dict:
        """One sync, recording its times, counts and the store/catalog deltas under ``name``."""
        blobs, revisions = self.count_blobs(), self.revisions()
        body, wall = self.sync(dry_run=dry_run)
        v = result.values
        v[f"{name}_wall"] = wall
        v[f"{name}_server"] = float(body["duration"])
        for status, n in body["counts"].items():
            v[f"{name}_{status}"] = n
        v[f"{name}_blobs"] = int(body["blobs_written"])
        v[f"{name}_store"] = self.count_blobs() - blobs
        v[f"{name}_revisions"] = self.revisions() - revisions
        return body

    def run(self, result: Result) -> None:
        files = self.repo.files
        result.step = "first sync"
        first = self.step(result, "first")
        check(first["counts"]["added"] == files, f"first sync added {first['counts']} of {files} files")
        result.step = "no-op re-sync"
        self.step(result, "noop")
        result.step = "no-op dry run"
        self.step(result, "dry", dry_run=True)
        result.step = "one file changed"
        change_one_file(self.repo)
        changed = self.step(result, "one")
        check(changed["commit"] != first["commit"], "the re-sync after the change saw the old commit")
        check(
            self.latest_revision(self.repo.changed_path) == 2,
            f"{self.repo.changed_path} has no revision 2 after the change",
        )
        updated = [e["path"] for e in changed["entries"] if e["status"] == "updated"]
        check(updated in ([], [self.repo.changed_path]), f"updated paths {updated[:5]} are not the changed file")
        result.step = "done"


def local_blob_counter(data: Path) -> Callable[[], int]:
    root = data / "blobs" / "blobs"
    return lambda: sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def s3_blob_counter(weed: SeaweedFS) -> Callable[[], int]:
    from minio import Minio

    client = Minio(f"127.0.0.1:{weed.s3_port}", S3_ACCESS_KEY, S3_SECRET_KEY, secure=False)

    def counter() -> int:
        objects = client.list_objects(BUCKET, prefix=f"{S3_PREFIX}/blobs/", recursive=True)
        return sum(1 for _ in objects)

    return counter


def run_backend(backend: str, root: Path, files: int, seed: int) -> Result:
    """Fresh repository, server (and SeaweedFS) per backend; all stopped even on failure."""
    result = Result(backend)
    data = root / backend / "data"
    server: Server | None = None
    with contextlib.ExitStack() as stack:
        try:
            result.step = "generating the repository"
            repo = make_repo(root / backend / "repo.git", files, seed)
            result.values["repo_seconds"] = repo.seconds
            result.values["repo_bytes"] = repo.total_bytes
            env: dict[str, str] = {}
            counter = local_blob_counter(data)
            if backend == "s3":
                result.step = "starting SeaweedFS"
                weed = SeaweedFS(root / backend / "seaweedfs")
                stack.callback(weed.stop)  # before start: a failed start still leaves a process
                weed.start()
                env.update(s3_env(weed, BUCKET, prefix=S3_PREFIX))
                counter = s3_blob_counter(weed)
            result.step = "starting packyard serve"
            server = Server(data, env)
            stack.callback(server.stop)
            server.start()
            bench = Bench(server, repo, counter)
            stack.callback(bench.client.close)
            bench.run(result)
        except (
            CheckFailed,
            httpx.HTTPError,
            subprocess.SubprocessError,
            RuntimeError,
            OSError,
            ValueError,
            KeyError,
        ) as exc:
            result.error = failure(result.step, exc, server)
    return result


# -- output ---------------------------------------------------------------------------------


def verdicts(results: list[Result], files: int) -> list[str]:
    """Every missed goal or failed check, as a sentence (empty when all passed)."""
    missed = []
    for r in results:
        if r.error:
            missed.append(f"{r.backend}: {r.error}")
        for row in ROWS:
            value = r.values.get(row.key)
            if row.passes is not None and value is not None and not row.passes(value, files):
                missed.append(f"{r.backend}: {row.label} is {row.fmt(value)}, goal {row.goal}")
    return missed


def render(results: list[Result], files: int) -> Table:
    table = Table(title=f"packyard git sync — {files:,} files, file:// URL, through the HTTP API")
    table.add_column("figure")
    table.add_column("goal", justify="center")
    for r in results:
        table.add_column(r.backend, justify="right")
    for row in ROWS:
        cells = [row.label, row.goal]
        for r in results:
            value = r.values.get(row.key)
            if value is None:
                cells.append("[red]ERROR[/]" if r.error else "—")
            elif row.passes is None:
                cells.append(row.fmt(value))
            else:
                ok = row.passes(value, files)
                cells.append(f"{row.fmt(value)} {'[green]PASS[/]' if ok else '[red]FAIL[/]'}")
        table.add_row(*cells)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser("bench.sync", __doc__)
    parser.add_argument("--files", type=int, default=10_000, help="files in the generated repository (default 10000)")
    add_backend_option(parser)
    parser.add_argument("--seed", type=int, default=SEED, help=f"repository generator seed (default {SEED})")
    return parse(parser, argv, 2, "--files")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = begin(160)
    results: list[Result] = []
    with scratch("sync") as tmp:
        for backend in chosen_backends(args):
            out.print(f"[dim]running {backend} …[/]")
            results.append(run_backend(backend, tmp, args.files, args.seed))
    made = next((r.values for r in results if "repo_bytes" in r.values), None)
    if made:
        out.print(
            f"repository: {args.files:,} files, {made['repo_bytes'] / 1e6:.1f} MB "
            f"(1 in {MEDIUM_EVERY} of 10–100 KB, the rest 100 B–2 KB, seed {args.seed}), "
            f"generated in {made['repo_seconds']:.2f} s; "
            "time (HTTP) = client wall time of the POST, server duration = the response's duration"
        )
    out.print(render(results, args.files))
    return exit_status(out, verdicts(results, args.files))


if __name__ == "__main__":
    sys.exit(main())
