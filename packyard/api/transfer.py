"""A namespace as one archive: export (read role) and import (admin role), to move it between servers.

The format and every check an import makes are in ``store/transfer.py``. Unlike the zip of
``/export`` and ``/import`` (a namespace's current files, written as new revisions into a
namespace that may hold others), an archive carries the whole namespace — every revision with
its time, distributions with their upload times and yank records, and its settings — and an
import recreates it as it was, all or nothing.
"""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ConfigDict, ValidationError

from packyard.api.namespaces import SettingsIn, check_settings
from packyard.auth import actor, require
from packyard.limits import body
from packyard.store.errors import InvalidInput, UnsafeArchive
from packyard.store.names import validate_namespace
from packyard.streaming import with_body

router = APIRouter(prefix="/api/v1/namespaces/{ns}", tags=["namespaces"])

ARCHIVE_TYPE = "application/x-tar"


class ArchiveSettings(SettingsIn):
    """An archive's settings: what ``PATCH .../settings`` accepts, and nothing else."""

    model_config = ConfigDict(extra="forbid")


@router.get(
    "/archive",
    summary="The namespace as one archive (files with history, distributions with yanks, settings)",
    response_class=FileResponse,
)
def export_archive(ns: str, request: Request) -> FileResponse:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    store.namespaces.get(ns)  # 404 before any work
    # in the data folder's scratch space, where the collector finds what a crash leaves
    fd, name = tempfile.mkstemp(prefix="export-", suffix=".tar", dir=store.scratch)
    try:
        with os.fdopen(fd, "wb") as out:
            store.transfer.export(ns, out)
    except BaseException:
        os.unlink(name)
        raise
    from starlette.background import BackgroundTask

    return FileResponse(
        name,
        media_type=ARCHIVE_TYPE,
        filename=f"{ns}.packyard.tar",
        background=BackgroundTask(os.unlink, name),
    )


@router.post(
    "/archive",
    summary="Import a namespace archive (raw body; admin role): all or nothing",
    status_code=201,
)
@body("upload")
async def import_archive(
    ns: str,
    request: Request,
    replace: bool = Query(False, description="Replace the namespace's files, dists and settings if it exists."),
    rename_from: str | None = Query(
        None, description="The namespace the archive holds, when it is imported under another name."
    ),
) -> JSONResponse:
    validate_namespace(ns)
    if rename_from is not None:
        validate_namespace(rename_from)
    # the admin role on the target, checked before a byte of the body is read: an import
    # writes settings (an upstream, a credential variable) and replaces what is there
    token = require(request, ns, "admin")
    store = request.app.state.store
    expected = rename_from or ns

    def work(reader) -> dict:  # noqa: ANN001 - streaming.RequestReader
        manifest, tar, _ = store.transfer.read(reader)
        if manifest.namespace != expected:
            raise UnsafeArchive(
                f"the archive holds namespace {manifest.namespace!r}, not {expected!r}"
                + ("" if rename_from else f"; to import it as {ns!r}, say so (--into {ns})")
            )
        try:
            settings = ArchiveSettings.model_validate(manifest.settings).model_dump(exclude_unset=True)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise InvalidInput(f"the archive's settings are not valid here: {problems}") from None
        settings = check_settings(request, ns, {k: v for k, v in settings.items() if v is not None})
        return store.transfer.import_(manifest, tar, target=ns, replace=replace, actor=actor(token), settings=settings)

    summary = await with_body(request, store.transfer.max_upload_bytes, work)
    return JSONResponse(summary, status_code=201)
