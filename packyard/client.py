"""The Python API of packyard: :class:`Client`, what the ``packyard`` command is built on.

``from packyard import Client`` in a flow's task (a Metaflow step, an Airflow task, a Kestra
Script) does what the CLI does, without a subprocess::

    from packyard import Client

    with Client() as client:  # PACKYARD_URL and PACKYARD_TOKEN
        client.pull("company.sales", dest="work")
        python = client.env("company.sales", "etl", "pandas>=2")
        status = client.run("company.sales", ["python", "-m", "etl"], requirements=["etl"])

Every failure is raised as one class of ``packyard.store.errors`` (``NotFound``,
``Forbidden``, ``BackendUnavailable``, ...): a server error arrives as ``{"error":
ClassName, "detail": message}`` and is raised as that same class here, so a caller handles
one exception family whether the failure happened on this side or on the server.

The client needs the standard library, ``packaging`` and (for :meth:`Client.env` and
:meth:`Client.run`) ``uv``: it is what ``pip install packyard`` installs, without the server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from packyard import __version__
from packyard.defaults import ClientSettings
from packyard.store import errors
from packyard.store.names import validate_namespace, validate_path
from packyard.transport import Response, Transport, raise_for

DRAIN_BYTES = 64 * 1024
"""What a stream's caller may leave unread and still have the connection kept: past it, closed."""

if TYPE_CHECKING:
    from packyard.runs.envs import Environment

__all__ = ["Client", "Response", "raise_for", "qns", "qpath", "qseg", "BUILD_DONE"]

BUILD_DONE = ("succeeded", "failed", "cancelled")


def qpath(path: str) -> str:
    """A namespace path for a URL: validated first (a '.' or '..' segment could address
    another route), then percent-encoded, slashes kept."""
    return quote(validate_path(path), safe="/")


def qseg(value: str) -> str:
    """One URL path segment (a project name, a version)."""
    if value in ("", ".", ".."):
        raise errors.InvalidInput(f"{value!r} is not a valid name")
    return quote(value, safe="")


def qns(namespace: str) -> str:
    """A namespace for a URL: validated, and then it needs no quoting (letters, digits, dots)."""
    return validate_namespace(namespace)


class Client:
    """A packyard server, as a task (or the ``packyard`` command) uses it.

    ``url`` and ``token`` default to ``PACKYARD_URL`` and ``PACKYARD_TOKEN``; ``cache_dir``
    (where :meth:`env` keeps environments) to ``PACKYARD_CACHE_DIR``. One client may be used
    from several threads (each gets its own connection). Use it as a context manager, or
    call :meth:`close`, to close its connections.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, cache_dir: str | Path | None = None
    ) -> None:
        config = ClientSettings.from_env()
        self.url = (url or config.url).rstrip("/")
        self.token = token if token is not None else config.token
        self.cache_dir = Path(cache_dir) if cache_dir is not None else config.cache_dir
        headers = {"User-Agent": f"packyard/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.transport = Transport(self.url, headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections (it reconnects if used again)."""
        self.transport.close()

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        """One request to a path of the server (``/api/v1/...``); the body is read. Raises
        the packyard error for a 4xx/5xx answer. Keywords: ``params``, ``json``, ``content``
        (bytes, a binary file or an iterator of chunks), ``data`` + ``files`` (a form),
        ``headers``, ``timeout`` (seconds; None: no limit)."""
        response = self.transport.send(method, url, **kwargs)
        response.content  # noqa: B018 - read now: the connection is free for the next request
        raise_for(response)
        return response

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """:meth:`request`, and the decoded JSON body."""
        return self.request(method, url, **kwargs).json()

    def get_json(self, url: str) -> Any | None:
        """GET a JSON document; None for 404 (any other error is raised)."""
        response = self.transport.send("GET", url)
        response.content  # noqa: B018
        if response.status_code == 404:
            return None
        raise_for(response)
        return response.json()

    @contextlib.contextmanager
    def stream(self, url: str, params: dict | None = None, *, missing_ok: bool = False) -> Iterator[Response | None]:
        """GET with the body left to read (``iter_bytes``, ``read``); errors raised before
        the body is read. With ``missing_ok``, a 404 (or any error) yields None instead."""
        response = self.transport.send("GET", url, params=params)
        try:
            if response.status_code >= 400:
                response.content  # noqa: B018
                if missing_ok:
                    yield None
                    return
                raise_for(response)
            yield response
            if not response.raw.isclosed():  # the caller left part of the body
                left = response.raw.length
                if left is not None and left <= DRAIN_BYTES:
                    response.read()  # a little: read it, and the connection is reused
                else:
                    self.transport.discard()  # a bundle not wanted after all: not downloaded for nothing
        except BaseException:
            self.transport.discard()  # what is left of the body must not meet the next request
            raise

    # -- task side: files into a folder, environments, runs --------------------------------

    def pull(
        self,
        ns: str,
        dest: str | Path = ".",
        prefix: str = "",
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        with_parents: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Download the namespace's current files (under ``prefix``; globs ``include`` and
        ``exclude``; with ``with_parents`` the ancestors' first, nearer wins) into ``dest``,
        hash-checked and in parallel. Files already there with the same sha256 are kept.
        Returns ``{"downloaded": n, "unchanged": m}``."""
        from packyard.runs.pull import pull

        return pull(
            self, ns, Path(dest), prefix=prefix, include=list(include or []) or None,
            exclude=list(exclude or []) or None, with_parents=with_parents, progress=progress,
        )  # fmt: skip

    def plan_pull(
        self, ns: str, prefix: str = "", *, include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None, with_parents: bool = False,
    ) -> dict[str, tuple[str, dict]]:  # fmt: skip
        """What :meth:`pull` would download: path -> (namespace it comes from, file entry)."""
        from packyard.runs.pull import plan_pull

        return plan_pull(
            self, ns, prefix=prefix, include=list(include or []) or None,
            exclude=list(exclude or []) or None, with_parents=with_parents,
        )  # fmt: skip

    def fetch(
        self,
        ns: str,
        *names: str | Sequence[str],
        dest: str | Path = ".",
        version: str | None = None,
        kind: str | None = None,
    ) -> list[Path]:
        """Download distribution files through the namespace's index (with inheritance and
        the upstream), hash-checked, into ``dest``; returns their paths.

        Each name is a filename (``etl-0.1.0.tar.gz``) or a project name (``etl``): its newest
        file this interpreter can install (``version``: that version; ``kind``: only
        ``"wheel"`` or ``"sdist"``). Names may also be given as one list.
        """
        from packyard.runs.pull import fetch

        flat = [n for name in names for n in ([name] if isinstance(name, str) else name)]
        if not flat:
            raise errors.InvalidInput("fetch: name at least one distribution file or project")
        if kind not in (None, "wheel", "sdist"):
            raise errors.InvalidInput(f"kind must be 'wheel' or 'sdist', not {kind!r}")
        return fetch(self, ns, flat, Path(dest), version=version, kind=kind)

    def environment(
        self,
        ns: str,
        requirements: Sequence[str] = (),
        *,
        requirement_files: Sequence[str | Path] = (),
        python: str | None = None,
        refresh: bool = False,
        share: bool = True,
        cwd: str | Path | None = None,
    ) -> Environment:
        """A ready virtual environment with ``requirements`` (and the lines of
        ``requirement_files``) resolved against NS's index, cached under ``cache_dir`` and
        shared with other workers through the server (``share``). The details of
        :meth:`env`: its path, key, and whether it was reused, unpacked or built."""
        from packyard.runs.envs import EnvCache
        from packyard.runs.keys import read_requirements

        wanted = read_requirements([Path(f) for f in requirement_files], list(requirements))
        cache = EnvCache(self, self.url, self.cache_dir, self.token)
        return cache.ensure(ns, wanted, python=python, refresh=refresh, share=share, cwd=Path(cwd) if cwd else None)

    def env(
        self,
        ns: str,
        *requirements: str | Sequence[str],
        requirement_files: Sequence[str | Path] = (),
        python: str | None = None,
        refresh: bool = False,
        share: bool = True,
    ) -> Path:
        """The ``python`` of a ready environment with ``requirements`` resolved against NS
        (``packyard env``): run your code with it, e.g. ``subprocess.run([python, "x.py"])``.
        Requirements may also be given as one list."""
        flat = [r for req in requirements for r in ([req] if isinstance(req, str) else req)]
        environment = self.environment(
            ns, flat, requirement_files=requirement_files, python=python, refresh=refresh, share=share
        )
        return environment.python

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        requirements: Sequence[str] = (),
        requirement_files: Sequence[str | Path] = (),
        python: str | None = None,
        pull: bool = False,
        refresh: bool = False,
        share: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        on_environment: Callable[[Environment], None] | None = None,
    ) -> int:
        """Run ``argv`` in the environment of ``requirements`` (none: this process's PATH)
        and return its exit status (128+N when killed by signal N), as ``packyard run``.

        With ``pull``, NS's files are pulled into a temporary folder and the command runs
        there; a requirement path (``.``, ``./etl-0.1.0.tar.gz``) then means the pulled one.
        ``env`` is the command's environment (default: this process's); ``cwd`` its folder
        (without ``pull``)."""
        from packyard.runs.keys import activated, exit_status

        if not argv:
            raise errors.InvalidInput("run: no command given")
        with tempfile.TemporaryDirectory(prefix="packyard-run-") as tmp:
            where = Path(cwd) if cwd is not None else None
            if pull:
                self.pull(ns, tmp)
                where = Path(tmp)
            environment = None
            if requirements or requirement_files:
                environment = self.environment(
                    ns, requirements, requirement_files=requirement_files, python=python,
                    refresh=refresh, share=share, cwd=where,
                )  # fmt: skip
            run_env = dict(os.environ if env is None else env)
            if environment is not None:
                run_env = activated(environment.path, run_env)
                if on_environment is not None:
                    on_environment(environment)
            try:
                code = subprocess.call(list(argv), env=run_env, cwd=where)
            except FileNotFoundError as exc:
                raise errors.InvalidInput(f"command not found: {argv[0]}") from exc
        return exit_status(code)

    # -- namespaces ---------------------------------------------------------------------

    def create_namespace(self, name: str) -> dict:
        """Create a namespace (and any missing ancestor)."""
        return self.json("POST", "/api/v1/namespaces", json={"name": name})

    def namespaces(self, under: str | None = None) -> list[dict]:
        """Namespaces the token may read (``under``: that one and its children)."""
        return self.json("GET", "/api/v1/namespaces", params={"under": under})

    def namespace(self, name: str) -> dict:
        """A namespace: its own and effective settings, file count and size."""
        return self.json("GET", f"/api/v1/namespaces/{qns(name)}")

    def retention(self, name: str, *, apply: bool = False) -> dict:
        """Run (or with ``apply`` false, plan) the retention policies of a namespace and its children."""
        return self.json("POST", f"/api/v1/namespaces/{qns(name)}/retention", json={"apply": apply})

    def update_settings(self, ns: str, **changes: Any) -> dict:
        """Change a namespace's settings (admin role): inherit, upstream, upstream_allow, ..."""
        return self.json("PATCH", f"/api/v1/namespaces/{qns(ns)}/settings", json=changes)

    # -- files --------------------------------------------------------------------------

    def put_file(self, ns: str, path: str, content: IO[bytes] | Iterable[bytes] | bytes) -> tuple[dict, bool]:
        """Write ``path`` as its next revision: (the file entry, whether a revision was added —
        identical bytes add none)."""
        response = self.request("PUT", f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}", content=content)
        return response.json(), response.status_code == 201

    def get_file(self, ns: str, path: str, revision: int | None = None) -> bytes:
        """The bytes of ``path`` (latest, or ``revision``); :meth:`stream_file` for big files."""
        with self.stream_file(ns, path, revision) as response:
            return response.read()

    def stream_file(self, ns: str, path: str, revision: int | None = None) -> contextlib.AbstractContextManager:
        """A context manager yielding the streaming response (``headers``, ``iter_bytes()``)."""
        params = {"revision": revision} if revision is not None else None
        return self.stream(f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}", params)

    def list_files(self, ns: str, prefix: str = "") -> list[dict]:
        """Current files (under ``prefix``): path, revision, size, sha256, updated."""
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/files", params={"prefix": prefix})

    def delete_file(self, ns: str, path: str) -> dict:
        """Delete a file (a tombstone revision; its history stays)."""
        return self.json("DELETE", f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}")

    def move_file(self, ns: str, source: str, target: str, overwrite: bool = False) -> dict:
        """Move or rename a file."""
        body = {"source": source, "target": target, "overwrite": overwrite}
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/move", json=body)

    def history(self, ns: str, path: str) -> list[dict]:
        """Every revision of ``path``, tombstones included."""
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/revisions/{qpath(path)}")

    def restore(self, ns: str, path: str, revision: int) -> dict:
        """Make ``revision`` of ``path`` the current content again (as a new revision)."""
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/restore/{qpath(path)}", params={"revision": revision})

    def export(self, ns: str, prefix: str = "") -> contextlib.AbstractContextManager:
        """The current files (under ``prefix``) as a streamed zip (a context manager)."""
        return self.stream(f"/api/v1/namespaces/{qns(ns)}/export", {"prefix": prefix})

    def import_zip(self, ns: str, content: IO[bytes] | Iterable[bytes] | bytes, prefix: str = "") -> dict:
        """Expand a zip into files, all at once or not at all."""
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/import", params={"prefix": prefix}, content=content)

    def export_namespace(self, ns: str) -> contextlib.AbstractContextManager:
        """The namespace as one archive (files with history, distributions with yanks,
        settings; ``store/transfer.py``), streamed (a context manager)."""
        return self.stream(f"/api/v1/namespaces/{qns(ns)}/archive")

    def import_namespace(
        self,
        ns: str,
        content: IO[bytes] | Iterable[bytes] | bytes,
        *,
        replace: bool = False,
        rename_from: str | None = None,
    ) -> dict:
        """Import a namespace archive as ``ns`` (admin role): everything, or nothing.
        ``rename_from``: the namespace the archive holds, when ``ns`` is another name."""
        params: dict[str, Any] = {"replace": "true" if replace else "false", "rename_from": rename_from or None}
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/archive", params=params, content=content)

    def usage(self, ns: str | None = None) -> dict:
        """``ns usage``: a namespace's usage and quotas, or the whole store's (scope ``*``)."""
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/usage" if ns else "/api/v1/usage")

    # -- distributions ------------------------------------------------------------------

    def dists(self, ns: str, project: str | None = None) -> list[dict]:
        """The namespace's own distribution files (``project``: only that project's)."""
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/dists", params={"project": project})

    def yank(self, ns: str, project: str, version: str, reason: str = "", filename: str | None = None) -> list[dict]:
        """Yank a release (or one ``filename``): installers skip it unless pinned with ==."""
        body = {"reason": reason, "filename": filename}
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}/yank", json=body)

    def unyank(self, ns: str, project: str, version: str, filename: str | None = None) -> list[dict]:
        """Undo a yank."""
        body = {"filename": filename}
        url = f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}/unyank"
        return self.json("POST", url, json=body)

    def delete_dists(self, ns: str, project: str, version: str, filename: str | None = None) -> list[dict]:
        """Delete a release (every file of ``version``) or one ``filename``, for good."""
        url = f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}"
        return self.json("DELETE", url, params={"filename": filename})

    def index_url(self, ns: str) -> str:
        """The namespace's PEP 503 index (``pip install --index-url``)."""
        return f"{self.url}/{qns(ns)}/simple/"

    # -- git sync -----------------------------------------------------------------------

    @staticmethod
    def sync_spec(
        url: str,
        *,
        ref: str | None = None,
        path: str = "",
        prefix: str = "",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        delete: bool = False,
        credential: dict | None = None,
    ) -> dict:
        """What a sync takes from a repository (shared by :meth:`sync_run` and :meth:`sync_add`)."""
        return {
            "url": url, "ref": ref, "path": path, "prefix": prefix, "include": list(include),
            "exclude": list(exclude), "delete": delete, "credential": credential,
        }  # fmt: skip

    def sync_run(
        self,
        ns: str,
        url: str,
        *,
        dry_run: bool = False,
        build: bool = False,
        build_publish_to: str | None = None,
        **spec: Any,
    ) -> dict:
        """Sync a git repository into NS once (``dry_run``: the plan only); ``spec`` is what
        :meth:`sync_spec` takes (ref, path, prefix, include, exclude, delete, credential).
        With ``build``, a build is queued for every project folder whose files changed."""
        body = {**self.sync_spec(url, **spec), "dry_run": dry_run, "build": build, "build_publish_to": build_publish_to}
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/sync", json=body, timeout=None)

    def sync_push(self, ns: str, body: dict) -> dict:
        """Push NS's files back into a git repository."""
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/push", json=body, timeout=None)

    def sync_add(
        self,
        name: str,
        namespace: str,
        url: str,
        *,
        webhook_secret_env: str | None = None,
        build: bool = False,
        build_publish_to: str | None = None,
        **spec: Any,
    ) -> dict:
        """Register a named sync (triggered by name or by webhook)."""
        body = {
            **self.sync_spec(url, **spec), "name": name, "namespace": namespace,
            "webhook_secret_env": webhook_secret_env, "build": build, "build_publish_to": build_publish_to,
        }  # fmt: skip
        return self.json("POST", "/api/v1/syncs", json=body)

    def syncs(self) -> list[dict]:
        """Registered syncs."""
        return self.json("GET", "/api/v1/syncs")

    def sync(self, name: str) -> dict:
        """One registered sync."""
        return self.json("GET", f"/api/v1/syncs/{qseg(name)}")

    def sync_remove(self, name: str) -> dict:
        """Remove a registered sync (the namespace's files stay)."""
        return self.json("DELETE", f"/api/v1/syncs/{qseg(name)}")

    def sync_trigger(self, name: str, dry_run: bool = False) -> dict:
        """Run a registered sync now."""
        return self.json("POST", f"/api/v1/syncs/{qseg(name)}/trigger", json={"dry_run": dry_run}, timeout=None)

    def sync_runs(self, name: str) -> list[dict]:
        """A registered sync's history."""
        return self.json("GET", f"/api/v1/syncs/{qseg(name)}/runs")

    # -- builds -------------------------------------------------------------------------

    def build(
        self,
        ns: str,
        path: str = "",
        *,
        publish_to: str | None = None,
        force: bool = False,
        timeout: int | None = None,
        wait: bool = False,
    ) -> dict:
        """Queue a build of NS's project at ``path`` into an sdist and a wheel, published to
        ``publish_to`` (default NS); the same source already built is answered from cache
        (``"cached": true``). With ``wait``, returns the finished build."""
        body = {"namespace": ns, "path": path, "publish_to": publish_to, "force": force, "timeout": timeout}
        build = self.json("POST", "/api/v1/builds", json=body)
        if wait and build["state"] not in BUILD_DONE:
            build = {**self.wait_build(build["id"]), "cached": build.get("cached")}
        return build

    def wait_build(self, build_id: int, log: Callable[[bytes], None] | None = None, poll: float = 0.5) -> dict:
        """Wait for a build to end and return it; ``log`` gets its log as it grows."""
        offset = 0
        while True:
            if log is not None:
                data, _ = self.build_log(build_id, offset)
                if data:
                    log(data)
                    offset += len(data)
            build = self.build_info(build_id)
            if build["state"] in BUILD_DONE:
                if log is not None:
                    data, _ = self.build_log(build_id, offset)
                    if data:
                        log(data)
                return build
            time.sleep(poll)

    def builds(self, namespace: str | None = None) -> list[dict]:
        """Builds, newest first (``namespace``: only its)."""
        return self.json("GET", "/api/v1/builds", params={"namespace": namespace})

    def build_info(self, build_id: int) -> dict:
        """One build."""
        return self.json("GET", f"/api/v1/builds/{int(build_id)}")

    def build_log(self, build_id: int, offset: int = 0) -> tuple[bytes, str]:
        """(the build's log from ``offset``, its state)."""
        response = self.request("GET", f"/api/v1/builds/{int(build_id)}/log", params={"offset": offset})
        return response.content, response.headers.get("x-build-state", "")

    def cancel_build(self, build_id: int) -> dict:
        """Cancel a queued or running build."""
        return self.json("POST", f"/api/v1/builds/{int(build_id)}/cancel")

    # -- tokens -------------------------------------------------------------------------

    def create_token(self, scope: str, role: str, name: str = "") -> dict:
        """A new token: ``{"token": {...}, "secret": "pky_..."}`` (the secret is shown once)."""
        return self.json("POST", "/api/v1/tokens", json={"scope": scope, "role": role, "name": name})

    def tokens(self) -> list[dict]:
        """Tokens (never their secrets)."""
        return self.json("GET", "/api/v1/tokens")

    def revoke_token(self, token_id: str) -> dict:
        """Revoke a token; it stops working at once."""
        return self.json("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")
