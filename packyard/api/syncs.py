"""Git sync: one-off runs and push back per namespace, registered syncs, and webhooks."""

from __future__ import annotations

import logging
import uuid

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from packyard.api.builds import enqueue
from packyard.auth import actor, may_read, require, reveal, viewer
from packyard.limits import body as body_class
from packyard.store.credentials import allowed_env, secret_file
from packyard.store.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from packyard.store.names import validate_namespace
from packyard.store.tokens import Token
from packyard.sync.credentials import CredentialRef
from packyard.sync.push import push
from packyard.sync.registry import Deliveries, RegisteredSync, delivery_id, verify_webhook, wants_run
from packyard.sync.runner import SyncResult
from packyard.sync.spec import SyncSpec

router = APIRouter(tags=["sync"])
log = logging.getLogger("packyard.syncs")


class CredentialIn(BaseModel):
    """A reference to a secret the server holds: never the secret itself."""

    kind: str = "token"
    env: str | None = None
    file: str | None = None
    username: str = "x-access-token"

    def ref(self) -> CredentialRef:
        return CredentialRef(self.kind, self.env, self.file, self.username)


def check_credentials(request: Request, namespace: str, credential: CredentialIn | None, *names: str | None) -> None:
    """Refuse, up front, a credential ``namespace`` (the namespace the sync writes, whose
    credential it is) may not name: a server variable the operator did not list for it, or
    a secrets file neither its folder nor the shared one holds (store/credentials.py)."""
    settings = request.app.state.settings
    for name in (credential.env if credential else None, *names):
        if name:
            allowed_env(name, settings.credential_env_names, "a credential or webhook secret", namespace=namespace)
    if credential is not None and credential.file is not None:
        ref = credential.ref()
        if settings.secrets_dir is None:
            raise InvalidInput("the server has no secrets folder configured (PACKYARD_SECRETS_DIR)")
        if secret_file(settings.secrets_dir, str(ref.file), namespace) is None:
            raise InvalidInput(f"the secrets folder has no file {ref.file!r} for {namespace!r}")


class SpecIn(BaseModel):
    url: str
    ref: str | None = None
    path: str = ""
    prefix: str = ""
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    delete: bool = False
    credential: CredentialIn | None = None

    def spec(self) -> SyncSpec:
        return SyncSpec(
            self.url,
            self.ref,
            self.path,
            self.prefix,
            list(self.include),
            list(self.exclude),
            self.delete,
            self.credential.ref() if self.credential else None,
        )


class BuildOptions(BaseModel):
    build: bool = False
    """After applying, queue a build of every project folder whose files changed."""
    build_publish_to: str | None = None


class RunIn(SpecIn, BuildOptions):
    dry_run: bool = False


class RegisterIn(SpecIn, BuildOptions):
    name: str
    namespace: str
    webhook_secret_env: str | None = None


class TriggerIn(BaseModel):
    dry_run: bool = False


class PushIn(BaseModel):
    url: str
    branch: str
    path: str = ""
    prefix: str = ""
    message: str | None = None
    delete: bool = False
    dry_run: bool = False
    credential: CredentialIn | None = None


@router.post("/api/v1/namespaces/{ns}/sync", summary="Sync a git repository into the namespace (or plan it)")
def run_sync(ns: str, body: RunIn, request: Request) -> dict:
    validate_namespace(ns)
    spec = body.spec()
    token = require(request, ns, "write")
    check_credentials(request, ns, body.credential)
    if body.build_publish_to:
        validate_namespace(body.build_publish_to)
        require(request, body.build_publish_to, "write")
    result = request.app.state.syncer.run(ns, spec, dry_run=body.dry_run, actor=actor(token))
    return _with_builds(request, result, body.build, body.build_publish_to, actor(token), _token_id(token))


def _token_id(token: Token | None) -> str | None:
    return token.id if token else None


def _with_builds(
    request: Request, result: SyncResult, build: bool, publish_to: str | None, who: str, token_id: str | None
) -> dict:
    """The sync result, plus the builds queued for the project folders whose files changed."""
    out = result.to_dict()
    if not build or result.dry_run:
        return out
    changed = [e["path"] for e in result.entries if e["status"] in ("added", "updated", "deleted")]
    queued = []
    for folder in request.app.state.store.builds.project_folders(result.namespace, changed):
        entry, _ = enqueue(
            request, result.namespace, folder, publish_to, force=False, timeout=None, who=who, token_id=token_id
        )
        queued.append(entry["id"])
    out["builds"] = queued
    return out


@router.post("/api/v1/namespaces/{ns}/push", summary="Commit the namespace's files into a git branch and push")
def push_back(ns: str, body: PushIn, request: Request) -> dict:
    validate_namespace(ns)
    token = require(request, ns, "write")
    check_credentials(request, ns, body.credential)
    store = request.app.state.store
    store.namespaces.get(ns)
    result = push(
        store,
        ns,
        body.url,
        branch=body.branch,
        path=body.path,
        prefix=body.prefix,
        message=body.message,
        delete=body.delete,
        dry_run=body.dry_run,
        credential=body.credential.ref() if body.credential else None,
        secrets_dir=request.app.state.settings.secrets_dir,
        credential_envs=request.app.state.settings.credential_env_names,
        actor=actor(token),
        policy=request.app.state.syncer.policy,
    )
    return result.to_dict()


@router.post("/api/v1/syncs", status_code=201, summary="Register a named sync")
def register(body: RegisterIn, request: Request) -> JSONResponse:
    validate_namespace(body.namespace)
    spec = body.spec()
    token = require(request, body.namespace, "write")
    if body.build_publish_to:
        # the sync will publish there later, from a webhook, under this token's authority
        validate_namespace(body.build_publish_to)
        require(request, body.build_publish_to, "write")
    check_credentials(request, body.namespace, body.credential, body.webhook_secret_env)
    # the same remote rule as a one-off sync (server-local folders, internal hosts), now as
    # well as each time it runs: a sync that can never run is not registered
    request.app.state.syncer.policy.check(spec.url)
    registered = request.app.state.syncs.add(
        body.name,
        body.namespace,
        spec,
        webhook_secret_env=body.webhook_secret_env,
        build=body.build,
        build_publish_to=body.build_publish_to,
        actor=actor(token),
        token_id=_token_id(token),
    )
    return JSONResponse(registered.to_dict(), status_code=201)


@router.get("/api/v1/syncs", summary="List the registered syncs of the namespaces the caller may read")
def list_syncs(request: Request) -> list[dict]:
    token = viewer(request)
    return [s.to_dict() for s in request.app.state.syncs.list() if may_read(request, token, s.namespace)]


def _visible(request: Request, name: str, role: str) -> tuple[RegisteredSync, Token | None]:
    """The registered sync, checked like a private repository: whoever may not read its
    namespace gets the same 404 as for a sync that does not exist."""
    token = viewer(request)
    missing = f"no registered sync named {name!r}"
    try:
        registered = request.app.state.syncs.get(name)
    except NotFound:
        raise NotFound(missing) from None
    return registered, reveal(request, token, registered.namespace, role, missing)


def _authority(request: Request, registered: RegisteredSync, *, dry_run: bool, who: str) -> None:
    """Stop (and record the stopped run) unless the token the sync was registered under
    still exists, is not revoked and may still write every namespace the run writes."""
    publish_to = registered.build_publish_to if registered.build else None
    try:
        request.app.state.store.tokens.authority(
            registered.token_id, registered.what, registered.namespace, None if dry_run else publish_to
        )
    except Forbidden as exc:
        request.app.state.syncer.refuse(
            registered.namespace, registered.spec, exc, dry_run=dry_run, actor=who, sync_name=registered.name
        )
        raise


@router.get("/api/v1/syncs/{name}", summary="Show a registered sync")
def show_sync(name: str, request: Request) -> dict:
    registered, _ = _visible(request, name, "read")
    return registered.to_dict()


@router.delete("/api/v1/syncs/{name}", summary="Remove a registered sync (its namespace files stay)")
def remove_sync(name: str, request: Request) -> dict:
    _, token = _visible(request, name, "write")
    return request.app.state.syncs.remove(name, actor=actor(token)).to_dict()


@router.post("/api/v1/syncs/{name}/trigger", summary="Run a registered sync now")
def trigger(name: str, body: TriggerIn, request: Request) -> dict:
    registered, token = _visible(request, name, "write")
    if registered.build and registered.build_publish_to and not body.dry_run:
        require(request, registered.build_publish_to, "write")
    _authority(request, registered, dry_run=body.dry_run, who=actor(token))
    result = request.app.state.syncer.run(
        registered.namespace, registered.spec, dry_run=body.dry_run, actor=actor(token), sync_name=name
    )
    return _with_builds(request, result, registered.build, registered.build_publish_to, actor(token), _token_id(token))


@router.get("/api/v1/syncs/{name}/runs", summary="Run history: commit, counts per status, duration, error")
def runs(name: str, request: Request) -> list[dict]:
    _visible(request, name, "read")
    return request.app.state.syncs.runs(name)


@router.post("/api/v1/syncs/{name}/webhook", summary="GitHub/GitLab push webhook (HMAC or token verified)")
@body_class("webhook")
async def webhook(name: str, request: Request) -> JSONResponse:
    """A forge's push delivery. The sync then runs under the token that registered it.

    A delivery that does not prove it knows the sync's webhook secret learns nothing: a
    missing sync, a sync without a usable secret and a bad signature all get the same 404
    (the server log says which it was, for the operator). Everything but GitHub's HMAC is
    checked before the body is read, and the body is capped (``PACKYARD_MAX_WEBHOOK_BYTES``).
    A delivery id seen before is answered as a replay, without running again.
    """
    headers = {k.lower(): v for k, v in request.headers.items()}
    allowed = request.app.state.settings.credential_env_names
    hidden = NotFound(f"no registered sync named {name!r} takes this delivery")
    try:
        registered = request.app.state.syncs.get(name)
        verify_webhook(registered, headers, None, allowed)  # everything the body is not needed for
        body = bytearray()  # no list of chunks joined at the end: one copy of a body of up to 25 MB
        async for chunk in request.stream():
            body += chunk
        verify_webhook(registered, headers, body, allowed)
    except (NotFound, Unauthenticated) as exc:
        log.info("webhook delivery for sync %r refused: %s", name, exc.message)
        raise hidden from None
    if not wants_run(registered, body):
        return JSONResponse({"status": "ignored", "detail": "not a push to the branch this sync follows"}, 202)
    who = f"webhook:{name}"
    _authority(request, registered, dry_run=False, who=who)
    delivery = delivery_id(headers)
    deliveries = Deliveries(request.app.state.store.catalog)
    if delivery is not None:
        earlier = await anyio.to_thread.run_sync(deliveries.take, name, delivery)
        if earlier is not None:
            return JSONResponse(
                {
                    "status": "replay",
                    "detail": f"delivery {delivery} was already received at {earlier['received']}; not run again",
                    "delivery": delivery,
                },
                200,
            )
    syncs = request.app.state.syncs
    holder = uuid.uuid4().hex
    if not await anyio.to_thread.run_sync(syncs.take_lease, name, holder):
        # another request, on this server or another, runs the sync now: it runs once more
        # when it ends (this push may have landed after it read the branch)
        if delivery is not None:
            await anyio.to_thread.run_sync(deliveries.finish, name, delivery, True)
        detail = "the sync is running (on this server or another); it runs once more when that run ends"
        return JSONResponse({"status": "running", "detail": detail, "delivery": delivery}, 202)

    def run() -> dict:
        ok = False
        try:
            with syncs.holding(name, holder):  # renewed while it runs, however long
                while True:
                    result = request.app.state.syncer.run(
                        registered.namespace, registered.spec, dry_run=False, actor=who, sync_name=name
                    )
                    if not syncs.release_lease(name, holder):
                        break
            out = _with_builds(request, result, registered.build, registered.build_publish_to, who, registered.token_id)
            ok = True
            return out
        finally:
            if not ok:
                syncs.release_lease(name, holder, rerun=False)
            if delivery is not None:
                deliveries.finish(name, delivery, ok)

    return JSONResponse({"status": "ran", "result": await anyio.to_thread.run_sync(run), "delivery": delivery}, 200)
