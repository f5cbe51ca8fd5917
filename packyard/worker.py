"""Build workers over HTTP: ``packyard worker`` processes and the one embedded in ``serve``.

Both talk to the server through :class:`HttpWorkerAPI` — claim, heartbeat, log, source,
artifacts, finish — so a worker on another machine behaves exactly like the embedded one.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from packyard.builder.worker import Worker
from packyard.client import Client, qns, qpath
from packyard.store.tokens import ALL, Token


class HttpWorkerAPI:
    def __init__(self, client: Client, name: str | None = None) -> None:
        self.client = client
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def claim(self) -> dict | None:
        response = self.client.request("POST", "/api/v1/workers/claim", json={"worker": self.name})
        return None if response.status_code == 204 else response.json()

    def heartbeat(self, build_id: int) -> bool:
        return self.client.json("POST", f"/api/v1/builds/{build_id}/heartbeat", json={"worker": self.name})["cancel"]

    def log(self, build_id: int, data: bytes) -> None:
        self.client.request("POST", f"/api/v1/builds/{build_id}/log", params={"worker": self.name}, content=data)

    def source(self, build: dict, file: dict) -> BinaryIO:
        folder = build["path"].strip("/")
        path = f"{folder}/{file['path']}" if folder else file["path"]
        url = f"/api/v1/namespaces/{qns(build['namespace'])}/files/{qpath(path)}"
        response = self.client.request("GET", url, params={"revision": file["revision"]})
        return io.BytesIO(response.content)

    def submit(self, build_id: int, artifacts: list[Path], backend: str | None) -> dict:
        with ExitStack() as stack:
            files = [("files", (p.name, stack.enter_context(p.open("rb")))) for p in artifacts]
            data = {"worker": self.name, **({"backend": backend} if backend else {})}
            return self.client.json(
                "POST", f"/api/v1/builds/{build_id}/artifacts", data=data, files=files, timeout=None
            )

    def finish(self, build_id: int, state: str, error: str) -> dict:
        body = {"worker": self.name, "state": state, "error": error}
        return self.client.json("POST", f"/api/v1/builds/{build_id}/finish", json=body)


SHARED_SECRET_ENV = "PACKYARD_INTERNAL_WORKER_SECRET"
"""Set by ``serve --workers N`` for its processes (not a setting): their embedded workers'
token, which every process of that server must accept."""


class EmbeddedWorker:
    """One worker thread inside ``packyard serve``, authenticated by a process-lifetime token."""

    def __init__(self, app_state, url: str, cache: Path, sandbox: str) -> None:  # noqa: ANN001 - starlette State
        token = Token(id="embedded-worker", name="embedded worker", scope=ALL, role="admin", created="")
        secret = app_state.store.tokens.add_internal(token, os.environ.get(SHARED_SECRET_ENV))
        self.worker = Worker(
            # named for its process: the embedded workers of several servers share one queue
            HttpWorkerAPI(Client(url, secret), name=f"embedded-{socket.gethostname()}-{os.getpid()}"),
            cache=cache,
            sandbox=sandbox,
            wake=app_state.store.builds.wakeup,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.worker.run_forever, args=(self.stop,), name="packyard-worker", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.worker.wake.set()
        self.thread.join(timeout=5)
