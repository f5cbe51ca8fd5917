"""Registered syncs: named specs stored in the catalog (references to secrets, never secrets),
their run history, and the webhook check that lets GitHub or GitLab trigger one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from packyard.store.catalog import Catalog, now
from packyard.store.credentials import env_allowed
from packyard.store.errors import Conflict, InvalidInput, NotFound, PackyardError, Unauthenticated
from packyard.store.names import validate_namespace
from packyard.sync.credentials import redact_url, split_userinfo
from packyard.sync.spec import SyncSpec

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
log = logging.getLogger("packyard.sync")

LEASE_SECONDS = 900.0
"""How long a sync lease outlives a server that died holding it."""


@dataclass
class RegisteredSync:
    name: str
    namespace: str
    spec: SyncSpec
    webhook_secret_env: str | None = None
    build: bool = False
    build_publish_to: str | None = None
    created: str = ""
    created_by: str | None = None
    token_id: str | None = None
    """The token whose authority the sync runs under (the one that registered it)."""

    @property
    def what(self) -> str:
        return f"sync {self.name!r}"

    def to_dict(self) -> dict:
        """For showing: the URL without any credential in it (the stored spec keeps it to run)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "spec": {**self.spec.to_dict(), "url": redact_url(self.spec.url)},
            "webhook_secret_env": self.webhook_secret_env,
            "build": self.build,
            "build_publish_to": self.build_publish_to,
            "created": self.created,
            "created_by": self.created_by,
            "token_id": self.token_id,
        }


class SyncRegistry:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def add(
        self,
        name: str,
        namespace: str,
        spec: SyncSpec,
        *,
        webhook_secret_env: str | None = None,
        build: bool = False,
        build_publish_to: str | None = None,
        actor: str,
        token_id: str | None,
    ) -> RegisteredSync:
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"sync name {name!r} must be lowercase letters, digits, '-' or '_'")
        validate_namespace(namespace)
        if webhook_secret_env is not None and not _ENV.fullmatch(webhook_secret_env):
            raise InvalidInput(f"{webhook_secret_env!r} is not an environment variable name")
        _, user, password = split_userinfo(spec.url)
        if user or password:
            raise InvalidInput(
                "a registered sync never stores credentials: remove them from the URL and name a credential "
                "(--token-env VAR or --token-file NAME) instead"
            )
        if build_publish_to is not None:
            validate_namespace(build_publish_to)
        registered = RegisteredSync(
            name, namespace, spec, webhook_secret_env, build, build_publish_to, now(), actor, token_id
        )
        with self.catalog.write() as db:
            if self.catalog.one("SELECT 1 FROM syncs WHERE name = ?", (name,)):
                raise Conflict(f"a sync named {name!r} already exists; remove it first or pick another name")
            stored = {
                "spec": spec.to_dict(),
                "webhook_secret_env": webhook_secret_env,
                "build": build,
                "build_publish_to": build_publish_to,
            }
            db.insert(
                "syncs",
                {
                    "name": name,
                    "namespace": namespace,
                    "spec": json.dumps(stored),
                    "created": registered.created,
                    "created_by": actor,
                    "token_id": token_id,
                },
            )
            self.catalog.audit(actor, "sync.add", namespace, json.dumps({"name": name}))
        return registered

    def get(self, name: str) -> RegisteredSync:
        row = self.catalog.one("SELECT * FROM syncs WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no registered sync named {name!r}")
        stored = json.loads(row["spec"])
        return RegisteredSync(
            name=row["name"],
            namespace=row["namespace"],
            spec=SyncSpec.from_dict(stored["spec"]),
            webhook_secret_env=stored.get("webhook_secret_env"),
            build=bool(stored.get("build")),
            build_publish_to=stored.get("build_publish_to"),
            created=row["created"],
            created_by=row["created_by"],
            token_id=row.get("token_id"),
        )

    def list(self) -> list[RegisteredSync]:
        return [self.get(row["name"]) for row in self.catalog.query("SELECT name FROM syncs ORDER BY name")]

    def remove(self, name: str, *, actor: str) -> RegisteredSync:
        registered = self.get(name)
        with self.catalog.write() as db:
            db.delete("syncs", {"name": name})
            self.catalog.audit(actor, "sync.remove", registered.namespace, json.dumps({"name": name}))
        return registered

    # -- leases: a registered sync runs on one server at a time ----------------------------

    def take_lease(self, name: str, holder: str, ttl: float = LEASE_SECONDS) -> bool:
        """Take the right to run sync ``name`` now (True, then :meth:`release_lease`), or — when
        another request on any server holds it — ask that holder to run once more when it
        ends (False). A lease whose holder died lapses after ``ttl`` seconds. Delivery ids are
        :class:`Deliveries`' to remember; the lease only keeps two runs apart.
        """
        clock = time.time()
        with self.catalog.write():
            row = self.catalog.one("SELECT holder, expires FROM sync_leases WHERE sync = ?", (name,))
            if row is not None and row["holder"] is not None and row["expires"] > clock:
                self.catalog.query("UPDATE sync_leases SET pending = 1 WHERE sync = ?", (name,))
                return False
            if row is None:
                self.catalog.query(
                    "INSERT INTO sync_leases (sync, holder, expires, pending) VALUES (?, ?, ?, 0)",
                    (name, holder, clock + ttl),
                )
            else:
                self.catalog.query(
                    "UPDATE sync_leases SET holder = ?, expires = ?, pending = 0 WHERE sync = ?",
                    (holder, clock + ttl, name),
                )
        return True

    @contextmanager
    def holding(self, name: str, holder: str, ttl: float = LEASE_SECONDS) -> Iterator[None]:
        """Keep ``holder``'s lease on sync ``name`` alive while the body runs: a thread renews
        it every ``ttl / 3`` seconds. Without it a run longer than ``ttl`` (a big repository,
        a build after it) would let a late delivery start a second run beside it; a holder
        that dies stops renewing, and its lease still lapses after ``ttl``."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    if not self.renew_lease(name, holder, ttl):
                        return  # released (or lapsed and taken): nothing left to keep
                except PackyardError as exc:  # the database is away: try again at the next tick
                    log.warning("could not renew the lease of sync %r: %s", name, exc.message)

        keeper = threading.Thread(target=renew, name=f"sync-lease:{name}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()

    def renew_lease(self, name: str, holder: str, ttl: float = LEASE_SECONDS) -> bool:
        """Push the lease's end ``ttl`` seconds ahead; False when ``holder`` no longer holds it."""
        with self.catalog.write():
            row = self.catalog.one("SELECT holder FROM sync_leases WHERE sync = ?", (name,))
            if row is None or row["holder"] != holder:
                return False
            self.catalog.query("UPDATE sync_leases SET expires = ? WHERE sync = ?", (time.time() + ttl, name))
        return True

    def release_lease(self, name: str, holder: str, ttl: float = LEASE_SECONDS, *, rerun: bool = True) -> bool:
        """End a run; True when a delivery arrived meanwhile and the holder must run again
        (never with ``rerun`` false: a failed run gives the lease up)."""
        with self.catalog.write():
            row = self.catalog.one("SELECT holder, pending FROM sync_leases WHERE sync = ?", (name,))
            if row is None or row["holder"] != holder:
                return False
            if row["pending"] and rerun:
                self.catalog.query(
                    "UPDATE sync_leases SET pending = 0, expires = ? WHERE sync = ?", (time.time() + ttl, name)
                )
                return True
            self.catalog.query("UPDATE sync_leases SET holder = NULL, expires = 0, pending = 0 WHERE sync = ?", (name,))
        return False

    def runs(self, name: str, limit: int = 50) -> list[dict]:
        self.get(name)
        return self.catalog.query("SELECT * FROM sync_runs WHERE sync = ? ORDER BY id DESC LIMIT ?", (name, limit))


DELIVERY_HEADERS = ("x-github-delivery", "x-gitlab-event-uuid", "idempotency-key")
"""What GitHub (a GUID per delivery, kept by a manual redelivery) and GitLab send to name one."""
DELIVERY_MEMORY = timedelta(days=7)


def delivery_id(headers: dict[str, str]) -> str | None:
    for name in DELIVERY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value[:200]
    return None


class Deliveries:
    """Webhook delivery ids a sync has taken, in the catalog so every server process and a
    restarted one know them. A delivery whose run failed is forgotten, so the forge's
    "redeliver" (which keeps the id) can retry it."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def take(self, sync: str, delivery: str) -> dict | None:
        """Record ``delivery`` as running; the earlier record instead when it was already taken."""
        cutoff = (datetime.now(UTC) - DELIVERY_MEMORY).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self.catalog.write() as db:
            db.execute("DELETE FROM webhook_deliveries WHERE received < ?", (cutoff,))
            earlier = self.catalog.one(
                "SELECT * FROM webhook_deliveries WHERE sync = ? AND delivery = ?", (sync, delivery)
            )
            if earlier is not None:
                return earlier
            db.insert("webhook_deliveries", {"sync": sync, "delivery": delivery, "received": now(), "state": "running"})
        return None

    def finish(self, sync: str, delivery: str, ok: bool) -> None:
        with self.catalog.write() as db:
            if ok:
                db.execute(
                    "UPDATE webhook_deliveries SET state = 'ran' WHERE sync = ? AND delivery = ?", (sync, delivery)
                )
            else:
                db.execute("DELETE FROM webhook_deliveries WHERE sync = ? AND delivery = ?", (sync, delivery))


def verify_webhook(
    registered: RegisteredSync,
    headers: dict[str, str],
    body: bytes | bytearray | None,
    allowed_envs: tuple[str, ...] = (),
) -> None:
    """Accept GitHub's ``X-Hub-Signature-256`` HMAC or GitLab's ``X-Gitlab-Token``; else 401.

    With ``body=None`` (before the body is read) everything but GitHub's HMAC is checked, so a
    caller without the secret costs the server no body read unless it sends a signature header.
    """
    if not registered.webhook_secret_env:
        raise Unauthenticated(f"sync {registered.name!r} has no webhook secret; register it with --webhook-secret-env")
    if not env_allowed(registered.webhook_secret_env, allowed_envs, registered.namespace):
        raise Unauthenticated("the webhook secret's variable is not in PACKYARD_CREDENTIAL_ENVS for this namespace")
    secret = os.environ.get(registered.webhook_secret_env, "")
    if not secret:
        raise Unauthenticated("the webhook secret is not set on the server")
    signature = headers.get("x-hub-signature-256")
    if signature:
        if body is None:
            return
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.encode(), expected.encode()):
            return
        raise Unauthenticated("X-Hub-Signature-256 does not match the webhook secret")
    token = headers.get("x-gitlab-token")
    if token:
        if hmac.compare_digest(token.encode(), secret.encode()):
            return
        raise Unauthenticated("X-Gitlab-Token does not match the webhook secret")
    raise Unauthenticated("the webhook request carries no X-Hub-Signature-256 or X-Gitlab-Token")


def wants_run(registered: RegisteredSync, body: bytes | bytearray) -> bool:
    """True when a GitHub/GitLab push event is for the branch this sync follows.

    A sync without a ref follows the repository's default branch, which both forges name in
    the payload (``repository.default_branch``, ``project.default_branch``).
    """
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        raise InvalidInput("the webhook body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the webhook body is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return False
    branch = ref.removeprefix("refs/heads/")
    wanted = registered.spec.ref
    if wanted is None:
        repo = payload.get("repository") or payload.get("project") or {}
        wanted = repo.get("default_branch") if isinstance(repo, dict) else None
    return branch == wanted
