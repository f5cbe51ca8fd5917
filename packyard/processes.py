"""The processes of ``packyard serve --workers N``: one listening socket each, one parent that keeps them.

Why not uvicorn's own ``workers=N``: there, every process waits on one shared listening
socket, and whichever process's event loop wakes first accepts every connection waiting in
the backlog. A client that opens its connections in a burst and keeps them alive (wrk, a
load balancer's pool, pip's session) was measured landing them all, or nearly all, on one
process while the other sat idle, so two processes served no more than one. Here each
process binds its own socket with ``SO_REUSEPORT``, and the kernel spreads new connections
over the sockets by a hash of the connection's addresses: an even split on average,
whatever the processes are doing when the connections arrive.

The parent serves nothing. It checks that the port is free before any process starts (a
port held by anyone, even another packyard with ``SO_REUSEPORT``, fails the start with one
line: two servers must never silently share a port), starts the processes, replaces one
that dies (and gives up with a clear message when they keep dying, or when one dies before
it is ready), and on SIGTERM or SIGINT stops them all gracefully (a second signal kills
them). A process whose parent disappears (SIGKILL) stops itself (``PR_SET_PDEATHSIG``), so
no orphan keeps the port.

Every process builds its own app from the environment (``create_asgi_from_env``), so each
has its own caches (kept coherent through the catalog, ``store/generations.py``), its own
embedded worker (with the token the parent put in the environment, which every process
accepts), and the guarded HTTP protocol (``packyard/protocol.py``) with the same limits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

log = logging.getLogger("packyard.serve")

BACKLOG = 2048
"""uvicorn's default listen backlog."""
READY_SECONDS = 120.0
"""How long a process may take to import packyard and open the store before the start fails."""
RESTARTS = 5
RESTART_WINDOW = 60.0
"""More than ``RESTARTS`` replacements within ``RESTART_WINDOW`` seconds: give up (a crash loop)."""
PR_SET_PDEATHSIG = 1


class StartFailed(Exception):
    """The processes could not be started or kept running; the message says why, in one line."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> int:
    """Bind the port without ``SO_REUSEPORT`` (and release it): fails if anything holds it.

    A group of ``SO_REUSEPORT`` sockets admits any socket of the same user that sets the
    option too, so without this check a second ``serve --workers N`` on a busy port would
    quietly take half its connections. Returns the port (the one chosen, for port 0).
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return probe.getsockname()[1]


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening socket of the port's ``SO_REUSEPORT`` group: this process's share of the connections."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the parent goes (even by SIGKILL); exit now if it is gone already."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)


def serve_one(listen: Listen, parent: int, ready: Connection) -> None:
    """One server process (spawned): its own socket, its own app, uvicorn's server loop."""
    _die_with_parent(parent)
    import uvicorn

    from packyard.app import create_asgi_from_env
    from packyard.protocol_env import uvicorn_options
    from packyard.settings import get_settings

    config = uvicorn.Config(
        create_asgi_from_env,
        factory=True,
        host=listen.host,
        port=listen.port,
        **uvicorn_options(get_settings()),
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            # bound only now, with the app loaded: a socket in the group gets its share of new
            # connections at once, and they would wait in its backlog while packyard imports
            await super().startup([reuseport_socket(listen.host, listen.port)])
            if self.started:  # the app is up and the socket accepts: tell the parent
                ready.send(os.getpid())
                ready.close()

    Server(config).run()


@dataclass
class Child:
    process: BaseProcess
    ready: Connection
    is_ready: bool = False


@dataclass
class Supervisor:
    """Starts ``count`` server processes, keeps them running, stops them on a signal."""

    listen: Listen
    count: int
    children: list[Child] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")

    def spawn(self) -> Child:
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=serve_one, args=(self.listen, os.getpid(), send), name="packyard-serve", daemon=False
        )
        process.start()
        send.close()  # the child holds the other end: EOF here when it dies before it is ready
        return Child(process, receive)

    def run(self) -> int:
        """Serve until a signal; the exit status (0 after a signal, 1 when the processes could not be kept)."""
        wake_r, wake_w = socket.socketpair()
        for end in (wake_r, wake_w):
            end.setblocking(False)
        previous = signal.set_wakeup_fd(wake_w.fileno())
        handlers = {sig: signal.signal(sig, lambda sig, _frame: self.signals.append(sig)) for sig in _STOP}
        try:
            return self._loop(wake_r)
        finally:
            self._stop_all()
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()

    def _loop(self, wake: socket.socket) -> int:
        self.children = [self.spawn() for _ in range(self.count)]
        deadline = time.monotonic() + READY_SECONDS
        announced = False
        while True:
            if self.signals:
                log.info("received %s: stopping %d server processes", signal.Signals(self.signals[0]).name, self.count)
                return 0
            if not announced and all(child.is_ready for child in self.children):
                pids = ", ".join(str(child.process.pid) for child in self.children)
                log.info("%d server processes ready (pids %s)", self.count, pids)
                announced = True
            waiting = [wake, *(c.process.sentinel for c in self.children)]
            waiting += [c.ready for c in self.children if not c.is_ready]
            timeout = None if announced else max(0.0, deadline - time.monotonic())
            woken = wait(waiting, timeout=timeout)
            if not woken and not announced:
                raise StartFailed(f"the server processes were not ready within {READY_SECONDS:g} s")
            if wake in woken:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(64)
            for i, child in enumerate(self.children):
                if not child.is_ready and child.ready in woken:
                    try:
                        child.ready.recv()
                        child.is_ready = True
                    except (EOFError, OSError):
                        child.process.join()  # it closed its end without a word: it is ending
                if child.process.sentinel in woken or not child.process.is_alive():
                    child.process.join()
                    if self.signals:
                        break  # stopping anyway: a process that ended on the signal is no failure
                    self.children[i] = self._replace(child)

    def _replace(self, child: Child) -> Child:
        """A new process for one that ended: unless it never got ready, or they keep ending."""
        code = child.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        if not child.is_ready:
            raise StartFailed(f"a server process ended before it was ready ({how}); see the lines above")
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
        if len(self.restarts) > RESTARTS:
            raise StartFailed(
                f"server processes ended {len(self.restarts)} times within {RESTART_WINDOW:g} s "
                f"(last: pid {child.process.pid}, {how}); giving up"
            )
        replacement = self.spawn()
        log.warning(
            "server process %d ended (%s); started %d in its place", child.process.pid, how, replacement.process.pid
        )
        return replacement

    def _stop_all(self) -> None:
        """SIGTERM to every process (uvicorn's graceful shutdown), then wait; a second signal kills them."""
        seen = len(self.signals)
        for child in self.children:
            if child.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)
        for child in self.children:
            while child.process.is_alive():
                child.process.join(0.2)
                if len(self.signals) > seen:
                    child.process.kill()
            child.ready.close()


_STOP = (signal.SIGTERM, signal.SIGINT)


def run(listen: Listen, count: int, announce: Callable[[int], None]) -> int:
    """Check the port (``announce`` it), then serve with ``count`` processes until a signal.

    The exit status: 0 after a signal, 1 when the processes could not be started or kept
    running, with the reason as one line on stderr.
    """
    try:
        port = check_port_free(listen.host, listen.port)
        announce(port)
        return Supervisor(replace(listen, port=port), count).run()
    except StartFailed as exc:
        print(f"packyard serve: {exc}", file=sys.stderr, flush=True)
        return 1
