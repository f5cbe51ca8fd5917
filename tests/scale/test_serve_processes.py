"""``packyard serve --workers 2``: the process model (``packyard/processes.py``).

Each process listens on a socket of its own in the port's ``SO_REUSEPORT`` group, and the
kernel spreads connections over them; the parent replaces a process that dies, stops them
all on SIGTERM, and when the parent itself is killed no process is left serving the port.
A port that anything else holds — even a socket that would admit ours into its group —
fails the start with one line. (Coherence between the processes: ``test_scale_out.py``.)

Sockets and their owners are read from ``/proc`` (``tests/support/sockets.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Server, free_port, port_free, stop_process
from tests.support.sockets import ESTABLISHED, LISTEN, descendants, holders, sockets


def listeners(server: Server) -> dict[int, set[str]]:
    assert server.proc is not None
    return holders(server.port, LISTEN, descendants(server.proc.pid))


def eventually(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def two_processes(root: Path) -> Server:
    server = Server(root / "data", {"PACKYARD_EMBEDDED_WORKER": "false"}, args=["--workers", "2"])
    server.start()
    # /healthz answers as soon as one process does; the parent says when both are up
    eventually(lambda: "2 server processes ready" in server.log_path.read_text(errors="replace"), "ready line")
    return server


def ours(pid: int) -> bool:
    """Still one of the server's processes (not a stranger that reused the number)."""
    try:
        return alive(pid) and sys.executable in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = two_processes(tmp_path)
    assert server.proc is not None
    started = descendants(server.proc.pid)
    try:
        yield server
    finally:
        pids = started | (descendants(server.proc.pid) if server.proc is not None else set())
        if server.proc is not None:
            stop_process(server.proc, 15)
        for pid in pids:  # never leave a process of ours behind, even when a test failed
            if ours(pid):
                os.kill(pid, signal.SIGKILL)


def test_each_process_listens_on_its_own_socket_and_a_dead_one_is_replaced(server: Server) -> None:
    first = listeners(server)
    # two listening sockets on the port, one in each process (not one socket both inherited)
    assert len(sockets(server.port, LISTEN)) == 2
    assert len(first) == 2 and all(len(held) == 1 for held in first.values()), first
    assert len(set.union(*first.values())) == 2, first
    # 32 connections at once, as a load balancer's pool or wrk opens them: both processes take some
    conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
    try:
        for conn in conns:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        for conn in conns:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        taken = holders(server.port, ESTABLISHED, set(first))
        assert set(taken) == set(first), taken
        assert sum(len(held) for held in taken.values()) == 32, taken
    finally:
        for conn in conns:
            conn.close()

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(listeners(server)) == 2 and victim not in listeners(server), "a replacement listens")
    survivor = (set(first) - {victim}).pop()
    assert survivor in listeners(server)
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert f"server process {victim} ended (signal SIGKILL)" in log, log[-2000:]

    # SIGTERM to the parent alone: it stops every process and exits 0; nothing keeps the port
    assert server.proc is not None
    everyone = descendants(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    server.proc = None
    eventually(lambda: not any(alive(pid) for pid in everyone), "every process ends", 15)
    assert port_free(server.port)


def test_no_process_outlives_a_killed_parent(server: Server) -> None:
    assert server.proc is not None
    serving = set(listeners(server))
    assert len(serving) == 2
    server.proc.kill()  # SIGKILL: the parent can forward nothing
    server.proc.wait()
    server.proc = None
    eventually(lambda: not any(alive(pid) for pid in serving), "the processes end with their parent", 30)
    eventually(lambda: port_free(server.port), "the port is free again", 30)


def test_a_port_held_with_so_reuseport_is_refused(tmp_path: Path) -> None:
    """A socket that would admit ours into its ``SO_REUSEPORT`` group (another server of the
    same user) still makes the port busy: two servers never silently share a port."""
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env.update(PACKYARD_DATA=str(tmp_path / "data"), PACKYARD_PORT=str(port), PACKYARD_ADMIN_TOKEN="t")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "packyard", "serve", "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.strip() == f"packyard serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "serving on" not in done.stdout
