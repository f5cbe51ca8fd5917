"""A build worker: claim a job, materialise its source, build it in the sandbox, hand in.

Everything goes through :class:`builder.api.WorkerAPI`. The build runs in its own process
group with a timeout; output streams to the server's log while it runs (capped, so a build
that prints forever cannot fill a disk), heartbeats carry cancellation back, and any way a
build can end — crash, hang, cancel, bad artifacts — ends the job with its log kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from packyard.builder.api import WorkerAPI
from packyard.builder.sandbox import build_env, driver_command
from packyard.store.artifacts import inspect
from packyard.store.errors import PackyardError

LOG_CAP = 4 * 1024 * 1024
TICK = 1.0
log = logging.getLogger("packyard.worker")


class BuildFailed(Exception):
    """The build ended without artifacts to publish; the message is the build's error."""


def backend_of(wheel: Path) -> str | None:
    """``setuptools 75.1.0`` / ``hatchling 1.25.0``, from the wheel's WHEEL ``Generator`` line."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/WHEEL"):
                for line in archive.read(name).decode("utf-8", "replace").splitlines():
                    if line.lower().startswith("generator:"):
                        return line.split(":", 1)[1].strip().replace("(", "").replace(")", "")
    return None


def check_artifacts(out: Path) -> list[Path]:
    """Exactly one sdist and one wheel whose names and versions agree with each other."""
    files = sorted(p for p in out.iterdir() if p.is_file())
    wheels = [p for p in files if p.name.endswith(".whl")]
    sdists = [p for p in files if p.name.endswith((".tar.gz", ".zip"))]
    if len(wheels) != 1 or len(sdists) != 1 or len(files) != 2:
        raise BuildFailed(f"the build must produce one sdist and one wheel, got {[p.name for p in files]}")
    found = []
    for path in (sdists[0], wheels[0]):
        with path.open("rb") as stream:
            try:
                found.append(inspect(stream, path.name, path.stat().st_size))
            except PackyardError as exc:
                raise BuildFailed(f"{path.name}: {exc.message}") from exc
    if (found[0].project, found[0].version) != (found[1].project, found[1].version):
        raise BuildFailed(
            f"the sdist is {found[0].project} {found[0].version} but the wheel is {found[1].project} {found[1].version}"
        )
    return [sdists[0], wheels[0]]


class _LogPump:
    """Collects the build's output and ships it in batches; drops what is past the cap."""

    def __init__(self, api: WorkerAPI, build_id: int) -> None:
        self.api, self.build_id = api, build_id
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self.accepted = 0
        """Build output taken so far (sent or buffered): what the cap counts."""
        self.truncated = False

    def write(self, data: bytes) -> None:
        with self._lock:
            room = LOG_CAP - self.accepted
            if room <= 0:
                if not self.truncated:
                    self.truncated = True
                    self._buffer += b"\n[packyard: log truncated; the build kept printing]\n"
                return
            self._buffer += data[:room]
            self.accepted += min(len(data), room)

    def note(self, text: str) -> None:
        """packyard's own lines (header, outcome): kept even past the cap, so the log says why."""
        with self._lock:
            self._buffer += text.encode()

    def flush(self) -> None:
        with self._lock:
            data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            self.api.log(self.build_id, data)


def _read(stream, pump: _LogPump) -> None:  # noqa: ANN001 - a pipe
    for chunk in iter(lambda: stream.read1(65536), b""):
        pump.write(chunk)


def run_build(build: dict, api: WorkerAPI, *, cache: Path, sandbox: str = "auto") -> dict:
    """Run one claimed build to its end; returns the final build record from the server."""
    with _Heartbeat(api, build["id"]) as beat:
        return _run_build(build, api, cache, sandbox, beat)


def _run_build(build: dict, api: WorkerAPI, cache: Path, sandbox: str, beat: _Heartbeat) -> dict:
    build_id = build["id"]
    settings = build["settings"]
    pump = _LogPump(api, build_id)
    (cache / "work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"build-{build_id}-", dir=cache / "work"))
    try:
        src, out = work / "src", work / "out"
        src.mkdir()
        out.mkdir()
        for f in build["snapshot"]:
            target = src / f["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with api.source(build, f) as stream, target.open("wb") as dest:
                while chunk := stream.read(1024 * 1024):
                    digest.update(chunk)
                    dest.write(chunk)
            if digest.hexdigest() != f["sha256"]:
                raise BuildFailed(f"source file {f['path']} does not match its snapshot hash")
        command, installer, used = driver_command(work, src, out, cache, settings.get("installer", "auto"), sandbox)
        env = build_env(
            work, cache, index_url=settings["index_url"], source_date_epoch=build["source_date_epoch"], sandbox=used
        )
        pump.note(
            f"[packyard] build {build_id}: {build['namespace']}:{build['path'] or '/'} -> {build['publish_to']}\n"
            f"[packyard] installer {installer}, sandbox {used}, index {settings['index_url']}, "
            f"SOURCE_DATE_EPOCH={build['source_date_epoch']}, timeout {settings['timeout']}s\n"
        )
        outcome = _execute(command, env, work, beat, pump, settings["timeout"])
        if outcome == "cancelled":
            pump.flush()
            return api.finish(build_id, "cancelled", "cancelled while running")
        artifacts = check_artifacts(out)
        pump.note(f"[packyard] built {', '.join(p.name for p in artifacts)}\n")
        pump.flush()
        return api.submit(build_id, artifacts, backend_of(artifacts[1]))
    except BuildFailed as exc:
        pump.note(f"[packyard] build failed: {exc}\n")
        pump.flush()
        return api.finish(build_id, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - any crash of the worker's own work ends the job, never hangs it
        log.exception("build %s crashed", build_id)
        pump.note(f"[packyard] worker error: {exc}\n")
        pump.flush()
        return api.finish(build_id, "failed", f"worker error: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Heartbeat:
    """Heartbeats for the whole job — source fetch and hand-in included, not only the build —
    so a slow upload is never mistaken for a dead worker; remembers a cancellation."""

    def __init__(self, api: WorkerAPI, build_id: int) -> None:
        self.api, self.build_id = api, build_id
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{build_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                if self.api.heartbeat(self.build_id):
                    self.cancelled.set()
            except PackyardError as exc:
                log.warning("heartbeat for build %s: %s", self.build_id, exc.message)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _execute(command: list[str], env: dict, work: Path, beat: _Heartbeat, pump: _LogPump, timeout: int) -> str:
    proc = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    reader = threading.Thread(target=_read, args=(proc.stdout, pump), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                code = proc.wait(timeout=TICK)
                break
            except subprocess.TimeoutExpired:
                pass
            pump.flush()
            if beat.cancelled.is_set():
                _kill(proc)
                pump.note("\n[packyard] cancelled\n")
                return "cancelled"
            if time.monotonic() > deadline:
                _kill(proc)
                raise BuildFailed(f"the build ran past its timeout of {timeout}s and was killed")
    finally:
        if proc.poll() is None:
            _kill(proc)
        reader.join(timeout=5)
    if code != 0:
        raise BuildFailed(f"the build exited with status {code}; see the log: packyard build logs {beat.build_id}")
    return "done"


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Worker:
    """Claims and runs builds until stopped."""

    def __init__(
        self,
        api: WorkerAPI,
        *,
        cache: Path,
        sandbox: str = "auto",
        poll: float = 1.0,
        wake: threading.Event | None = None,
    ) -> None:
        self.api, self.sandbox, self.poll = api, sandbox, poll
        self.cache = Path(os.path.abspath(cache))  # bubblewrap and the build run in other folders
        self.wake = wake or threading.Event()
        """Set by whoever queues a build where this worker can see it (the embedded worker)."""

    def run_once(self) -> dict | None:
        build = self.api.claim()
        if build is None:
            return None
        return run_build(build, self.api, cache=self.cache, sandbox=self.sandbox)

    def run_forever(self, stop: threading.Event) -> None:
        stop.wait(self.poll)  # the embedded worker starts before its server listens
        while not stop.is_set():
            self.wake.clear()
            try:
                done = self.run_once()
            except PackyardError as exc:
                log.warning("worker: %s", exc.message)
                done = None
            except Exception:  # noqa: BLE001 - a worker outlives any one failure
                log.exception("worker loop error")
                done = None
            if done is None:
                self.wake.wait(self.poll)
