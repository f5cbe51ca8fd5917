"""Dist downloads on the hot path (``packyard/blob_send.py``), on both backends.

A small wheel is answered from memory (under ``PACKYARD_BLOB_CACHE_ITEM_BYTES``, 1 MiB);
a big one (about 1.5 MB) is streamed. Each is read twice where it matters: the first read
goes through the FastAPI routes and fills the file cache, the second is the hot path's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import create_ns, create_token, sha256, unique_ns, upload
from tests.support.dists import make_wheel


@dataclass(frozen=True)
class Dists:
    ns: str
    small: Path
    big: Path


@pytest.fixture(scope="module")
def dists(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Dists:
    root = tmp_path_factory.mktemp("downloads")
    ns = unique_ns("dl")
    small = make_wheel(root, "dlsmall", "1.0")
    # hex of random bytes: deflate halves it, no more, so the wheel stays over 1 MiB
    big = make_wheel(root, "dlbig", "1.0", module_body=f"DATA = {os.urandom(1536 * 1024).hex()!r}\n")
    assert big.stat().st_size > 1024 * 1024
    create_ns(module_http, server, ns)
    upload(module_http, server, ns, small, big)
    return Dists(ns, small, big)


@pytest.mark.parametrize("which", ["small", "big"])
def test_get_head_etag_304_and_ranges(which: str, dists: Dists, http: httpx.Client) -> None:
    path: Path = getattr(dists, which)
    data = path.read_bytes()
    size = len(data)
    url = f"/{dists.ns}/dists/{path.name}"
    for _ in range(3):  # routes, then the hot path (twice: the cache miss, then the hit)
        got = http.get(url)
        assert got.status_code == 200, got.text
        assert got.content == data
        assert got.headers["content-length"] == str(size)
        assert got.headers["content-type"] == "application/zip"
        assert got.headers["etag"] == f'"{sha256(data)}"'
        assert got.headers["accept-ranges"] == "bytes"

        assert http.get(url, headers={"if-none-match": got.headers["etag"]}).status_code == 304
        assert http.get(url, headers={"if-none-match": '"another"'}).content == data

        head = http.head(url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(size)
        assert head.headers["etag"] == got.headers["etag"]

        for header, first, last in [
            ("bytes=10-29", 10, 29),
            ("bytes=-7", size - 7, size - 1),
            (f"bytes={size - 100}-", size - 100, size - 1),
            (f"bytes=5-{size + 1000}", 5, size - 1),
        ]:
            part = http.get(url, headers={"range": header})
            assert part.status_code == 206, (header, part.text)
            assert part.content == data[first : last + 1], header
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert part.headers["content-length"] == str(last - first + 1)

        beyond = http.get(url, headers={"range": f"bytes={size}-"})
        assert beyond.status_code == 416
        assert beyond.json()["error"] == "RangeNotSatisfiable"
        assert beyond.headers["content-range"] == f"bytes */{size}"


def test_a_blob_missing_from_the_store_is_a_clean_404(server: LiveServer, tmp_path: Path, http: httpx.Client) -> None:
    """Answered with its status and packyard's error body, never a 200 that then breaks off."""
    ns = unique_ns("gone")
    create_ns(http, server, ns)
    small = make_wheel(tmp_path, "gonesmall", "1.0")
    big = make_wheel(tmp_path, "gonebig", "1.0", module_body=f"DATA = {os.urandom(1536 * 1024).hex()!r}\n")
    upload(http, server, ns, small, big)
    assert http.get(f"/{ns}/dists/{big.name}").status_code == 200  # the file is known to the hot path now
    for path in (small, big):
        server.blobs.delete(sha256(path.read_bytes()))
    for path in (small, big):
        for method in ("GET", "HEAD", "GET"):
            missing = http.request(method, f"/{ns}/dists/{path.name}")
            assert missing.status_code == 404, (path.name, method, missing.status_code)
            if method == "GET":
                assert missing.json()["error"] == "NotFound"


def test_a_token_gets_the_same_answer_cached_or_not(server: LiveServer, dists: Dists, http: httpx.Client) -> None:
    """The hot path checks a presented token exactly as the routes do."""
    _, reader = create_token(http, server, dists.ns, "read", "dl-reader")
    other = unique_ns("dl-other")
    create_ns(http, server, other)
    _, outsider = create_token(http, server, other, "read", "dl-outsider")
    for path in (dists.small, dists.big):
        url = f"/{dists.ns}/dists/{path.name}"
        for _ in range(2):
            assert http.get(url).content == path.read_bytes()
            assert http.get(url, headers={"Authorization": f"Bearer {reader}"}).content == path.read_bytes()
            assert http.get(url, headers={"Authorization": f"Bearer {outsider}"}).status_code == 403
            assert http.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_core_metadata_is_answered_by_the_hot_path(server: LiveServer, tmp_path: Path, http: httpx.Client) -> None:
    """uv and pip fetch ``{wheel}.metadata`` for every package they resolve: once read, it is
    answered from memory in front of the routes, exactly as the routes answer it — so even
    with the metadata's blob and the wheel's gone from the store (where the routes would
    re-derive it from the wheel, and find nothing), the client still gets it."""
    ns = unique_ns("meta")
    create_ns(http, server, ns)
    project = ns.replace("-", "")
    wheel = make_wheel(tmp_path, project, "1.0")
    upload(http, server, ns, wheel)
    url = f"/{ns}/dists/{wheel.name}.metadata"
    answers = [http.get(url) for _ in range(3)]  # the routes, then the hot path (a miss, a hit)
    first = answers[0]
    assert first.status_code == 200, first.text
    assert f"Name: {project}" in first.text
    etag = f'"{sha256(first.content)}"'
    for answer in answers:
        assert (answer.status_code, answer.content) == (200, first.content)
        assert {k: answer.headers[k] for k in ("content-type", "etag", "cache-control", "content-length")} == {
            "content-type": "text/plain; charset=utf-8",
            "etag": etag,
            "cache-control": "no-cache",
            "content-length": str(len(first.content)),
        }
    not_modified = http.get(url, headers={"if-none-match": etag})
    assert (not_modified.status_code, not_modified.headers["etag"], not_modified.content) == (304, etag, b"")
    head = http.head(url)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(first.content)), b"")

    server.blobs.delete(sha256(first.content))
    server.blobs.delete(sha256(wheel.read_bytes()))
    again = http.get(url)
    assert (again.status_code, again.content, again.headers["etag"]) == (200, first.content, etag)
    assert http.get(f"/{ns}/dists/{wheel.name}").status_code == 404  # the wheel itself is gone (not in memory)
