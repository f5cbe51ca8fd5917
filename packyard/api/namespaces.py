"""Namespaces: create, list, show, settings, usage."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from packaging.utils import canonicalize_name
from pydantic import BaseModel, StrictInt

from packyard.auth import actor, caller, may_read, require
from packyard.store.credentials import allowed_env
from packyard.store.errors import Conflict, Unauthenticated
from packyard.store.names import validate_namespace
from packyard.store.tokens import Token
from packyard.store.upstream import check_upstream_url
from packyard.store.usage import parse_quota

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
    if under:
        validate_namespace(under)
    token = caller(request)
    if token is None:
        require(request, under, "read")  # 401 unless anonymous reads are on
    found = request.app.state.store.namespaces.list(under)
    if token is not None and not request.app.state.settings.anonymous_read:
        found = [ns for ns in found if token.covers(ns.name)]
    return [ns.to_dict() for ns in found]


@router.get("/{ns}", summary="Show a namespace: settings (its own and effective), file count and size")
def show_namespace(ns: str, request: Request) -> dict:
    """``settings`` are the namespace's own; ``effective`` what its index works with — the
    upstream, its credentials' variable name and allow/deny lists it inherits, and ``inherit``
    — each with the namespace it comes from. A reader of NS reads its ancestors' indexes
    anyway; values set in a namespace the caller may not read are withheld (``_visible``)."""
    validate_namespace(ns)
    token = require(request, ns, "read")
    store = request.app.state.store
    shown = store.namespaces.get(ns).to_dict()
    return {**shown, "effective": _visible(request, token, store.effective_settings(ns))}


def _visible(request: Request, token: Token | None, effective: dict) -> dict:
    """Withhold what comes from a namespace the caller may not read itself.

    The isolation model keeps an ancestor's own settings out of reach of a token scoped
    below it (with anonymous reads off): such a caller sees that a setting applies and where
    it is set, not its value (an internal index URL, a variable name, a list of names).
    """

    def readable(namespace: str | None) -> bool:
        return namespace is None or request.app.state.settings.anonymous_read or may_read(request, token, namespace)

    out = dict(effective)
    for key in ("upstream", "upstream_auth_env", "inherit"):
        if not readable(out[key]["from"]):
            out[key] = {"value": None, "from": out[key]["from"], "withheld": True}
    out["retention"] = {
        key: item if readable(item["from"]) else {"value": None, "from": item["from"], "withheld": True}
        for key, item in out["retention"].items()
    }
    for key in ("upstream_allow", "upstream_deny"):
        out[key] = [
            item if readable(item["from"]) else {"patterns": [], "from": item["from"], "withheld": True}
            for item in out[key]
        ]
    return out


class SettingsIn(BaseModel):
    """Unset fields are unchanged; null removes a setting (an upstream is then inherited)."""

    inherit: bool | None = None
    """False: the index lists only this namespace's own files, not its ancestors'."""
    upstream: str | None = None
    """A PEP 503/691 index URL for names no namespace in the chain has; "" means none."""
    upstream_auth_env: str | None = None
    """Server environment variable with the upstream's credentials (user:password or a token)."""
    upstream_allow: list[str] | None = None
    upstream_deny: list[str] | None = None
    # retention (store/retention.py checks the values: a number, or "off" to stop an inherited one)
    keep_releases: Any = None
    """Keep the newest N releases per project that match keep_release_pattern (never the newest release)."""
    keep_release_pattern: Any = None
    """Which releases the release policy touches: "prerelease" (default: pre- and .dev releases), "all", or a
    PEP 440 specifier such as "<2"."""
    keep_release_days: Any = None
    """Remove matching releases older than D days (with keep_releases: only those beyond the newest N)."""
    keep_revisions: Any = None
    """Keep the last N revisions of a path besides its head (the head is never removed)."""
    keep_revision_days: Any = None
    """Remove non-head revisions older than D days (with keep_revisions: only those beyond the last N)."""
    keep_build_log_days: Any = None
    """Remove the logs of builds, and failed or cancelled builds, that finished more than D days ago."""
    keep_mirrored_days: Any = None
    """Remove mirrored upstream files not requested for D days (set where the upstream is set)."""
    keep_bundle_days: Any = None
    """Remove environment bundles and resolutions not used for D days."""
    quota: StrictInt | str | None = None
    """Bytes the namespace and its descendants may hold (each blob once): a number of bytes or
    a size such as "500MiB", "20GiB", "1TB"; null or "none" removes it. A quota on a namespace
    bounds its whole subtree; a write past it is refused with 507 QuotaExceeded. Setting it
    needs the admin role on the parent namespace (scope '*' for a top-level one)."""


@router.patch("/{ns}/settings", summary="Change namespace settings (admin role)")
def update_settings(ns: str, body: SettingsIn, request: Request) -> dict:
    validate_namespace(ns)
    token = require(request, ns, "admin")
    store = request.app.state.store
    store.namespaces.get(ns)
    changes = check_settings(request, ns, body.model_dump(exclude_unset=True))
    return store.namespaces.update_settings(ns, changes, actor(token)).to_dict()


def check_settings(request: Request, ns: str, changes: dict) -> dict:
    """The checks every way of setting a namespace's settings goes through (``PATCH`` and a
    namespace archive's import): allowed upstream hosts, credential variables this namespace
    may name, normalized project patterns. Returns the changes as they are to be stored."""
    store = request.app.state.store
    if changes.get("upstream"):
        changes["upstream"] = check_upstream_url(changes["upstream"], store.upstream_fetcher.limits.hosts)
    if changes.get("upstream_auth_env"):
        allowed_env(
            changes["upstream_auth_env"],
            request.app.state.settings.credential_env_names,
            "upstream_auth_env",
            namespace=ns,
        )
    if "quota" in changes:
        # a quota bounds a tenant: it is set by whoever administers the namespace above it (scope
        # '*' for a top-level one), never lifted by the admin of the namespace it bounds
        require(request, ns.rpartition(".")[0] or None, "admin")
        changes["quota"] = parse_quota(changes["quota"])
    for key in ("upstream_allow", "upstream_deny"):
        if changes.get(key) is not None:
            changes[key] = [canonicalize_name(p) if "*" not in p and "?" not in p else p for p in changes[key]]
    return changes


class RetentionIn(BaseModel):
    apply: bool = False
    """False (the default): only list what would go."""


@router.get("/{ns}/retention", summary="The namespace's retention policy and a dry run (admin role)")
def retention_plan(ns: str, request: Request) -> dict:
    """What the policies of NS and its children would remove now, and the bytes that frees."""
    validate_namespace(ns)
    token = require(request, ns, "admin")
    store = request.app.state.store
    store.namespaces.get(ns)
    plan = store.retention.run(ns, apply=False)
    return {"namespace": ns, "policy": _policy(request, token, ns), **plan.to_dict()}


@router.post("/{ns}/retention", summary="Run the retention policies of a namespace and its children (admin role)")
def retention_run(ns: str, body: RetentionIn, request: Request) -> dict:
    """A dry run unless ``apply``; an applying run takes the catalog's retention lease, so it
    is refused (409) while a scheduled pass runs on any server. Blobs go with ``packyard gc``
    or the server's collector, past the grace period."""
    validate_namespace(ns)
    token = require(request, ns, "admin")
    store = request.app.state.store
    store.namespaces.get(ns)
    plan = store.retention.run(ns, apply=body.apply, actor=actor(token), holder=f"api:{uuid.uuid4().hex}")
    if plan.skipped:
        raise Conflict(f"{plan.skipped}; try again when it ends")
    return {"namespace": ns, "policy": _policy(request, token, ns), **plan.to_dict()}


def _policy(request: Request, token: Token | None, ns: str) -> dict:
    """The effective policy, with values set in namespaces the caller may not read withheld."""
    effective = request.app.state.store.effective_settings(ns)
    return _visible(request, token, effective)["retention"]


class TallyOut(BaseModel):
    count: int
    bytes: int


class FiguresOut(BaseModel):
    """Rows and their bytes per kind; ``stored`` counts each blob once (what a quota bounds)."""

    files: TallyOut
    """Current files (head revisions that are not deletions)."""
    revisions: TallyOut
    """Every stored revision, the current ones included (deletion markers hold no bytes)."""
    distributions: TallyOut
    bundles: TallyOut
    build_logs: TallyOut
    mirrored: TallyOut
    """Upstream files mirrored for the upstream this namespace sets (a shared cache: in no quota)."""
    stored: TallyOut | None


class NamespaceFiguresOut(FiguresOut):
    namespace: str


class QuotaOut(BaseModel):
    namespace: str
    """The namespace that sets the quota: this one or an ancestor (it bounds its whole subtree)."""
    quota: int | None
    used: int | None
    """Bytes its subtree holds, each blob once."""
    withheld: bool = False
    """Set in an ancestor the caller may not read: that it applies is shown, not its figures."""


class UsageOut(BaseModel):
    namespace: str | None
    own: FiguresOut | None = None
    """The namespace alone (absent for the whole store)."""
    subtree: FiguresOut
    """The namespace with its descendants (the whole store when ``namespace`` is null)."""
    namespaces: list[NamespaceFiguresOut]
    """Each namespace of the subtree, alone."""
    quotas: list[QuotaOut] = []
    """The quotas that bound the namespace, its own and its ancestors'."""


@router.get("/{ns}/usage", summary="Storage used by a namespace, alone and with its descendants, and its quotas")
def namespace_usage(ns: str, request: Request) -> UsageOut:
    """Computed by catalog aggregates: cheap on a big store. A reader of NS reads every file
    and distribution under it anyway; the figures of an ancestor's quota are withheld from a
    caller who may not read that ancestor (as ``ns show`` withholds its settings)."""
    validate_namespace(ns)
    token = require(request, ns, "read")
    store = request.app.state.store
    store.namespaces.get(ns)
    report = store.namespaces.usage.report(ns)
    for quota in report["quotas"]:
        if not (request.app.state.settings.anonymous_read or may_read(request, token, quota["namespace"])):
            quota.update(quota=None, used=None, withheld=True)
    return UsageOut(**report)


usage_router = APIRouter(prefix="/api/v1", tags=["namespaces"])


@usage_router.get("/usage", summary="Storage used by every namespace (a token whose scope is '*')")
def store_usage(request: Request) -> UsageOut:
    if require(request, None, "read") is None:  # anonymous reads are on: still no whole-store scan for anyone
        raise Unauthenticated("the whole store's usage needs a token whose scope is '*'")
    return UsageOut(**request.app.state.store.namespaces.usage.report(None))
