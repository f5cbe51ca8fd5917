"""Tokens: create (the secret is in this response only), list, revoke. Admin role only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from packyard.auth import caller
from packyard.store.errors import Forbidden, Unauthenticated

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenIn(BaseModel):
    scope: str
    role: str = "read"
    name: str = ""


def _admin(request: Request):  # noqa: ANN202 - Token
    token = caller(request)
    if token is None:
        raise Unauthenticated("managing tokens needs an admin token")
    return token


@router.post("", status_code=201, summary="Create a token; the secret is shown once")
def create_token(body: TokenIn, request: Request) -> JSONResponse:
    token, secret = request.app.state.store.tokens.create(
        body.scope, body.role, name=body.name, creator=_admin(request)
    )
    return JSONResponse({"token": token.to_dict(), "secret": secret}, status_code=201)


@router.get("", summary="List the tokens within the caller's admin scope (never secrets)")
def list_tokens(request: Request) -> list[dict]:
    viewer = _admin(request)
    if viewer.role != "admin":
        raise Forbidden(f"{viewer.actor} cannot list tokens: the admin role is needed")
    return [t.to_dict() for t in request.app.state.store.tokens.list(viewer)]


@router.delete("/{token_id}", summary="Revoke a token")
def revoke_token(token_id: str, request: Request) -> dict:
    return request.app.state.store.tokens.revoke(token_id, _admin(request)).to_dict()
