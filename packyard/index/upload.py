"""``POST /{ns}/``: the legacy upload API that ``twine upload`` and ``uv publish`` speak.

The multipart body is spooled to a temporary file by the form parser (never held whole in
memory; the body-size guard in front caps it), then handed to the store, which streams it
into a blob once while computing every digest the client sent, checks filename, form and
metadata agree, and publishes in one transaction. Re-uploading identical bytes answers 200
without change, so ``uv publish`` re-runs are idempotent.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.datastructures import UploadFile

from packyard.auth import actor, require
from packyard.limits import body
from store.errors import InvalidInput
from store.names import validate_namespace

router = APIRouter(tags=["index"])

FIELD_LIMIT = 1024 * 1024


async def _upload(ns: str, request: Request) -> PlainTextResponse:
    validate_namespace(ns)
    token = require(request, ns, "write")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("uploads must be multipart/form-data, as twine and uv publish send them")
    async with request.form(max_files=1, max_fields=500, max_part_size=FIELD_LIMIT) as form:
        action = form.get(":action")
        if action not in (None, "file_upload"):
            raise InvalidInput(f"unsupported :action {action!r}; only file_upload is served")
        content = form.get("content")
        if not isinstance(content, UploadFile) or not content.filename:
            raise InvalidInput("the upload has no 'content' file field")
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        store = request.app.state.store
        dist, created = await anyio.to_thread.run_sync(
            lambda: store.dists.add(
                ns,
                content.file,
                content.filename,
                uploader=actor(token),
                name=fields.get("name"),
                version=fields.get("version"),
                filetype=fields.get("filetype"),
                digests={k: fields[k] for k in ("sha256_digest", "md5_digest", "blake2_256_digest") if fields.get(k)},
            )
        )
    message = f"stored {dist.filename} in {ns}" if created else f"{dist.filename} already in {ns} with these bytes"
    return PlainTextResponse(message, status_code=200)


@router.post("/{ns}/", summary="Upload a distribution (the legacy API twine and uv publish use)")
@body("upload")
async def upload(ns: str, request: Request) -> PlainTextResponse:
    return await _upload(ns, request)


@router.post("/{ns}", include_in_schema=False)
@body("upload")
async def upload_no_slash(ns: str, request: Request) -> PlainTextResponse:
    return await _upload(ns, request)
