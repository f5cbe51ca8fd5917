"""What task runs need beyond files and the index: the index state (to reuse a resolution),
shared resolutions (so a fresh worker skips the resolver) and environment bundles (so it
materialises the environment from packyard alone, with one download).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from packyard.auth import actor, require
from packyard.limits import body as body_class
from packyard.runs.keys import env_key, resolution_key
from packyard.store.bundles import check_key
from packyard.store.names import validate_namespace
from packyard.store.resolutions import MAX_LOCK_BYTES
from packyard.streaming import blob_response, client_present, with_body

router = APIRouter(prefix="/api/v1/namespaces/{ns}", tags=["task runs"])


@router.get("/index-state", summary="Changes whenever the namespace's index may have changed")
def index_state(ns: str, request: Request) -> dict:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    return {
        "state": store.index_state(ns),
        "upstream": store.upstream(ns) is not None,
        "chain": store.index.chain(ns),
    }


class ResolutionIn(BaseModel):
    """A lock resolved by a worker, and what it was resolved from."""

    requirements: list[str] = Field(min_length=1, max_length=10_000)
    python: str = Field(pattern=r"^\d+\.\d+$", description="X.Y")
    platform: str = Field(min_length=1, max_length=100, description="sysconfig.get_platform() of the worker")
    implementation: str = Field(min_length=1, max_length=50, description="sys.implementation.name")
    state: str = Field(max_length=500, description="the index state the lock was resolved against")
    lock: str


@router.put("/resolutions", status_code=201, summary="Share a resolution with the next worker")
@body_class("json", 2 * MAX_LOCK_BYTES + 1024 * 1024)  # a lock, JSON-escaped, and its fields
def put_resolution(ns: str, body: ResolutionIn, request: Request) -> dict:
    validate_namespace(ns)
    token = require(request, ns, "write")
    store = request.app.state.store
    row = {
        "namespace": ns,
        "key": resolution_key(ns, body.requirements, body.python, body.platform, body.implementation),
        "state": body.state,
        "lock": body.lock,
        "env_key": env_key(body.lock, body.python, body.platform, body.implementation),
        "python": body.python,
        "platform": body.platform,
        "requirements": sorted(body.requirements),
    }
    return store.resolutions.put(row, store.index_state(ns), actor(token))


@router.get("/resolutions/{key}", summary="A shared resolution, while the index state is unchanged")
def get_resolution(ns: str, key: str, request: Request) -> dict:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    ttl = store.upstream_fetcher.limits.ttl if store.upstream(ns) is not None else None
    return store.resolutions.get(ns, key, store.index_state(ns), ttl)


@router.put("/bundles/{key}", summary="Store an environment bundle (a gzip'd tar of a relocatable venv)")
@body_class("upload")
async def put_bundle(ns: str, key: str, request: Request) -> JSONResponse:
    check_key(key)
    validate_namespace(ns)
    token = require(request, ns, "write")
    store = request.app.state.store
    store.index.chain(ns)  # NotFound for a namespace that does not exist, before reading the body
    row, created = await with_body(
        request,
        store.bundles.max_bytes,
        lambda reader: store.bundles.put(
            key, reader, namespace=ns, actor=actor(token), checkpoint=client_present(request)
        ),
    )
    return JSONResponse(row, status_code=201 if created else 200)


@router.get("/bundles/{key}", summary="The bundle stored by the nearest namespace of NS's index chain")
def get_bundle(ns: str, key: str, request: Request) -> Response:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    row = store.bundles.nearest(key, store.index.chain(ns))
    return blob_response(
        request,
        store.blobs,
        row["sha256"],
        row["size"],
        filename=f"{key}.tar.gz",
        headers={"X-Packyard-Bundle-Namespace": row["namespace"]},
    )
