"""Namespaces: create, list, show."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from store.names import validate_namespace

from packyard.auth import actor, require

router = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"])


class NamespaceIn(BaseModel):
    name: str


@router.post("", status_code=201, summary="Create a namespace (and its missing ancestors)")
def create_namespace(body: NamespaceIn, request: Request) -> JSONResponse:
    validate_namespace(body.name)
    token = require(request, body.name, "write")
    ns = request.app.state.store.namespaces.create(body.name, actor(token))
    return JSONResponse(ns.to_dict(), status_code=201)


@router.get("", summary="List namespaces, optionally only those under one")
def list_namespaces(request: Request, under: str | None = None) -> list[dict]:
    require(request, under, "read")
    return [ns.to_dict() for ns in request.app.state.store.namespaces.list(under)]


@router.get("/{ns}", summary="Show a namespace: settings, file count and size")
def show_namespace(ns: str, request: Request) -> dict:
    validate_namespace(ns)
    require(request, ns, "read")
    return request.app.state.store.namespaces.get(ns).to_dict()
