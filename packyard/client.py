"""The HTTP client the CLI (and task runs) use: one place that talks to a packyard server.

A server error arrives as ``{"error": ClassName, "detail": message}``; the client raises
the same class from ``store.errors`` again, so callers handle one exception family whether
the failure happened here or on the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import httpx

from packyard import __version__
from packyard.settings import Settings, secret
from packyard.store import errors
from packyard.store.names import validate_namespace, validate_path


def qpath(path: str) -> str:
    """A namespace path for a URL: validated first (httpx resolves '.' and '..' segments, so
    an unchecked path could address another route), then percent-encoded, slashes kept."""
    return quote(validate_path(path), safe="/")


def qseg(value: str) -> str:
    """One URL path segment (a project name, a version)."""
    if value in ("", ".", ".."):
        raise errors.InvalidInput(f"{value!r} is not a valid name")
    return quote(value, safe="")


def qns(namespace: str) -> str:
    """A namespace for a URL: validated, and then it needs no quoting (letters, digits, dots)."""
    return validate_namespace(namespace)


TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        name, detail = body.get("error"), body.get("detail")
    except ValueError:
        name, detail = None, None
    if not isinstance(detail, str):
        detail = f"{response.status_code} {response.reason_phrase}: {response.text[:200] or detail}"
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, errors.PackyardError)):
        cls = {
            400: errors.InvalidInput,
            401: errors.Unauthenticated,
            403: errors.Forbidden,
            404: errors.NotFound,
            409: errors.Conflict,
            413: errors.TooLarge,
            422: errors.InvalidInput,
            502: errors.RemoteFailed,
        }.get(response.status_code, errors.PackyardError)
    raise cls(detail)


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"User-Agent": f"packyard/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        return cls(settings.url, secret(settings.token))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise errors.BackendUnavailable(
                f"cannot reach the packyard server at {self.http.base_url}: {exc}; "
                "check PACKYARD_URL and that 'packyard serve' is running"
            ) from exc
        raise_for(response)
        return response

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.request(method, url, **kwargs).json()

    # -- namespaces ---------------------------------------------------------------------

    def create_namespace(self, name: str) -> dict:
        return self.json("POST", "/api/v1/namespaces", json={"name": name})

    def namespaces(self, under: str | None = None) -> list[dict]:
        return self.json("GET", "/api/v1/namespaces", params={"under": under} if under else None)

    def namespace(self, name: str) -> dict:
        return self.json("GET", f"/api/v1/namespaces/{qns(name)}")

    def retention(self, name: str, *, apply: bool = False) -> dict:
        """Run (or with ``apply`` false, plan) the retention policies of a namespace and its children."""
        return self.json("POST", f"/api/v1/namespaces/{qns(name)}/retention", json={"apply": apply})

    # -- files --------------------------------------------------------------------------

    def put_file(self, ns: str, path: str, content: IO[bytes] | Iterator[bytes] | bytes) -> tuple[dict, bool]:
        response = self.request("PUT", f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}", content=content)
        return response.json(), response.status_code == 201

    def stream_file(self, ns: str, path: str, revision: int | None = None):  # noqa: ANN201
        """A context manager yielding the streaming response (check ``headers``, iterate bytes)."""
        params = {"revision": revision} if revision is not None else None
        return _Streamed(self, f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}", params)

    def list_files(self, ns: str, prefix: str = "") -> list[dict]:
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/files", params={"prefix": prefix})

    def delete_file(self, ns: str, path: str) -> dict:
        return self.json("DELETE", f"/api/v1/namespaces/{qns(ns)}/files/{qpath(path)}")

    def move_file(self, ns: str, source: str, target: str, overwrite: bool = False) -> dict:
        return self.json(
            "POST",
            f"/api/v1/namespaces/{qns(ns)}/move",
            json={"source": source, "target": target, "overwrite": overwrite},
        )

    def history(self, ns: str, path: str) -> list[dict]:
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/revisions/{qpath(path)}")

    def restore(self, ns: str, path: str, revision: int) -> dict:
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/restore/{qpath(path)}", params={"revision": revision})

    def export(self, ns: str, prefix: str = ""):  # noqa: ANN201
        return _Streamed(self, f"/api/v1/namespaces/{qns(ns)}/export", {"prefix": prefix})

    def import_zip(self, ns: str, content: IO[bytes] | Iterator[bytes], prefix: str = "") -> dict:
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/import", params={"prefix": prefix}, content=content)

    def export_namespace(self, ns: str):  # noqa: ANN201
        """The namespace's archive as a streaming response (``store/transfer.py``)."""
        return _Streamed(self, f"/api/v1/namespaces/{qns(ns)}/archive", None)

    def import_namespace(
        self, ns: str, content: IO[bytes] | Iterator[bytes], *, replace: bool = False, rename_from: str | None = None
    ) -> dict:
        params: dict[str, Any] = {"replace": "true" if replace else "false"}
        if rename_from:
            params["rename_from"] = rename_from
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/archive", params=params, content=content)

    def update_settings(self, ns: str, **changes: Any) -> dict:
        return self.json("PATCH", f"/api/v1/namespaces/{qns(ns)}/settings", json=changes)

    # -- dists --------------------------------------------------------------------------

    def dists(self, ns: str, project: str | None = None) -> list[dict]:
        return self.json("GET", f"/api/v1/namespaces/{qns(ns)}/dists", params={"project": project} if project else None)

    def yank(self, ns: str, project: str, version: str, reason: str = "", filename: str | None = None) -> list[dict]:
        body = {"reason": reason, "filename": filename}
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}/yank", json=body)

    def unyank(self, ns: str, project: str, version: str, filename: str | None = None) -> list[dict]:
        body = {"filename": filename}
        return self.json(
            "POST", f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}/unyank", json=body
        )

    def delete_dists(self, ns: str, project: str, version: str, filename: str | None = None) -> list[dict]:
        params = {"filename": filename} if filename else None
        return self.json("DELETE", f"/api/v1/namespaces/{qns(ns)}/dists/{qseg(project)}/{qseg(version)}", params=params)

    # -- syncs ---------------------------------------------------------------------------

    def sync_run(self, ns: str, body: dict) -> dict:
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/sync", json=body, timeout=None)

    def sync_push(self, ns: str, body: dict) -> dict:
        return self.json("POST", f"/api/v1/namespaces/{qns(ns)}/push", json=body, timeout=None)

    def sync_add(self, body: dict) -> dict:
        return self.json("POST", "/api/v1/syncs", json=body)

    def syncs(self) -> list[dict]:
        return self.json("GET", "/api/v1/syncs")

    def sync(self, name: str) -> dict:
        return self.json("GET", f"/api/v1/syncs/{qseg(name)}")

    def sync_remove(self, name: str) -> dict:
        return self.json("DELETE", f"/api/v1/syncs/{qseg(name)}")

    def sync_trigger(self, name: str, dry_run: bool = False) -> dict:
        return self.json("POST", f"/api/v1/syncs/{qseg(name)}/trigger", json={"dry_run": dry_run}, timeout=None)

    def sync_runs(self, name: str) -> list[dict]:
        return self.json("GET", f"/api/v1/syncs/{qseg(name)}/runs")

    # -- builds --------------------------------------------------------------------------

    def build(self, body: dict) -> dict:
        return self.json("POST", "/api/v1/builds", json=body)

    def builds(self, namespace: str | None = None) -> list[dict]:
        return self.json("GET", "/api/v1/builds", params={"namespace": namespace} if namespace else None)

    def build_info(self, build_id: int) -> dict:
        return self.json("GET", f"/api/v1/builds/{int(build_id)}")

    def build_log(self, build_id: int, offset: int = 0) -> tuple[bytes, str]:
        response = self.request("GET", f"/api/v1/builds/{int(build_id)}/log", params={"offset": offset})
        return response.content, response.headers.get("x-build-state", "")

    def cancel_build(self, build_id: int) -> dict:
        return self.json("POST", f"/api/v1/builds/{int(build_id)}/cancel")

    # -- tokens -------------------------------------------------------------------------

    def create_token(self, scope: str, role: str, name: str = "") -> dict:
        return self.json("POST", "/api/v1/tokens", json={"scope": scope, "role": role, "name": name})

    def tokens(self) -> list[dict]:
        return self.json("GET", "/api/v1/tokens")

    def revoke_token(self, token_id: str) -> dict:
        return self.json("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")


class _Streamed:
    def __init__(self, client: Client, url: str, params: dict | None) -> None:
        self._client, self._url, self._params = client, url, params
        self._cm = None

    def __enter__(self) -> httpx.Response:
        try:
            self._cm = self._client.http.stream("GET", self._url, params=self._params)
            response = self._cm.__enter__()
        except httpx.TransportError as exc:
            raise errors.BackendUnavailable(
                f"cannot reach the packyard server at {self._client.http.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            response.read()
            self._cm.__exit__(None, None, None)
            raise_for(response)
        return response

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
