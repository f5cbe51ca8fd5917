"""Builds: enqueue, list, show, logs, cancel — and the worker protocol (claim, heartbeat,
log, artifacts, finish) that remote and embedded workers speak.
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from packyard.auth import actor, may_read, require, reveal, viewer
from packyard.limits import body
from packyard.store.artifacts import inspect
from packyard.store.builds import DONE, BuildSettings
from packyard.store.catalog import MAX_INT
from packyard.store.errors import Conflict, InvalidInput, NotFound, PackyardError
from packyard.store.names import validate_namespace
from packyard.store.tokens import Token

router = APIRouter(prefix="/api/v1", tags=["builds"])
log = logging.getLogger("packyard.builds")
DEFAULT_INDEX = "https://pypi.org/simple"
BuildId = Annotated[int, Path(ge=1, le=MAX_INT, description="a build's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="a byte offset into the log")]


class BuildIn(BaseModel):
    namespace: str
    path: str = ""
    publish_to: str | None = None
    force: bool = False
    timeout: int | None = None


class WorkerIn(BaseModel):
    worker: str


class FinishIn(WorkerIn):
    state: str
    error: str = ""


def enqueue(
    request: Request,
    namespace: str,
    path: str,
    publish_to: str | None,
    *,
    force: bool,
    timeout: int | None,
    who: str,
    token_id: str | None,
) -> tuple[dict, bool]:
    """Queue a build with the server's build settings (shared by the API and sync triggers).

    ``token_id`` is the authority the build runs under: its write right on the source and
    the target is checked again when the worker hands in the artifacts.
    """
    settings = request.app.state.settings
    if timeout is not None and not 1 <= timeout <= 24 * 3600:
        raise InvalidInput("timeout must be between 1 second and 24 hours")
    target = publish_to or namespace
    index_url = settings.build_index_url
    if not index_url:
        # the target's own index when it falls through to an upstream, so builds resolve via packyard
        has_upstream = request.app.state.store.upstream(target) is not None
        index_url = f"{settings.own_url}/{target}/simple/" if has_upstream else DEFAULT_INDEX
    build_settings = BuildSettings(
        timeout=timeout or settings.build_timeout, index_url=index_url, installer=settings.build_installer
    )
    return request.app.state.store.builds.enqueue(
        namespace, path, publish_to or namespace, build_settings, actor=who, token_id=token_id, force=force
    )


@router.post("/builds", status_code=201, summary="Queue a build (or get the earlier build of the same source)")
def create_build(body: BuildIn, request: Request) -> JSONResponse:
    validate_namespace(body.namespace)
    target = body.publish_to or body.namespace
    validate_namespace(target)
    token = require(request, body.namespace, "write")
    require(request, target, "write")
    build, queued = enqueue(
        request,
        body.namespace,
        body.path,
        target,
        force=body.force,
        timeout=body.timeout,
        who=actor(token),
        token_id=token.id if token else None,
    )
    return JSONResponse({**build, "cached": not queued}, status_code=201 if queued else 200)


@router.get("/builds", summary="List the builds whose source the caller may read, newest first")
def list_builds(request: Request, namespace: str | None = None) -> list[dict]:
    """Builds from, or publishing into, ``namespace`` — but only those whose *source*
    namespace the caller may read: a build of another tenant's files that publishes here
    stays hidden (its paths, hashes and log are that tenant's)."""
    token = viewer(request)
    if namespace is not None:
        validate_namespace(namespace)
        require(request, namespace, "read")
    builds = request.app.state.store.builds.list(namespace, within=None if token is None else token.scope)
    return [b for b in builds if may_read(request, token, b["namespace"])]


def _visible(request: Request, build_id: int, role: str) -> tuple[dict, Token | None]:
    """The build, checked like a private repository: whoever may not read its source
    namespace gets the same 404 as for a build that does not exist."""
    token = viewer(request)
    missing = f"no build {build_id}"
    try:
        build = request.app.state.store.builds.get(build_id)
    except NotFound:
        raise NotFound(missing) from None
    return build, reveal(request, token, build["namespace"], role, missing)


@router.get("/builds/{build_id}", summary="Show a build")
def show_build(build_id: BuildId, request: Request) -> dict:
    build, _ = _visible(request, build_id, "read")
    return build


@router.get("/builds/{build_id}/log", summary="The build log from a byte offset (poll it to follow)")
def build_log(build_id: BuildId, request: Request, offset: Offset = 0) -> Response:
    store = request.app.state.store
    build, _ = _visible(request, build_id, "read")
    data, size = store.builds.spooled_log(build_id, offset)
    if not size:  # ended (its log is a blob), or not started yet
        build = store.builds.get(build_id)
        if build["log_sha256"]:
            with store.blobs.open(build["log_sha256"]) as stream:
                whole = stream.read()
            data, size = whole[max(offset, 0) :], len(whole)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Build-State": build["state"], "X-Log-Size": str(size)},
    )


@router.post("/builds/{build_id}/cancel", summary="Cancel a queued or running build")
def cancel_build(build_id: BuildId, request: Request) -> dict:
    _, token = _visible(request, build_id, "write")
    return request.app.state.store.builds.cancel(build_id, actor(token))


def _authority(store, build: dict) -> None:  # noqa: ANN001 - store.core.Store
    """Raise Forbidden unless the token the build was asked under may still write its source
    and its target (checked when a worker claims it, and again when it publishes)."""
    store.tokens.authority(build.get("token_id"), f"build {build['id']}", build["namespace"], build["publish_to"])


# -- the worker protocol (a token with the admin role on every namespace) ---------------------


def _worker(request: Request) -> None:
    require(request, None, "admin")


@router.post(
    "/workers/claim", summary="Worker: take the next queued build", responses={204: {"description": "nothing queued"}}
)
def claim(body: WorkerIn, request: Request) -> Response:
    _worker(request)
    store = request.app.state.store
    stale_after = request.app.state.settings.build_stale_seconds
    while (build := store.builds.claim(body.worker, stale_after=stale_after)) is not None:
        try:  # no build code runs for an authority that no longer holds (publishing checks again)
            _authority(store, build)
        except PackyardError as exc:
            _close_log(request, build["id"], body.worker, f"[packyard] not started: {exc.message}\n")
            store.builds.finish(build["id"], body.worker, "failed", error=exc.message)
            continue
        return JSONResponse(build)
    return Response(status_code=204)


@router.post("/builds/{build_id}/heartbeat", summary="Worker: alive; answers whether to cancel")
def heartbeat(build_id: BuildId, body: WorkerIn, request: Request) -> dict:
    _worker(request)
    return {"cancel": request.app.state.store.builds.heartbeat(build_id, body.worker)}


@router.post("/builds/{build_id}/log", summary="Worker: append to the build log (raw body)")
@body("upload")
async def append_log(build_id: BuildId, worker: str, request: Request) -> dict:
    _worker(request)
    data = await request.body()
    await anyio.to_thread.run_sync(lambda: request.app.state.store.builds.append_log(build_id, worker, data))
    return {"appended": len(data)}


def _held(request: Request, build_id: int, worker: str) -> dict:
    build = request.app.state.store.builds.get(build_id)
    if build["state"] != "running" or build["worker"] != worker:
        raise Conflict(f"build {build_id} is {build['state']} and not held by worker {worker!r}")
    return build


def _close_log(request: Request, build_id: int, worker: str, last_words: str = "") -> None:
    """Store the ending build's log as a blob, so the catalog holds no finished log.

    Called before the build is marked done, so a finished build always has its log blob;
    if the blob store fails, the log stays in the catalog and is still served.
    """
    store = request.app.state.store
    try:
        if last_words:
            store.builds.append_log(build_id, worker, last_words.encode())
        store.builds.seal_log(build_id, store.blobs)
    except Exception:  # noqa: BLE001 - the build still ends; its log stays in the catalog
        log.exception("could not store the log of build %s", build_id)


@router.post("/builds/{build_id}/finish", summary="Worker: end a build as failed or cancelled")
def finish(build_id: BuildId, body: FinishIn, request: Request) -> dict:
    _worker(request)
    if body.state == "succeeded" or body.state not in DONE:
        raise InvalidInput("a worker ends a build as failed or cancelled; success comes with artifacts")
    _held(request, build_id, body.worker)
    _close_log(request, build_id, body.worker)
    build = request.app.state.store.builds.finish(build_id, body.worker, body.state, error=body.error[:4000])
    return request.app.state.store.builds.get(build["id"])


@router.post(
    "/builds/{build_id}/artifacts", summary="Worker: hand in the sdist and wheel; they are checked and published"
)
@body("upload")
async def artifacts(build_id: BuildId, request: Request) -> dict:
    _worker(request)
    async with request.form(max_files=4, max_fields=10) as form:
        worker = form.get("worker")
        backend = form.get("backend") or None
        uploads = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
        if not isinstance(worker, str):
            raise InvalidInput("the hand-in names no worker")
        return await anyio.to_thread.run_sync(lambda: _publish(request, build_id, worker, backend, uploads))


def _publish(request: Request, build_id: int, worker: str, backend: str | None, uploads: list[UploadFile]) -> dict:
    """Check both artifacts like uploads, publish both in one transaction, or fail the build."""
    store = request.app.state.store
    build = _held(request, build_id, worker)
    items = []
    try:
        try:
            _authority(store, build)  # still, now that it writes
            kinds = sorted(u.filename.endswith(".whl") for u in uploads)
            if kinds != [False, True]:
                raise InvalidInput("a build hands in exactly one sdist and one wheel")
            for upload in uploads:
                blob = store.blobs.put(upload.file, limit=store.dists.max_upload_bytes)
                items.append((inspect(upload.file, upload.filename, blob.size), blob))
            if len({(a.project, a.version) for a, _ in items}) != 1:
                raise InvalidInput("the sdist and the wheel disagree on name or version")
            fresh, same = store.dists.rebuilt(build["publish_to"], items)
            # an unchanged artifact's new bytes stay for the collector, like a refused one's
            published = store.dists.publish(build["publish_to"], fresh, uploader=f"build:{build_id}") if fresh else []
        except PackyardError as exc:
            # refused artifacts' blobs stay for the collector (store/refs.py says why)
            _close_log(request, build_id, worker, f"[packyard] not published: {exc.message}\n")
            store.builds.finish(build_id, worker, "failed", error=exc.message)
            return store.builds.get(build_id)
        names = {d.filename for d, _ in published} | {d.filename for d in same}
        extra = {"artifacts": [a.filename for a, _ in items if a.filename in names], "backend": backend}
        new = [d.filename for d, is_new in published if is_new]
        notes = [f"published {', '.join(new)}"] if new else []
        if same:
            notes.append(
                f"unchanged package content: {', '.join(d.filename for d in same)} already published with the "
                "same files and bytes (only archive timestamps differ): nothing published"
            )
        if not notes:
            notes.append("already published with identical bytes: nothing to do")
        note = "; ".join(notes)
        _close_log(request, build_id, worker, f"[packyard] {build['publish_to']}: {note}\n")
        store.builds.finish(build_id, worker, "succeeded", extra=extra)
        return store.builds.get(build_id)
    finally:
        for upload in uploads:
            upload.file.close()
