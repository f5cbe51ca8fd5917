"""Bad upstream input: each a clear error, and nothing of it cached (no page, no file row, no blob).

The upstreams are an in-process HTTP server answering what each case needs (a wrong hash,
garbage pages, redirects to ``ftp://`` and ``file://``, an oversized page) and a socket that
accepts and never answers. The private servers have a 1 s timeout and a 16 KiB page cap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import create_ns, output, sha256
from tests.support.dists import make_wheel
from tests.upstream.conftest import (
    INSTALLERS,
    PRIVATE_MAX_PAGE_BYTES,
    Evil,
    Hanging,
    cached_pages,
    cli,
    error_of,
    mirrored,
    set_settings,
    unique_ns,
)

HTML = {"Content-Type": "text/html; charset=utf-8"}


def simple_page(*anchors: str) -> bytes:
    return ("<!DOCTYPE html><html><body>" + "".join(anchors) + "</body></html>").encode()


@dataclass(frozen=True)
class Upstreams:
    evil: Evil
    hanging: Hanging
    badhash: bytes
    """The bytes the upstream serves for badhash-1.0 (its page claims another hash)."""
    redirected: bytes
    slow: bytes


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    root = tmp_path_factory.mktemp("bad-input")
    badhash = make_wheel(root, "badhash", "1.0").read_bytes()
    redirected = make_wheel(root, "redirwheel", "1.0").read_bytes()
    slow = make_wheel(root, "slowwheel", "1.0").read_bytes()
    evil, hanging = Evil(), Hanging()
    claimed = sha256(b"what the upstream says it is")
    padding = "".join(f'<a href="/f/huge-0.{i}.tar.gz#sha256={"0" * 64}">huge-0.{i}.tar.gz</a>' for i in range(400))
    evil.routes.update(
        {
            "/simple/badhash/": (
                200,
                HTML,
                simple_page(
                    f'<a href="/files/badhash-1.0-py3-none-any.whl#sha256={claimed}">badhash-1.0-py3-none-any.whl</a>'
                ),
            ),
            "/files/badhash-1.0-py3-none-any.whl": (200, {"Content-Type": "application/octet-stream"}, badhash),
            "/simple/garbagejson/": (200, {"Content-Type": "application/vnd.pypi.simple.v1+json"}, b'{"files": [oops'),
            "/simple/plainjson/": (200, {"Content-Type": "application/json"}, b"<html>not json</html>"),
            "/simple/nofiles/": (200, {"Content-Type": "application/vnd.pypi.simple.v1+json"}, b'{"meta": {}}'),
            "/simple/garbagehtml/": (200, HTML, b"this is not a simple index page, there is not one tag in it"),
            "/simple/binary/": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n"),
            "/simple/redirftp/": (302, {"Location": "ftp://127.0.0.1/simple/redirftp/"}, b""),
            "/simple/redirfile/": (302, {"Location": "file:///etc/passwd"}, b""),
            "/simple/redirwheel/": (
                200,
                HTML,
                simple_page(
                    f'<a href="/files/redirwheel-1.0-py3-none-any.whl#sha256={sha256(redirected)}">'
                    "redirwheel-1.0-py3-none-any.whl</a>"
                ),
            ),
            "/files/redirwheel-1.0-py3-none-any.whl": (302, {"Location": "file:///etc/passwd"}, b""),
            "/simple/slowwheel/": (
                200,
                HTML,
                simple_page(
                    f'<a href="{hanging.url}slowwheel-1.0-py3-none-any.whl#sha256={sha256(slow)}">'
                    "slowwheel-1.0-py3-none-any.whl</a>"
                ),
            ),
            "/simple/huge/": (200, HTML, simple_page(padding)),
        }
    )
    assert len(evil.routes["/simple/huge/"][2]) > PRIVATE_MAX_PAGE_BYTES
    try:
        yield Upstreams(evil, hanging, badhash, redirected, slow)
    finally:
        evil.stop()
        hanging.stop()


@dataclass(frozen=True)
class Setup:
    server: LiveServer
    ns: str
    """Falls through to the evil upstream."""
    hang_ns: str
    """Falls through to the hanging socket."""


@pytest.fixture(scope="module")
def setup(private: LiveServer, upstreams: Upstreams) -> Setup:
    ns, hang_ns = unique_ns("evil"), unique_ns("hang")
    with httpx.Client(base_url=private.url, timeout=30) as http:
        create_ns(http, private, ns, hang_ns)
        set_settings(http, private, ns, upstream=upstreams.evil.url)
        set_settings(http, private, hang_ns, upstream=upstreams.hanging.url)
    return Setup(private, ns, hang_ns)


def assert_refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 502, (response.status_code, response.text)
    message = error_of(response)
    for word in words:
        assert word in message, message
    return message


def test_a_file_whose_bytes_do_not_match_the_hash_is_refused(
    setup: Setup, upstreams: Upstreams, tmp_path: Path
) -> None:
    server, filename = setup.server, "badhash-1.0-py3-none-any.whl"
    before = server.blob_hashes()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/{setup.ns}/simple/badhash/").status_code == 200  # the page itself is fine
        for _ in range(2):  # nothing kept: the second request fetches (and refuses) again
            assert_refused(http.get(f"/{setup.ns}/dists/{filename}"), filename, "do not match", "sha256")
    assert upstreams.evil.gets(f"/files/{filename}") >= 2
    assert mirrored(server, filename) == []
    assert not server.new_references(before)
    assert sha256(upstreams.badhash) not in server.referenced_hashes()

    # installers and the CLI fail, and say why
    failed = INSTALLERS["uv"](f"{server.url}/{setup.ns}/simple/", tmp_path / "t", "badhash", check=False)
    assert failed.returncode != 0 and "502" in output(failed), output(failed)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("badhash\n")
    warm = cli(server, "mirror", "warm", setup.ns, "-r", str(requirements), check=False)
    assert warm.returncode == 9, output(warm)
    assert "badhash" in warm.stderr and "failed" in warm.stderr, output(warm)
    assert mirrored(server, filename) == []
    assert not server.new_references(before)


@pytest.mark.parametrize(
    ("project", "words"),
    [
        ("garbagejson", ["not valid PEP 691 JSON"]),
        ("plainjson", ["not valid PEP 691 JSON"]),
        ("nofiles", ["not valid PEP 691 JSON", "files"]),
        ("garbagehtml", ["not an HTML simple-index page"]),
        ("binary", ["image/png", "not HTML or JSON"]),
    ],
)
def test_a_page_that_is_not_html_or_json_is_refused(setup: Setup, project: str, words: list[str]) -> None:
    with httpx.Client(base_url=setup.server.url, timeout=30) as http:
        assert_refused(http.get(f"/{setup.ns}/simple/{project}/"), f"/simple/{project}/", *words)
        assert_refused(http.get(f"/{setup.ns}/dists/{project}-1.0.tar.gz"), *words)
    assert cached_pages(setup.server, project) == []


@pytest.mark.parametrize("project", ["redirftp", "redirfile"])
def test_a_page_redirect_to_a_non_http_scheme_is_refused(setup: Setup, project: str) -> None:
    with httpx.Client(base_url=setup.server.url, timeout=30) as http:
        assert_refused(http.get(f"/{setup.ns}/simple/{project}/"), "non-HTTP")
    assert cached_pages(setup.server, project) == []


def test_a_file_redirect_to_a_non_http_scheme_is_refused(setup: Setup, upstreams: Upstreams) -> None:
    server, filename = setup.server, "redirwheel-1.0-py3-none-any.whl"
    before = server.blob_hashes()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get(f"/{setup.ns}/dists/{filename}")
    message = assert_refused(response, filename, "non-HTTP")
    assert "root:" not in response.text and "root:" not in message  # /etc/passwd never read
    assert mirrored(server, filename) == []
    assert not server.new_references(before)


def test_an_oversized_page_is_refused(setup: Setup) -> None:
    with httpx.Client(base_url=setup.server.url, timeout=30) as http:
        assert_refused(http.get(f"/{setup.ns}/simple/huge/"), "/simple/huge/", f"larger than {PRIVATE_MAX_PAGE_BYTES}")
    assert cached_pages(setup.server, "huge") == []


def test_an_upstream_that_hangs_times_out(setup: Setup, upstreams: Upstreams) -> None:
    with httpx.Client(base_url=setup.server.url, timeout=30) as http:
        started = time.monotonic()
        response = http.get(f"/{setup.hang_ns}/simple/hangpkg/")
        took = time.monotonic() - started
    assert_refused(response, "did not answer", "within 1s")
    assert took < 15, took
    assert cached_pages(setup.server, "hangpkg") == []


def test_a_file_download_that_hangs_times_out(setup: Setup, upstreams: Upstreams) -> None:
    server, filename = setup.server, "slowwheel-1.0-py3-none-any.whl"
    before = server.blob_hashes()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/{setup.ns}/simple/slowwheel/").status_code == 200
        assert_refused(http.get(f"/{setup.ns}/dists/{filename}"), "did not answer", "within 1s")
    assert mirrored(server, filename) == []
    assert not server.new_references(before)
