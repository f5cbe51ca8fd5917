"""The OpenAPI document says what the server does, and every error has one shape.

A dedicated server (no build worker, so queued builds stay queued) is seeded with a
namespace, a child, files with history and a wheel, then checked two ways: by explicit
assertions on the document and on answers FastAPI and Starlette used to shape themselves
(validation errors, unknown paths, wrong methods), and by a bounded schemathesis run that
sends generated requests to every operation and fails on any 5xx and on any answer the
document does not describe (status, content type, body schema, headers).

Operations that make the server contact a remote (sync, push, registered syncs, and the
settings that name an upstream) are exercised without credentials only: with a token,
generated URLs would send this machine's traffic to arbitrary hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import put_file, upload
from tests.support.dists import make_wheel
from tests.support.procs import Server, running

SEED_NS = "seed"
REMOTE_OPS = r"/api/v1/(namespaces/\{ns\}/(sync|push)|syncs)|/settings$"

HOOKS = '''
"""Hooks for the schemathesis run: serializers for raw archives, and a CPython 3.11.7 workaround."""
import schemathesis
from hypothesis.internal import lambda_sources

_describe = lambda_sources.lambda_description


def _safe_description(f):
    # CPython 3.11.7's ast.parse can raise "AST constructor recursion depth mismatch" deep in
    # a stack (fixed in 3.11.8); hypothesis calls it only to name a lambda in a repr.
    try:
        return _describe(f)
    except SystemError:
        return "lambda: <source unavailable>"


lambda_sources.lambda_description = _safe_description


@schemathesis.serializer("application/zip", "application/gzip", "application/x-tar")
def raw(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode()
'''


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("openapi")
    server = Server(root / "data", {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_MAX_UPLOAD_BYTES": "1048576"})
    with running(server):
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        with httpx.Client(base_url=server.url, timeout=30, headers=admin) as http:
            live = _Live(server)
            put_file(http, live, SEED_NS, "src/etl.py", b"print('v1')\n")
            put_file(http, live, SEED_NS, "src/etl.py", b"print('v2')\n")
            put_file(http, live, f"{SEED_NS}.child", "README.md", b"# child\n")
            upload(http, live, SEED_NS, make_wheel(root / "dists", "etl", "0.1.0"))
        yield server


class _Live:
    """The two attributes the seeding helpers read."""

    def __init__(self, server: Server) -> None:
        self.admin = {"Authorization": f"Bearer {server.admin_token}"}
        self.admin_token = server.admin_token


@pytest.fixture(scope="module")
def document(api_server: Server) -> dict:
    response = httpx.get(f"{api_server.url}/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def test_every_operation_documents_its_errors_in_one_shape(document: dict) -> None:
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, op in _operations(document):
        codes = set(op["responses"])
        if "422" in codes:
            assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
        expected = {"503"} if path == "/healthz" else {"400", "401", "403", "404", "503"}
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            expected |= {"409", "413"}
        assert expected <= codes, (method, path, sorted(codes))
        for code in expected:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error"


def test_security_schemes_and_content_types(document: dict) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["basic"]["scheme"] == "basic"
    paths = document["paths"]
    assert set(paths["/api/v1/namespaces/{ns}/export"]["get"]["responses"]["200"]["content"]) == {"application/zip"}
    archive = paths["/api/v1/namespaces/{ns}/archive"]
    assert set(archive["get"]["responses"]["200"]["content"]) == {"application/x-tar"}
    assert set(archive["post"]["requestBody"]["content"]) == {"application/x-tar"}
    page = paths["/{ns}/simple/{project}/"]["get"]["responses"]
    assert {"text/html", "application/vnd.pypi.simple.v1+json"} <= set(page["200"]["content"])
    assert "301" in page and "304" in page
    assert "application/octet-stream" in paths["/api/v1/namespaces/{ns}/files/{path}"]["put"]["requestBody"]["content"]
    assert "multipart/form-data" in paths["/{ns}/"]["post"]["requestBody"]["content"]
    for path in (
        "/api/v1/namespaces/{ns}/move",
        "/api/v1/namespaces/{ns}/import",
        "/api/v1/namespaces/{ns}/restore/{path}",
    ):
        assert "201" in paths[path]["post"]["responses"], path
    ns_param = next(p for p in paths["/api/v1/namespaces/{ns}"]["get"]["parameters"] if p["name"] == "ns")
    assert ns_param["schema"]["pattern"].startswith("^[a-z0-9]") and ns_param["schema"]["maxLength"] == 255


def test_validation_errors_are_in_packyard_shape(api_server: Server) -> None:
    response = httpx.get(f"{api_server.url}/api/v1/namespaces/{SEED_NS}/files/src/etl.py?revision=abc")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidInput" and "revision (query)" in body["detail"]
    admin = {"Authorization": f"Bearer {api_server.admin_token}"}
    response = httpx.post(f"{api_server.url}/api/v1/namespaces/{SEED_NS}/move", content=b"{not json", headers=admin)
    assert response.status_code == 422 and response.json()["error"] == "InvalidInput"


def test_unknown_paths_and_methods_answer_in_packyard_shape(api_server: Server) -> None:
    response = httpx.get(f"{api_server.url}/api/v1/no-such-thing")
    assert response.status_code == 404 and response.json()["error"] == "NotFound"
    response = httpx.patch(f"{api_server.url}/api/v1/namespaces/{SEED_NS}/files/src/etl.py")
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowed"
    # every method the path takes, across the routes that share it (Starlette named only the first)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


def _schemathesis(server: Server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "packyard_st_hooks.py").write_text(HOOKS)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [dictionaries.ns]
            values = ["{SEED_NS}", "{SEED_NS}.child", "{SEED_NS}.never-created"]
            [dictionaries.project]
            values = ["etl"]
            [dictionaries.filename]
            values = ["etl-0.1.0-py3-none-any.whl", "etl-0.1.0-py3-none-any.whl.metadata"]
            [dictionaries.path]
            values = ["src/etl.py", "README.md"]
            [dictionaries.build_id]
            values = [1, 2]

            [parameters]
            "path.ns" = {{ dictionary = "ns", probability = 0.6 }}
            "path.project" = {{ dictionary = "project", probability = 0.6 }}
            "path.filename" = {{ dictionary = "filename", probability = 0.6 }}
            "path.path" = {{ dictionary = "path", probability = 0.6 }}
            "path.build_id" = {{ dictionary = "build_id", probability = 0.5 }}
            """
        )
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,response_headers_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "8",
        "--no-shrink",
        "--seed",
        "20261129",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        *args,
    ]
    env = {"SCHEMATHESIS_HOOKS": "packyard_st_hooks", "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        command, cwd=tmp_path, env={**_base_env(), **env}, capture_output=True, text=True, timeout=300
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PACKYARD_", "PYTHONPATH"))}


def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(api_server: Server, tmp_path: Path) -> None:
    authed = _schemathesis(
        api_server,
        tmp_path,
        "--header",
        f"Authorization: Bearer {api_server.admin_token}",
        "--exclude-path-regex",
        REMOTE_OPS,
    )
    assert authed.returncode == 0, authed.stdout[-8000:] + authed.stderr[-2000:]
    anonymous = _schemathesis(api_server, tmp_path, "--include-path-regex", REMOTE_OPS)
    assert anonymous.returncode == 0, anonymous.stdout[-8000:] + anonymous.stderr[-2000:]
