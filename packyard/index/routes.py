"""Index reads through FastAPI: the documented, authenticated, cache-filling path.

Anonymous cache hits never get here: ``hot.py`` answers them in front of FastAPI. Every
read here goes through auth, fills the cache on a miss, and answers 304 on a matching ETag.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from packyard.auth import require
from packyard.index.negotiate import negotiate
from packyard.index.render import Page
from packyard.store.errors import InvalidName, NotAcceptable, NotFound
from packyard.store.index import normalize
from packyard.store.names import validate_namespace, validate_project
from packyard.streaming import blob_response, dist_response

router = APIRouter(tags=["index"])

METADATA_SUFFIX = ".metadata"


def page_response(request: Request, page: Page, content_type: str) -> Response:
    headers = {"ETag": page.etag, "Vary": "Accept", "Cache-Control": "max-age=0, must-revalidate"}
    if page.stale is not None:
        headers["X-Packyard-Upstream"] = "stale"
        headers["X-Packyard-Upstream-Error"] = page.stale.encode("ascii", "replace").decode()[:500]
    if request.headers.get("if-none-match") == page.etag:
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=content_type, headers=headers)


def _format(request: Request) -> tuple[str, str]:
    chosen = negotiate(request.headers.get("accept"))
    if chosen is None:
        raise NotAcceptable(
            "none of the Accept types is served: ask for application/vnd.pypi.simple.v1+json, "
            "application/vnd.pypi.simple.v1+html or text/html"
        )
    return chosen


@router.head("/{ns}/simple/", include_in_schema=False)
@router.get("/{ns}/simple/", summary="PEP 503/691 project list of a namespace's index (with inheritance)")
def simple_root(ns: str, request: Request) -> Response:
    validate_namespace(ns)
    require(request, ns, "read")
    fmt, content_type = _format(request)
    return page_response(request, request.app.state.index.page(ns, None, fmt), content_type)


@router.head("/{ns}/simple/{project}/", include_in_schema=False)
@router.get("/{ns}/simple/{project}/", summary="PEP 503/691 file list of one project")
def simple_project(ns: str, project: str, request: Request) -> Response:
    validate_namespace(ns)
    require(request, ns, "read")
    try:
        validate_project(project)
    except InvalidName as exc:
        raise NotFound(f"no project {project!r} in {ns}: {exc.message}") from exc
    normal = normalize(project)
    if normal != project:
        # relative, like every link on the pages, so the index works behind a path prefix
        return RedirectResponse(f"../{normal}/", status_code=301)
    fmt, content_type = _format(request)
    return page_response(request, request.app.state.index.page(ns, normal, fmt), content_type)


@router.head("/{ns}/dists/{filename}", include_in_schema=False)
@router.get("/{ns}/dists/{filename}", summary="A distribution file, or its core metadata (name.metadata)")
def dist_file(ns: str, filename: str, request: Request) -> Response:
    validate_namespace(ns)
    require(request, ns, "read")
    return serve_dist(request, ns, filename)


def serve_dist(request: Request, ns: str, filename: str) -> Response:
    cache = request.app.state.index
    blobs = request.app.state.store.blobs
    store = request.app.state.store
    if filename.endswith(METADATA_SUFFIX):
        found = cache.file(ns, filename[: -len(METADATA_SUFFIX)])
        if found.metadata_sha256 is None:
            # served exactly where the page advertises it (PEP 658): never for an sdist whose
            # PKG-INFO does not bind its build, so no client can trust what the build changes
            raise NotFound(
                f"{found.filename} has no PEP 658 metadata file: "
                + (
                    "its PKG-INFO may not match what building it produces (Metadata-Version < 2.2, "
                    "or dependencies marked Dynamic, or an upstream sdist); build or download it instead"
                    if found.filetype == "sdist"
                    else "its index offers none; download the file instead"
                )
            )
        if found.upstream_url is not None:
            metadata = _upstream(store, ns).ensure_metadata(found)
        else:
            etag = f'"{found.metadata_sha256}"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            data = store.dists.metadata_bytes(found.sha256, found.filename, found.metadata_sha256)
            return Response(data, media_type="text/plain", headers={"ETag": etag, "Cache-Control": "no-cache"})
        size = blobs.size(metadata)
        return blob_response(request, blobs, metadata, size, filename="METADATA", media_type="text/plain")
    stamp = cache.stamp(ns)
    found = cache.file(ns, filename)
    redirect = request.app.state.settings.redirect_seconds
    if found.upstream_url is not None:
        sha256, size = _upstream(store, ns).ensure_file(found)
        cache.remember_mirrored(ns, filename, stamp, sha256, size)
        return dist_response(request, blobs, sha256, size, filename=filename, redirect_seconds=redirect)
    return dist_response(request, blobs, found.sha256, found.size, filename=filename, redirect_seconds=redirect)


def _upstream(store, ns: str):  # noqa: ANN001, ANN202 - Store, UpstreamSource
    upstream = store.upstream(ns)
    if upstream is None:
        raise NotFound(f"{ns} no longer has an upstream")
    return upstream
