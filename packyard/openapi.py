"""The OpenAPI document, made to say what the server does.

FastAPI documents each operation from its signature: a 200 (or the route's status) and a
422 validation error. packyard answers more than that, and differently: every error is
``{"error", "detail"}`` (``http_errors.py``) with a 4xx or 5xx, validation errors included,
files, zips and index pages are not JSON, and some bodies are raw bytes or multipart forms
that the route reads itself. Clients generated from the schema, and the schemathesis run in
the test suite, rely on it being true; so the facts FastAPI cannot see are stated here, in
one table per kind of fact, and applied to the generated document once.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from packyard.store.names import NAMESPACE_PATTERN

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "description": "Every error packyard answers: the exception class and a sentence that says what was wrong.",
    "properties": {
        "error": {"type": "string", "description": "the exception class, e.g. InvalidInput, NotFound"},
        "detail": {"type": "string", "description": "what was wrong and what to do"},
    },
    "required": ["error", "detail"],
}

ERRORS: dict[int, str] = {
    400: "Bad input: a malformed name, path, parameter or body (nothing was changed)",
    401: "No credentials where they are needed, or credentials that match no live token",
    403: "The token's scope or role does not allow this",
    404: "The namespace, file, project, build, sync or token does not exist",
    409: "The change contradicts what is stored (an immutable file, an existing target)",
    413: "The body or an archive exceeds a configured limit",
    422: "A parameter or body field fails validation (a type or a range)",
    502: "A remote the server talks to for you (git remote, upstream index) failed",
    503: "The blob backend (disk or S3) is unavailable; nothing was changed",
    507: "The server's disk is full (StorageFull), or the write would take a namespace past its quota "
    "(QuotaExceeded); nothing was changed",
}

READ_ERRORS = (400, 401, 403, 404, 503)
WRITE_ERRORS = (*READ_ERRORS, 409, 413, 507)

BINARY = {"schema": {"type": "string", "format": "binary"}}
TEXT = {"schema": {"type": "string"}}
INDEX_PAGE = {
    "text/html": TEXT,
    "application/vnd.pypi.simple.v1+html": TEXT,
    "application/vnd.pypi.simple.v1+json": {"schema": {"type": "object"}},
}

# (method, path regex) -> facts. Paths are the OpenAPI templates FastAPI emits.
REMOTE = [
    ("POST", r"/api/v1/namespaces/\{ns\}/(sync|push)"),
    ("POST", r"/api/v1/syncs/\{name\}/(trigger|webhook)"),
    ("GET", r"/\{ns\}/(simple/(\{project\}/)?|dists/\{filename\})"),
]
"""Operations that reach a git remote or an upstream index, and so can answer 502."""

RESPONSES: list[tuple[str, str, dict[int | str, dict[str, Any]]]] = [
    (
        "GET",
        r"/api/v1/namespaces/\{ns\}/files/\{path\}",
        {
            200: {"description": "the file's bytes; ETag is its sha256", "content": {"*/*": BINARY}},
            206: {"description": "the requested byte range", "content": {"*/*": BINARY}},
            304: {"description": "the ETag in If-None-Match still matches"},
            416: {"description": "the Range lies outside the file"},
        },
    ),
    (
        "GET",
        r"/api/v1/namespaces/\{ns\}/export",
        {200: {"description": "a zip of the current files", "content": {"application/zip": BINARY}}},
    ),
    (
        "GET",
        r"/api/v1/namespaces/\{ns\}/archive",
        {200: {"description": "the namespace archive (tar)", "content": {"application/x-tar": BINARY}}},
    ),
    (
        "POST",
        r"/api/v1/namespaces/\{ns\}/archive",
        {201: {"description": "the namespace was created (or replaced) from the archive"}},
    ),
    (
        "GET",
        r"/api/v1/namespaces/\{ns\}/bundles/\{key\}",
        {
            200: {"description": "the bundle (gzip'd tar)", "content": {"*/*": BINARY}},
            206: {"description": "the requested byte range", "content": {"*/*": BINARY}},
            304: {"description": "the ETag in If-None-Match still matches"},
            416: {"description": "the Range lies outside the bundle"},
        },
    ),
    (
        "GET",
        r"/api/v1/builds/\{build_id\}/log",
        {200: {"description": "the log from the offset", "content": {"text/plain": TEXT}}},
    ),
    (
        "POST",
        r"/api/v1/namespaces/\{ns\}/restore/\{path\}",
        {
            200: {"description": "that revision is already the current content: nothing changed"},
            201: {"description": "a new revision with the earlier content"},
        },
    ),
    ("POST", r"/api/v1/namespaces/\{ns\}/move", {201: {"description": "the file's new revision at the target"}}),
    (
        "POST",
        r"/api/v1/namespaces/\{ns\}/import",
        {
            200: {"description": "every file already held these bytes: nothing changed"},
            201: {"description": "at least one file changed"},
        },
    ),
    (
        "PUT",
        r"/api/v1/namespaces/\{ns\}/bundles/\{key\}",
        {
            200: {"description": "this namespace already stored a bundle for the key"},
            201: {"description": "the bundle was stored"},
        },
    ),
    (
        "GET",
        r"/\{ns\}/simple/",
        {
            200: {"description": "PEP 503 HTML or PEP 691 JSON, by Accept", "content": INDEX_PAGE},
            304: {"description": "the ETag in If-None-Match still matches"},
            406: {"description": "no served type fits the Accept header"},
        },
    ),
    (
        "GET",
        r"/\{ns\}/simple/\{project\}/",
        {
            200: {"description": "PEP 503 HTML or PEP 691 JSON, by Accept", "content": INDEX_PAGE},
            301: {"description": "the project name is not in PEP 503 normal form: its normal URL"},
            304: {"description": "the ETag in If-None-Match still matches"},
            406: {"description": "no served type fits the Accept header"},
        },
    ),
    (
        "GET",
        r"/\{ns\}/dists/\{filename\}",
        {
            200: {"description": "the distribution, or its core metadata (name.metadata)", "content": {"*/*": BINARY}},
            206: {"description": "the requested byte range", "content": {"*/*": BINARY}},
            304: {"description": "the ETag in If-None-Match still matches"},
            416: {"description": "the Range lies outside the file"},
        },
    ),
    ("POST", r"/\{ns\}/", {200: {"description": "stored, or already held", "content": {"text/plain": TEXT}}}),
]
"""Success answers that FastAPI cannot infer from a route's signature."""

UPLOAD_FORM = {
    "type": "object",
    "required": ["content"],
    "properties": {
        ":action": {"type": "string", "enum": ["file_upload"]},
        "protocol_version": {"type": "string"},
        "name": {"type": "string"},
        "version": {"type": "string"},
        "filetype": {"type": "string", "enum": ["sdist", "bdist_wheel"]},
        "sha256_digest": {"type": "string"},
        "md5_digest": {"type": "string"},
        "blake2_256_digest": {"type": "string"},
        "content": {"type": "string", "format": "binary"},
    },
}

REQUEST_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", r"/api/v1/namespaces/\{ns\}/files/\{path\}", {"application/octet-stream": BINARY}),
    ("POST", r"/api/v1/namespaces/\{ns\}/import", {"application/zip": BINARY}),
    ("POST", r"/api/v1/namespaces/\{ns\}/archive", {"application/x-tar": BINARY}),
    ("PUT", r"/api/v1/namespaces/\{ns\}/bundles/\{key\}", {"application/gzip": BINARY}),
    ("POST", r"/api/v1/builds/\{build_id\}/log", {"text/plain": TEXT}),
    ("POST", r"/api/v1/syncs/\{name\}/webhook", {"application/json": {"schema": {"type": "object"}}}),
    ("POST", r"/\{ns\}/", {"multipart/form-data": {"schema": UPLOAD_FORM}}),
    (
        "POST",
        r"/api/v1/builds/\{build_id\}/artifacts",
        {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["worker"],
                    "properties": {
                        "worker": {"type": "string"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            }
        },
    ),
]
"""Bodies the route reads itself (raw bytes, a form), which FastAPI therefore cannot see."""

NAMESPACE_FIELDS = {"ns", "namespace", "publish_to", "build_publish_to"}
"""Parameters and body fields that hold a namespace, documented with the naming rule."""

NAMESPACE_SCHEMA = {"type": "string", "pattern": NAMESPACE_PATTERN, "maxLength": 255}

PUBLIC = {("GET", "/healthz")}
"""Operations that never look at credentials."""


def _matches(table: list, method: str, path: str) -> list:
    return [entry[2] for entry in table if entry[0] == method and re.fullmatch(entry[1], path)]


def _error(code: int) -> dict[str, Any]:
    return {
        "description": ERRORS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _namespace_rule(schema: dict[str, Any]) -> None:
    """Give every namespace field of a body schema the naming rule (optional fields keep null)."""
    for name, prop in schema.get("properties", {}).items():
        if name not in NAMESPACE_FIELDS:
            continue
        if prop.get("type") == "string":
            prop.update(NAMESPACE_SCHEMA)
        for option in prop.get("anyOf", []):
            if option.get("type") == "string":
                option.update(NAMESPACE_SCHEMA)


def _operation(method: str, path: str, op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    if "422" in responses:  # FastAPI knows which operations validate; packyard answers them in its own shape
        responses["422"] = _error(422)
    for facts in _matches(RESPONSES, method, path):
        for code, answer in facts.items():
            responses[str(code)] = {**responses.get(str(code), {}), **answer}
            if "content" not in answer and code in (200, 201, 301, 304, 416) and "content" in responses[str(code)]:
                responses[str(code)].pop("content")
    codes = READ_ERRORS if method in ("GET", "HEAD") else WRITE_ERRORS
    if (method, path) in PUBLIC:
        codes = (503,)
    if _matches([(m, p, True) for m, p in REMOTE], method, path):
        codes = (*codes, 502)
    for code in codes:
        responses.setdefault(str(code), _error(code))
    for body in _matches(REQUEST_BODIES, method, path):
        op["requestBody"] = {"required": True, "content": body}
    for param in op.get("parameters", []):
        if param.get("name") in NAMESPACE_FIELDS:
            param["schema"] = {**param.get("schema", {}), **NAMESPACE_SCHEMA}
        if param.get("name") == "path" and param.get("in") == "path":
            param["schema"] = {
                **param.get("schema", {}),
                "minLength": 1,
                "maxLength": 1024,
                "description": "a relative POSIX path: no empty, '.' or '..' segment, no leading '/', "
                "no backslash or control character; 255 bytes a segment",
            }
    if (method, path) in PUBLIC:
        op["security"] = []


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    for body in schemas.values():
        _namespace_rule(body)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a packyard token"},
        "basic": {"type": "http", "scheme": "basic", "description": "any user name, the token as password (twine)"},
    }
    # reads are anonymous unless the server turns that off; writes need a token (401 otherwise)
    schema["security"] = [{"bearer": []}, {"basic": []}, {}]
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            _operation(method.upper(), path, op)
    return schema


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
