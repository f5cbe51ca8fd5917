"""What task runs need beyond files and the index: the index state (to reuse a resolution)
and environment bundles (to rebuild an environment on a fresh worker from packyard alone).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from packyard.auth import actor, require
from packyard.streaming import blob_response, with_body
from store.bundles import check_key
from store.names import validate_namespace

router = APIRouter(prefix="/api/v1", tags=["task runs"])


@router.get("/namespaces/{ns}/index-state", summary="Changes whenever the namespace's index may have changed")
def index_state(ns: str, request: Request) -> dict:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    return {"state": store.index_state(ns), "upstream": store.upstream(ns) is not None}


@router.put("/bundles/{key}", summary="Store an environment bundle (a zip of wheels) for a lock hash")
async def put_bundle(key: str, ns: str, request: Request) -> JSONResponse:
    check_key(key)
    validate_namespace(ns)
    token = require(request, ns, "write")
    store = request.app.state.store
    row, created = await with_body(
        request,
        store.bundles.max_bytes,
        lambda reader: store.bundles.put(key, reader, namespace=ns, actor=actor(token)),
    )
    return JSONResponse(row, status_code=201 if created else 200)


@router.get("/bundles/{key}", summary="Download an environment bundle")
def get_bundle(key: str, request: Request) -> Response:
    store = request.app.state.store
    row = store.bundles.get(key)
    require(request, row["namespace"], "read")
    return blob_response(request, store.blobs, row["sha256"], row["size"], filename=f"{key}.zip")
