"""What a build worker needs from the server. Workers never open the catalog or the blob
store: they claim jobs, send heartbeats and logs, read sources and hand in artifacts through
this interface, which ``packyard`` implements over HTTP — for remote workers and for the
embedded one alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol


class WorkerAPI(Protocol):
    def claim(self) -> dict | None:
        """The next queued build, now held by this worker, or None."""
        ...

    def heartbeat(self, build_id: int) -> bool:
        """Report liveness; True when the build has been cancelled."""
        ...

    def log(self, build_id: int, data: bytes) -> None: ...

    def source(self, build: dict, file: dict) -> BinaryIO:
        """One snapshot file's bytes (at the snapshot's revision)."""
        ...

    def submit(self, build_id: int, artifacts: list[Path], backend: str | None) -> dict:
        """Hand in the sdist and wheel; the server checks and publishes them (or fails the build)."""
        ...

    def finish(self, build_id: int, state: str, error: str) -> dict:
        """End the build as failed or cancelled."""
        ...
