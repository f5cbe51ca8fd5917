"""Namespace files: put, get, list, delete, move, history, restore, zip export and import."""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from packyard.auth import actor, require
from packyard.limits import body
from packyard.store.catalog import MAX_INT
from packyard.store.names import validate_namespace, validate_path, validate_prefix
from packyard.streaming import blob_response, with_body

router = APIRouter(prefix="/api/v1/namespaces/{ns}", tags=["files"])


def _checked(ns: str, path: str | None = None) -> None:
    """Validate names before any auth lookup or body read, so bad input costs nothing."""
    validate_namespace(ns)
    if path is not None:
        validate_path(path)


@router.put(
    "/files/{path:path}",
    summary="Write a file (raw body); 201 for a new revision, 200 when the bytes were identical",
    responses={201: {"description": "new revision"}, 200: {"description": "identical bytes"}},
)
@body("upload")
async def put_file(ns: str, path: str, request: Request) -> JSONResponse:
    _checked(ns, path)
    token = require(request, ns, "write")
    store = request.app.state.store
    applied = await with_body(
        request,
        store.files.max_upload_bytes,
        lambda reader: store.files.put(ns, path, reader, author=actor(token)),
    )
    return JSONResponse(applied.revision.public(), status_code=201 if applied.changed else 200)


@router.head("/files/{path:path}", include_in_schema=False)
@router.get(
    "/files/{path:path}",
    summary="Read a file (latest or ?revision=N); ETag is its sha256",
    response_class=Response,
)
def get_file(ns: str, path: str, request: Request, revision: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    _checked(ns, path)
    require(request, ns, "read")
    store = request.app.state.store
    found = store.files.get(ns, path, revision)
    return blob_response(
        request,
        store.blobs,
        found.sha256,
        found.size,
        filename=path,
        headers={"X-Packyard-Revision": str(found.revision)},
    )


@router.delete("/files/{path:path}", summary="Delete a file (adds a tombstone revision)")
def delete_file(ns: str, path: str, request: Request) -> dict:
    _checked(ns, path)
    token = require(request, ns, "write")
    return request.app.state.store.files.delete(ns, path, author=actor(token)).revision.public()


@router.get("/files", summary="List current files, optionally under a prefix")
def list_files(ns: str, request: Request, prefix: str = "") -> list[dict]:
    _checked(ns)
    validate_prefix(prefix)
    require(request, ns, "read")
    store = request.app.state.store
    files = store.files.list(ns, prefix)
    if not files:
        store.namespaces.nearest(ns)  # a namespace not created yet has no files; a typo is a 404
    return [f.public() for f in files]


@router.get("/revisions/{path:path}", summary="Every revision of a path, tombstones included")
def revisions(ns: str, path: str, request: Request) -> list[dict]:
    _checked(ns, path)
    require(request, ns, "read")
    return [
        {
            "revision": r.revision,
            "sha256": r.sha256,
            "size": r.size,
            "deleted": r.deleted,
            "created": r.updated,
            "author": r.author,
            "origin": r.origin,
        }
        for r in request.app.state.store.files.history(ns, path)
    ]


@router.post("/restore/{path:path}", summary="Make an earlier revision the current one")
def restore(ns: str, path: str, request: Request, revision: int = Query(..., ge=1, le=MAX_INT)) -> JSONResponse:
    _checked(ns, path)
    token = require(request, ns, "write")
    applied = request.app.state.store.files.restore(ns, path, revision, author=actor(token))
    return JSONResponse(applied.revision.public(), status_code=201 if applied.changed else 200)


class MoveIn(BaseModel):
    source: str
    target: str
    overwrite: bool = False


@router.post("/move", summary="Move or rename a file (keeps history at the source)")
def move(ns: str, body: MoveIn, request: Request) -> JSONResponse:
    _checked(ns, body.source)
    validate_path(body.target)
    token = require(request, ns, "write")
    applied = request.app.state.store.files.move(
        ns, body.source, body.target, author=actor(token), overwrite=body.overwrite
    )
    return JSONResponse(applied.revision.public(), status_code=201)


@router.get("/export", summary="The namespace's current files (under a prefix) as a zip")
def export(ns: str, request: Request, prefix: str = "") -> FileResponse:
    _checked(ns)
    validate_prefix(prefix)
    require(request, ns, "read")
    # in the data folder's scratch space, where the collector finds what a crash leaves
    fd, name = tempfile.mkstemp(prefix="export-", suffix=".zip", dir=request.app.state.store.scratch)
    try:
        with os.fdopen(fd, "wb") as out:
            request.app.state.store.files.export_zip(ns, prefix, out)
    except BaseException:
        os.unlink(name)
        raise
    filename = f"{ns}{'-' + prefix.strip('/').replace('/', '-') if prefix else ''}.zip"
    return FileResponse(
        name, media_type="application/zip", filename=filename, background=BackgroundTask(os.unlink, name)
    )


@router.post("/import", summary="Expand a zip (raw body) into files, in one transaction")
@body("upload")
async def import_zip(ns: str, request: Request, prefix: str = "") -> JSONResponse:
    _checked(ns)
    validate_prefix(prefix)
    token = require(request, ns, "write")
    store = request.app.state.store
    applied = await with_body(
        request,
        store.files.max_upload_bytes,
        lambda reader: store.files.import_zip(ns, reader, prefix=prefix, author=actor(token)),
    )
    changed = sum(1 for a in applied if a.changed)
    return JSONResponse(
        {"files": [a.revision.public() for a in applied], "changed": changed},
        status_code=201 if changed else 200,
    )
