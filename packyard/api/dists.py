"""Distributions of a namespace's index: list, yank/unyank (PEP 592) and delete, audited."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from packyard.auth import actor, require
from packyard.store.names import validate_namespace

router = APIRouter(prefix="/api/v1/namespaces/{ns}/dists", tags=["dists"])


class YankIn(BaseModel):
    reason: str = ""
    filename: str | None = None
    """One file; without it the whole release (every file of the version)."""


class Target(BaseModel):
    filename: str | None = None


@router.get("", summary="The namespace's own distribution files (not inherited), optionally of one project")
def list_dists(ns: str, request: Request, project: str | None = None) -> list[dict]:
    validate_namespace(ns)
    require(request, ns, "read")
    store = request.app.state.store
    store.namespaces.nearest(ns)  # a namespace not created yet holds nothing; a typo is a 404
    return [d.to_dict() for d in store.dists.list(ns, project)]


@router.post("/{project}/{version}/yank", summary="Yank a release or one file, with a reason")
def yank(ns: str, project: str, version: str, body: YankIn, request: Request) -> list[dict]:
    validate_namespace(ns)
    token = require(request, ns, "write")
    dists = request.app.state.store.dists.yank(
        ns, project, version, filename=body.filename, reason=body.reason, actor=actor(token)
    )
    return [d.to_dict() for d in dists]


@router.post("/{project}/{version}/unyank", summary="Undo a yank")
def unyank(ns: str, project: str, version: str, body: Target, request: Request) -> list[dict]:
    validate_namespace(ns)
    token = require(request, ns, "write")
    dists = request.app.state.store.dists.unyank(ns, project, version, filename=body.filename, actor=actor(token))
    return [d.to_dict() for d in dists]


@router.delete("/{project}/{version}", summary="Delete a release, or one file with ?filename=")
def delete(ns: str, project: str, version: str, request: Request, filename: str | None = None) -> list[dict]:
    validate_namespace(ns)
    token = require(request, ns, "write")
    dists = request.app.state.store.dists.delete(ns, project, version, filename=filename, actor=actor(token))
    return [d.to_dict() for d in dists]
