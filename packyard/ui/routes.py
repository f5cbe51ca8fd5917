"""The web UI: server-rendered pages under ``/ui/`` over the same checks as the API.

Every page resolves its caller from the session cookie and then calls the API's own
checks (``require``, ``reveal``, ``may_read``) — for actions it calls the API's route
functions themselves — so a page shows and does exactly what the API allows that token.
Pages work without JavaScript; ``static/log.js`` only follows a running build's log.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import re
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from packaging.utils import canonicalize_name
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from starlette.concurrency import run_in_threadpool

from packyard.api import builds as builds_api
from packyard.api import dists as dists_api
from packyard.api import files as files_api
from packyard.api import namespaces as namespaces_api
from packyard.api import syncs as syncs_api
from packyard.api import tokens as tokens_api
from packyard.auth import caller, may_read, require, viewer
from packyard.http_errors import status_for
from packyard.limits import body
from packyard.store.browse import PAGE, sort_versions
from packyard.store.errors import Forbidden, InvalidInput, NotFound, PackyardError, Unauthenticated
from packyard.store.names import validate_namespace, validate_path, validate_prefix, validate_project
from packyard.streaming import blob_response
from packyard.ui import session as sess

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.autoescape = True
router = APIRouter(prefix="/ui", include_in_schema=False)

PREVIEW_BYTES = 512 * 1024
IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
SHA = re.compile(r"[0-9a-f]{7,40}")
PYGMENTS_CSS = HtmlFormatter(style="friendly").get_style_defs(".hl")
RAW_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- plumbing ------------------------------------------------------------------------------


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    ui_session = getattr(request.state, "ui_session", None)
    context.update(
        request=request,
        me=ui_session.token if ui_session else None,
        csrf=ui_session.csrf if ui_session else "",
        anonymous_read=request.app.state.settings.anonymous_read,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


def page(fn: Callable) -> Callable:
    """Resolve the session, run the page, and turn packyard errors into pages: no session
    where one is needed goes to sign-in; anything else is its API status with the message."""

    @functools.wraps(fn)
    async def wrapper(request: Request, **kwargs: Any) -> Response:
        try:
            await run_in_threadpool(sess.attach, request)
            if inspect.iscoroutinefunction(fn):
                return await fn(request, **kwargs)
            return await run_in_threadpool(fn, request, **kwargs)
        except Unauthenticated:
            if request.method == "GET":
                return _login_redirect(request)
            return render(request, "error.html", 401, message="Sign in first.", title="Sign-in needed")
        except PackyardError as exc:
            return render(request, "error.html", status_for(exc), message=exc.message, title=type(exc).__name__)

    return wrapper


async def form_of(request: Request) -> dict[str, str]:
    """The posted form, after the CSRF check (before anything else is looked at)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sess.check_csrf(request, fields)
    return fields


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _int(value: str | None, default: int = 0, low: int = 0) -> int:
    try:
        return max(int(value), low) if value not in (None, "") else default
    except ValueError:
        raise InvalidInput(f"{value!r} is not a number") from None


def readable(request: Request) -> list[str]:
    """The namespaces the caller may read (as the API lists them)."""
    token = viewer(request)
    return [ns.name for ns in request.app.state.store.namespaces.list() if may_read(request, token, ns.name)]


def namespace_page(request: Request, ns: str) -> None:
    """The namespace exists and the caller may read it (else the API's 401/403/404)."""
    validate_namespace(ns)
    viewer(request)
    require(request, ns, "read")
    namespaces = request.app.state.store.namespaces
    if not namespaces.exists(ns):
        namespaces.get(ns)  # its NotFound, with the API's message


def can(request: Request, ns: str, role: str = "write") -> bool:
    token = caller(request)
    return token is not None and token.allows(ns, role)


def pager(offset: int, total: int, limit: int = PAGE) -> dict:
    return {
        "offset": offset,
        "total": total,
        "prev": max(offset - limit, 0) if offset > 0 else None,
        "next": offset + limit if offset + limit < total else None,
        "limit": limit,
    }


# -- sign in and out -----------------------------------------------------------------------


@router.get("/login")
@page
def login_form(request: Request) -> Response:
    secret = sess.login_secret(request)
    response = render(request, "login.html", login_csrf=secret, next=_safe_next(request.query_params.get("next")))
    sess.set_cookie(request, response, sess.LOGIN_COOKIE, secret, 3600)
    return response


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/ui/") and "//" not in target and "\\" not in target:
        return target
    return "/ui/"


@router.post("/login")
@body("signin")
@page
async def login(request: Request) -> Response:
    form = await request.form()
    sess.check_login_csrf(request, str(form.get("login_csrf") or ""))
    secret = str(form.get("token") or "").strip()
    store = request.app.state.store
    try:
        token = await run_in_threadpool(store.tokens.authenticate, secret) if secret else None
    except Unauthenticated:
        token = None
    if token is None:
        response = render(
            request, "login.html", 401, error="That token is unknown or revoked.", login_csrf=sess.login_secret(request)
        )
        return response
    hours = request.app.state.settings.ui_session_hours
    session_id, _ = await run_in_threadpool(request.app.state.sessions.create, token, hours * 3600)
    response = back(_safe_next(str(form.get("next") or "")))
    sess.set_cookie(request, response, sess.COOKIE, session_id, int(hours * 3600))
    response.delete_cookie(sess.LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
@body("form")
@page
async def logout(request: Request) -> Response:
    await form_of(request)
    await run_in_threadpool(request.app.state.sessions.end, request.cookies.get(sess.COOKIE))
    response = back("/ui/login")
    response.delete_cookie(sess.COOKIE, path="/ui")
    return response


@router.get("/static/pygments.css")
def pygments_css() -> Response:
    return Response(PYGMENTS_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


# -- home ----------------------------------------------------------------------------------


@router.get("/")
@page
def home(request: Request) -> Response:
    names = readable(request)
    browse = request.app.state.browse
    query = (request.query_params.get("q") or "").strip()[:200]
    counts = browse.counts(names)
    tree = [{"name": n, "depth": n.count("."), **counts[n]} for n in names]
    found = browse.search(query, names) if query else None
    return render(request, "home.html", tree=tree, query=query, found=found)


# -- files ---------------------------------------------------------------------------------


@router.get("/ns/{ns}/")
@page
def namespace_home(request: Request, ns: str) -> Response:
    namespace_page(request, ns)
    return back(f"/ui/ns/{ns}/files")


@router.get("/ns/{ns}/files")
@page
def files(request: Request, ns: str) -> Response:
    namespace_page(request, ns)
    prefix = request.query_params.get("prefix") or ""
    if prefix:
        validate_prefix(prefix)
        prefix = prefix.rstrip("/") + "/"
    after = request.query_params.get("after") or ""
    if after:
        validate_path(after.rstrip("/"))
    listing = request.app.state.browse.folder(ns, prefix, after)
    crumbs = []
    parts = prefix.strip("/").split("/") if prefix else []
    for i, part in enumerate(parts):
        crumbs.append({"name": part, "prefix": "/".join(parts[: i + 1]) + "/"})
    return render(
        request,
        "files.html",
        ns=ns,
        tab="files",
        prefix=prefix,
        crumbs=crumbs,
        listing=listing,
        after=after,
    )


def _file_rev(request: Request, ns: str, path: str, rev: str | None) -> Any:
    validate_path(path)
    namespace_page(request, ns)
    return request.app.state.store.files.get(ns, path, _int(rev, None, 1) if rev else None)


@router.get("/ns/{ns}/file/{path:path}")
@page
def file_page(request: Request, ns: str, path: str) -> Response:
    current = _file_rev(request, ns, path, request.query_params.get("rev"))
    store = request.app.state.store
    history = store.files.history(ns, path)
    current = next((r for r in history if r.revision == current.revision), current)  # with author and origin
    preview: dict[str, Any] = {"kind": "none"}
    suffix = Path(path).suffix.lower()
    if current.deleted:
        preview = {"kind": "deleted"}
    elif suffix in IMAGES:
        preview = {"kind": "image"}
    elif current.size <= PREVIEW_BYTES:
        with store.files.open(current) as stream:
            data = stream.read(PREVIEW_BYTES + 1)
        text = _text(data)
        if text is not None:
            try:
                lexer = get_lexer_for_filename(path, stripnl=False)
            except ClassNotFound:
                lexer = TextLexer(stripnl=False)
            preview = {"kind": "text", "html": highlight(text, lexer, HtmlFormatter(cssclass="hl"))}
        else:
            preview = {"kind": "binary"}
    else:
        preview = {"kind": "large"}
    origin = request.app.state.browse.commit_of(ns, current.origin)
    revisions = [r.revision for r in history]
    return render(
        request,
        "file.html",
        ns=ns,
        tab="files",
        path=path,
        folder=path.rsplit("/", 1)[0] + "/" if "/" in path else "",
        current=current,
        history=list(reversed(history)),
        preview=preview,
        commit=origin,
        revisions=revisions,
        can_write=can(request, ns),
    )


def _text(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@router.get("/ns/{ns}/raw/{path:path}")
@page
def raw_file(request: Request, ns: str, path: str) -> Response:
    current = _file_rev(request, ns, path, request.query_params.get("rev"))
    if current.deleted:
        raise NotFound(f"{path} revision {current.revision} is a deletion")
    suffix = Path(path).suffix.lower()
    name = quote(path.rsplit("/", 1)[-1])
    headers = dict(RAW_HEADERS)
    if suffix in IMAGES and request.query_params.get("inline"):
        media = IMAGES[suffix]  # only raster images are ever shown inline; never SVG or HTML
    else:
        media = "application/octet-stream"
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
    store = request.app.state.store
    return blob_response(
        request, store.blobs, current.sha256, current.size, filename=path, headers=headers, media_type=media
    )


@router.get("/ns/{ns}/diff/{path:path}")
@page
def diff_page(request: Request, ns: str, path: str) -> Response:
    a = _file_rev(request, ns, path, request.query_params.get("a") or "1")
    b = _file_rev(request, ns, path, request.query_params.get("b"))
    store = request.app.state.store
    texts = []
    for rev in (a, b):
        if rev.deleted:
            texts.append("")
            continue
        if rev.size > PREVIEW_BYTES:
            raise InvalidInput(f"revision {rev.revision} is larger than {PREVIEW_BYTES} bytes; download it to compare")
        with store.files.open(rev) as stream:
            text = _text(stream.read())
        if text is None:
            raise InvalidInput(f"revision {rev.revision} of {path} is binary; download it to compare")
        texts.append(text)
    lines = list(
        difflib.unified_diff(
            texts[0].splitlines(),
            texts[1].splitlines(),
            f"{path} @ {a.revision}",
            f"{path} @ {b.revision}",
            lineterm="",
        )
    )
    history = store.files.history(ns, path)
    return render(
        request,
        "diff.html",
        ns=ns,
        tab="files",
        path=path,
        a=a,
        b=b,
        lines=lines,
        revisions=[r.revision for r in history],
    )


@router.post("/ns/{ns}/restore/{path:path}")
@body("form")
@page
async def restore(request: Request, ns: str, path: str) -> Response:
    form = await form_of(request)
    validate_namespace(ns)
    validate_path(path)
    revision = _int(form.get("revision"), 0, 1)
    await run_in_threadpool(files_api.restore, ns, path, request, revision)
    return back(f"/ui/ns/{ns}/file/{quote(path)}")


# -- packages ------------------------------------------------------------------------------


@router.get("/ns/{ns}/packages")
@page
def packages(request: Request, ns: str) -> Response:
    namespace_page(request, ns)
    store = request.app.state.store
    chain = store.index.chain(ns)
    offset = _int(request.query_params.get("offset"))
    projects, total = request.app.state.browse.projects(chain, offset)
    upstream = store.upstream(ns)
    return render(
        request,
        "packages.html",
        ns=ns,
        tab="packages",
        projects=projects,
        pager=pager(offset, total),
        upstream=upstream.config.url if upstream else None,
        chain=chain,
    )


def _metadata(store: Any, dist: dict) -> dict:
    try:
        data = store.dists.metadata_bytes(dist["sha256"], dist["filename"], dist["metadata_sha256"])
    except PackyardError:
        return {"requires": [], "description": None}
    message = BytesParser(policy=compat32).parsebytes(data)
    return {"requires": message.get_all("Requires-Dist") or [], "home": message.get("Home-page")}


@router.get("/ns/{ns}/project/{project}")
@page
def project_page(request: Request, ns: str, project: str) -> Response:
    validate_project(project)
    namespace_page(request, ns)
    store = request.app.state.store
    name = canonicalize_name(project)
    chain = store.index.chain(ns)
    rows = request.app.state.browse.project_files(chain, name)
    upstream = store.upstream(ns)
    if not rows and upstream is None:
        raise NotFound(f"no project {name!r} in the index of {ns}")
    versions: dict[str, list[dict]] = {}
    for row in rows:
        versions.setdefault(row["version"], []).append(row)
    ordered = [(v, versions[v]) for v in sort_versions(set(versions))]
    newest = ordered[0][1][0] if ordered else None
    home = rows[0]["namespace"] if rows else None
    base = str(request.base_url).rstrip("/")
    return render(
        request,
        "project.html",
        ns=ns,
        tab="packages",
        project=name,
        versions=ordered,
        newest=newest,
        meta=_metadata(store, newest) if newest else {"requires": []},
        home=home,
        home_readable=home is not None and may_read(request, caller(request), home),
        upstream=upstream.config.url if upstream else None,
        index_url=f"{base}/{ns}/simple/",
        can_write=home is not None and can(request, home),
    )


@router.get("/ns/{ns}/dist/{filename}")
@page
def dist_page(request: Request, ns: str, filename: str) -> Response:
    namespace_page(request, ns)
    store = request.app.state.store
    dist = store.dists.get(ns, filename).to_dict()
    build = None
    uploader = dist.get("uploader") or ""
    if uploader.startswith("build:"):
        build_id = int(uploader[6:])
        try:
            build, _ = builds_api._visible(request, build_id, "read")
        except NotFound:
            build = None
    # the resolutions that can hold it: of this namespace's index and of those inheriting it
    users = [n for n in readable(request) if n == ns or n.startswith(ns + ".")]
    used_by = request.app.state.browse.used_by(dist["sha256"], users)
    return render(
        request,
        "dist.html",
        ns=ns,
        tab="packages",
        dist=dist,
        build=build,
        used_by=used_by,
        can_write=can(request, ns),
    )


@router.post("/ns/{ns}/project/{project}/yank")
@body("form")
@page
async def yank(request: Request, ns: str, project: str) -> Response:
    form = await form_of(request)
    validate_project(project)
    body = dists_api.YankIn(reason=form.get("reason", ""), filename=form.get("filename") or None)
    await run_in_threadpool(dists_api.yank, ns, project, form.get("version", ""), body, request)
    return back(f"/ui/ns/{ns}/project/{canonicalize_name(project)}")


@router.post("/ns/{ns}/project/{project}/unyank")
@body("form")
@page
async def unyank(request: Request, ns: str, project: str) -> Response:
    form = await form_of(request)
    validate_project(project)
    body = dists_api.Target(filename=form.get("filename") or None)
    await run_in_threadpool(dists_api.unyank, ns, project, form.get("version", ""), body, request)
    return back(f"/ui/ns/{ns}/project/{canonicalize_name(project)}")


# -- builds --------------------------------------------------------------------------------


def _duration(build: dict) -> str:
    from datetime import datetime

    if not build.get("started"):
        return ""
    start = datetime.fromisoformat(build["started"].replace("Z", "+00:00"))
    if build.get("finished"):
        end = datetime.fromisoformat(build["finished"].replace("Z", "+00:00"))
    else:
        from datetime import UTC

        end = datetime.now(UTC)
    return f"{(end - start).total_seconds():.1f} s"


templates.env.filters["duration"] = _duration


@router.get("/ns/{ns}/builds")
@page
def builds(request: Request, ns: str) -> Response:
    namespace_page(request, ns)
    offset = _int(request.query_params.get("offset"))
    rows, total = request.app.state.browse.builds(ns, offset)
    token = caller(request)
    rows = [r for r in rows if may_read(request, token, r["namespace"])]
    return render(request, "builds.html", ns=ns, tab="builds", builds=rows, pager=pager(offset, total))


@router.get("/builds/{build_id}")
@page
def build_page(request: Request, build_id: int) -> Response:
    build, _ = builds_api._visible(request, build_id, "read")
    browse = request.app.state.browse
    ns = build["namespace"]
    prefix = f"{build['path']}/" if build["path"] else ""
    sources = []
    commits: dict[str, dict] = {}
    for f in build["snapshot"][:500]:
        row = browse.revision_origin(ns, prefix + f["path"], f["revision"]) or {}
        commit = browse.commit_of(ns, row.get("origin"))
        if commit:
            commits[commit["commit_sha"]] = commit
        sources.append({**f, "full": prefix + f["path"], "origin": row.get("origin"), "commit": commit})
    log = builds_api.build_log(build_id, request, 0)
    return render(
        request,
        "build.html",
        ns=ns,
        tab="builds",
        build=build,
        sources=sources,
        more_sources=max(len(build["snapshot"]) - 500, 0),
        commits=list(commits.values()),
        artifacts=browse.dists_of_build(build_id),
        log=log.body.decode("utf-8", "replace"),
        log_size=int(log.headers["X-Log-Size"]),
        live=build["state"] in ("queued", "running"),
        can_write=can(request, ns),
    )


@router.get("/builds/{build_id}/log")
@page
def build_log(request: Request, build_id: int) -> Response:
    """The log from ``offset`` as plain text, for the page's log follower (session-authenticated)."""
    response = builds_api.build_log(build_id, request, _int(request.query_params.get("offset")))
    return PlainTextResponse(
        response.body,
        headers={
            "X-Build-State": response.headers["X-Build-State"],
            "X-Log-Size": response.headers["X-Log-Size"],
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/builds/{build_id}/cancel")
@body("form")
@page
async def cancel_build(request: Request, build_id: int) -> Response:
    await form_of(request)
    await run_in_threadpool(builds_api.cancel_build, build_id, request)
    return back(f"/ui/builds/{build_id}")


# -- commits (provenance, the other way round) ----------------------------------------------


@router.get("/ns/{ns}/commit/{sha}")
@page
def commit_page(request: Request, ns: str, sha: str) -> Response:
    if not SHA.fullmatch(sha):
        raise InvalidInput("a commit is 7 to 40 lowercase hex digits")
    namespace_page(request, ns)
    browse = request.app.state.browse
    runs = browse.commit_runs(ns, sha)
    full = runs[0]["commit_sha"] if runs else sha
    revisions, total = browse.commit_revisions(ns, full)
    built = browse.builds_of_revisions(ns, full, min((r["started"] for r in runs), default=""))[:100]
    token = caller(request)
    for build in built:
        build["dists"] = [d for d in browse.dists_of_build(build["id"]) if may_read(request, token, d["namespace"])]
    return render(
        request, "commit.html", ns=ns, tab="syncs", sha=sha, runs=runs, revisions=revisions, total=total, builds=built
    )


# -- syncs ---------------------------------------------------------------------------------


@router.get("/ns/{ns}/syncs")
@page
def syncs(request: Request, ns: str) -> Response:
    namespace_page(request, ns)
    registry = request.app.state.syncs
    # through the registry: its view redacts credentials a stored URL may carry
    rows = [registry.get(row["name"]).to_dict() for row in request.app.state.browse.syncs(ns)]
    return render(request, "syncs.html", ns=ns, tab="syncs", syncs=rows)


@router.get("/syncs/{name}")
@page
def sync_page(request: Request, name: str) -> Response:
    registered, _ = syncs_api._visible(request, name, "read")
    offset = _int(request.query_params.get("offset"))
    runs = request.app.state.browse.sync_runs(name, offset)
    return render(
        request,
        "sync.html",
        ns=registered.namespace,
        tab="syncs",
        sync=registered.to_dict(),
        runs=runs,
        offset=offset,
        can_write=can(request, registered.namespace),
    )


@router.get("/syncs/{name}/runs/{run_id}")
@page
def sync_run_page(request: Request, name: str, run_id: int) -> Response:
    registered, _ = syncs_api._visible(request, name, "read")
    browse = request.app.state.browse
    run = browse.sync_run(run_id)
    if run is None or run["sync"] != name:
        raise NotFound(f"no run {run_id} of sync {name!r}")
    plan, total = [], 0
    if run["commit_sha"] and not run["dry_run"]:
        plan, total = browse.commit_revisions(registered.namespace, run["commit_sha"])
    return render(
        request, "sync_run.html", ns=registered.namespace, tab="syncs", sync=name, run=run, plan=plan, total=total
    )


@router.post("/syncs/{name}/run")
@body("form")
@page
async def run_sync(request: Request, name: str) -> Response:
    await form_of(request)
    await run_in_threadpool(syncs_api.trigger, name, syncs_api.TriggerIn(), request)
    return back(f"/ui/syncs/{quote(name)}")


# -- settings ------------------------------------------------------------------------------


@router.get("/ns/{ns}/settings")
@page
def settings_page(request: Request, ns: str) -> Response:
    """The API's answer for the namespace (its effective settings, with what a caller may not
    read withheld), shown as a table."""
    namespace_page(request, ns)
    shown = namespaces_api.show_namespace(ns, request)
    effective = shown["effective"]
    rows = []
    for key in ("inherit", "upstream", "upstream_auth_env"):
        item = effective.get(key) or {"value": None, "from": None}
        rows.append({"key": key, **item})
    for key in ("upstream_allow", "upstream_deny"):
        for item in effective.get(key) or []:
            rows.append({"key": key, "value": item.get("patterns"), "from": item.get("from"), **item})
    for key, item in (effective.get("retention") or {}).items():
        if item["from"] is not None:  # the retention settings some namespace of the chain sets
            rows.append({"key": key, **item, "value": "off" if item["value"] is None else item["value"]})
    return render(
        request,
        "settings.html",
        ns=ns,
        tab="settings",
        rows=rows,
        own=shown["settings"],
        chain=effective.get("index_chain", []),
    )


# -- tokens --------------------------------------------------------------------------------


@router.get("/tokens")
@page
def tokens_page(request: Request, created: dict | None = None) -> Response:
    if caller(request) is None:
        raise Unauthenticated("sign in with an admin token")
    rows = tokens_api.list_tokens(request)
    return render(request, "tokens.html", tokens=rows, created=created)


@router.post("/tokens")
@body("form")
@page
async def create_token(request: Request) -> Response:
    form = await form_of(request)
    body = tokens_api.TokenIn(scope=form.get("scope", ""), role=form.get("role", "read"), name=form.get("name", ""))
    me = caller(request)
    if me is None or me.role != "admin":
        raise Forbidden("creating tokens needs the admin role")
    response = await run_in_threadpool(tokens_api.create_token, body, request)
    created = json.loads(response.body)
    rows = await run_in_threadpool(tokens_api.list_tokens, request)
    return render(request, "tokens.html", 201, tokens=rows, created=created)


@router.post("/tokens/{token_id}/revoke")
@body("form")
@page
async def revoke_token(request: Request, token_id: str) -> Response:
    await form_of(request)
    me = caller(request)
    if me is None or me.role != "admin":
        raise Forbidden("revoking tokens needs the admin role")
    await run_in_threadpool(tokens_api.revoke_token, token_id, request)
    return back("/ui/tokens")
