"""Which process holds which TCP socket, read from ``/proc`` the way ``ss -p`` does (Linux).

For ``packyard serve --workers N``: how many listening sockets a port has and which process
holds each, and which process took each connection (``tests/scale``, ``bench/scale.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"
"""TCP states as ``/proc/net/tcp`` writes them."""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children of each of its threads, recursively)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += children - found
            found |= children
    return found


def sockets(port: int, state: str) -> set[str]:
    """The TCP sockets on local ``port`` in ``state``, named as their ``fd`` links read."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                found.add(f"socket:[{fields[9]}]")
    return found


def holders(port: int, state: str, pids: set[int]) -> dict[int, set[str]]:
    """Which of those sockets each of ``pids`` holds (only the processes that hold any)."""
    wanted = sockets(port, state)
    held = {}
    for pid in pids:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue  # gone meanwhile
        if links & wanted:
            held[pid] = links & wanted
    return held
