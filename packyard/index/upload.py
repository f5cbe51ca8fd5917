"""``POST /{ns}/``: the legacy upload API that ``twine upload`` and ``uv publish`` speak.

The multipart body is spooled to a temporary file by the form parser (never held whole in
memory; the body-size guard in front caps it), then handed to the store, which streams it
into a blob once while computing every digest the client sent, checks filename, form and
metadata agree, and publishes in one transaction. Re-uploading identical bytes answers 200
without change, so ``uv publish`` re-runs are idempotent.
"""

from __future__ import annotations

import math
from contextlib import aclosing

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from packyard.auth import actor, require
from packyard.limits import FORM_FIELDS_MAX, body
from packyard.store.blobs.base import human_size
from packyard.store.errors import InvalidInput
from packyard.store.names import validate_namespace

router = APIRouter(tags=["index"])

FIELD_LIMIT = 1024 * 1024
"""Largest single text field (a long README in ``description`` is a few hundred KiB)."""


class _UploadForm(MultiPartParser):
    """Starlette's multipart parser with one file and a byte budget for everything else."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.headers, request.stream(), max_files=1, max_fields=math.inf, max_part_size=FIELD_LIMIT)
        self._spent = 0

    def _spend(self, n: int) -> None:
        self._spent += n
        if self._spent > FORM_FIELDS_MAX:
            raise MultiPartException(
                f"its fields and part headers exceed {human_size(FORM_FIELDS_MAX)} (the file itself is not counted)"
            )

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._spend(end - start)
        super().on_header_field(data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._spend(end - start)
        super().on_header_value(data, start, end)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:
            self._spend(end - start)
        super().on_part_data(data, start, end)


async def read_form(request: Request) -> FormData:
    """The upload form, or :class:`InvalidInput` saying what is wrong with it (packyard's error shape)."""
    parser = _UploadForm(request)
    try:
        async with aclosing(parser.stream):
            return await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the upload form is not valid multipart/form-data: {exc.message}") from exc


async def _upload(ns: str, request: Request) -> PlainTextResponse:
    validate_namespace(ns)
    token = require(request, ns, "write")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("uploads must be multipart/form-data, as twine and uv publish send them")
    form = await read_form(request)
    try:
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
    finally:
        await form.close()
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
