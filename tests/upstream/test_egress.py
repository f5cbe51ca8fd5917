"""Upstreams are no probe of the server's network (issue 12, item 4).

A namespace admin is a tenant: the upstream it sets is reached only if its host resolves to
public addresses, or the operator lists it in ``PACKYARD_UPSTREAM_ALLOW_HOSTS``. This module's
server allows one loopback port (upstream ``A``) and nothing else of the machine:

- setting an upstream on another loopback port, ``localhost``, a private, link-local,
  unspecified or IPv4-mapped address is a 400 (resolution only: nothing is ever sent to a
  non-loopback address, here or anywhere in this module);
- an upstream set while the operator allowed all of loopback (the server's first run) is
  refused at fetch time once the setting no longer allows it — before connecting;
- ``A`` redirecting to, or linking files on, another loopback port (``B``) is refused on that
  hop: ``B`` never sees a request;
- the 502 texts name neither the refused host nor how a connection failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import create_ns, sha256, unique_ns
from tests.support.dists import make_wheel
from tests.support.procs import free_port, running
from tests.upstream.conftest import Evil, error_of


@pytest.fixture(scope="module")
def upstream_a() -> Iterator[Evil]:
    """The one upstream the operator allows (by address and port)."""
    evil = Evil()
    yield evil
    evil.stop()


@pytest.fixture(scope="module")
def upstream_b() -> Iterator[Evil]:
    """Another service on loopback: it must never be reached."""
    evil = Evil()
    evil.routes["/simple/etl/"] = (
        200,
        {"Content-Type": "text/html"},
        b'<html><body><a href="/files/etl-1.0-py3-none-any.whl#sha256=' + b"0" * 64 + b'">x</a></body></html>',
    )
    yield evil
    evil.stop()


def _port(evil: Evil) -> int:
    return evil.server_address[1]


@pytest.fixture(scope="module")
def closed_port() -> int:
    """An allowed loopback port where nothing listens."""
    return free_port()


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, upstream_a: Evil, upstream_b: Evil, closed_port: int
) -> Iterator[LiveServer]:
    """A server allowing only ``127.0.0.1:<A>`` (and a closed port), whose catalog holds an upstream on ``B`` set
    during a first run that allowed all of loopback (namespace ``legacy``)."""
    live = live_server(tmp_path_factory.mktemp("egress"), {"PACKYARD_UPSTREAM_ALLOW_HOSTS": "127.0.0.1"})
    with running(live.server), httpx.Client(base_url=live.url, timeout=30) as http:
        create_ns(http, live, "legacy")
        response = http.patch(
            "/api/v1/namespaces/legacy/settings", json={"upstream": upstream_b.url}, headers=live.admin
        )
        assert response.status_code == 200, response.text
    live.server.env["PACKYARD_UPSTREAM_ALLOW_HOSTS"] = f"127.0.0.1:{_port(upstream_a)}, 127.0.0.1:{closed_port}"
    with running(live.server):
        yield live


@pytest.fixture
def gh(guarded: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=30) as client:
        yield client


def set_upstream(http: httpx.Client, server: LiveServer, ns: str, url: str) -> httpx.Response:
    return http.patch(f"/api/v1/namespaces/{ns}/settings", json={"upstream": url}, headers=server.admin)


REFUSED_AT_SET_TIME = {
    "private 10/8": "http://10.11.12.13/simple/",
    "private 192.168/16": "http://192.168.1.1:3141/simple/",
    "cloud metadata": "http://169.254.169.254/latest/",
    "unspecified": "http://0.0.0.0:{b}/simple/",
    "IPv6 loopback": "http://[::1]:{b}/simple/",
    "IPv4-mapped loopback": "http://[::ffff:127.0.0.1]:{b}/simple/",
    "IPv4-mapped private": "http://[::ffff:10.0.0.1]/simple/",
    "loopback, other port": "http://127.0.0.1:{b}/simple/",
    "loopback, other address": "http://127.0.0.2:{a}/simple/",
    "localhost": "http://localhost:{b}/simple/",
}


@pytest.mark.parametrize("kind", list(REFUSED_AT_SET_TIME))
def test_setting_a_non_public_upstream_is_a_400(
    guarded: LiveServer, gh: httpx.Client, upstream_a: Evil, upstream_b: Evil, kind: str
) -> None:
    ns = unique_ns("egress")
    create_ns(gh, guarded, ns.split(".")[0], ns)
    url = REFUSED_AT_SET_TIME[kind].format(a=_port(upstream_a), b=_port(upstream_b))
    response = set_upstream(gh, guarded, ns, url)
    assert response.status_code == 400, response.text
    assert "PACKYARD_UPSTREAM_ALLOW_HOSTS" in error_of(response)
    settings = gh.get(f"/api/v1/namespaces/{ns}", headers=guarded.admin).json()
    assert "upstream" not in settings["settings"] and url not in str(settings), settings  # nothing stored
    assert upstream_b.seen == []


def test_the_allowed_upstream_is_accepted(guarded: LiveServer, gh: httpx.Client, upstream_a: Evil) -> None:
    ns = unique_ns("egress")
    create_ns(gh, guarded, ns.split(".")[0], ns)
    assert set_upstream(gh, guarded, ns, upstream_a.url).status_code == 200


def test_an_upstream_set_before_the_operator_narrowed_the_list_is_refused_at_fetch_time(
    guarded: LiveServer, gh: httpx.Client, upstream_b: Evil
) -> None:
    response = gh.get("/legacy/simple/etl/")
    assert response.status_code == 502, response.text
    detail = error_of(response)
    assert "no connection was made" in detail
    assert upstream_b.seen == []


@pytest.mark.parametrize("target", ["http://localhost:{b}", "http://127.0.0.1:{b}", "http://[::ffff:127.0.0.1]:{b}"])
def test_a_redirect_to_a_host_not_allowed_is_refused_on_that_hop(
    guarded: LiveServer, gh: httpx.Client, upstream_a: Evil, upstream_b: Evil, target: str
) -> None:
    ns = unique_ns("egress")
    create_ns(gh, guarded, ns.split(".")[0], ns)
    assert set_upstream(gh, guarded, ns, upstream_a.url).status_code == 200
    location = target.format(b=_port(upstream_b)) + "/simple/etl/"
    upstream_a.routes["/simple/etl/"] = (302, {"Location": location}, b"")

    response = gh.get(f"/{ns}/simple/etl/")
    assert response.status_code == 502, response.text
    detail = error_of(response)
    assert "no connection was made" in detail
    assert str(_port(upstream_b)) not in detail and "localhost" not in detail
    assert upstream_a.gets("/simple/etl/") >= 1
    assert upstream_b.seen == []


def test_a_file_linked_on_a_host_not_allowed_is_refused(
    guarded: LiveServer, gh: httpx.Client, upstream_a: Evil, upstream_b: Evil, tmp_path
) -> None:
    """A page on the allowed upstream may link files anywhere: each file URL is checked too."""
    ns = unique_ns("egress")
    create_ns(gh, guarded, ns.split(".")[0], ns)
    assert set_upstream(gh, guarded, ns, upstream_a.url).status_code == 200
    wheel = make_wheel(tmp_path, "linked", "1.0")
    href = f"http://127.0.0.1:{_port(upstream_b)}/files/{wheel.name}#sha256={sha256(wheel)}"
    page = f'<html><body><a href="{href}">{wheel.name}</a></body></html>'.encode()
    upstream_a.routes["/simple/linked/"] = (200, {"Content-Type": "text/html"}, page)

    listed = gh.get(f"/{ns}/simple/linked/")
    assert listed.status_code == 200, listed.text
    response = gh.get(f"/{ns}/dists/{wheel.name}")
    assert response.status_code == 502, response.text
    assert "no connection was made" in error_of(response)
    assert upstream_b.seen == []


def test_an_unreachable_upstream_says_so_without_saying_how(
    guarded: LiveServer, gh: httpx.Client, closed_port: int
) -> None:
    """An allowed port where nothing listens: the answer says "unreachable", not why (a closed
    port and a filtered one must read the same); the reason goes to the server log."""
    ns = unique_ns("egress")
    create_ns(gh, guarded, ns.split(".")[0], ns)
    assert set_upstream(gh, guarded, ns, f"http://127.0.0.1:{closed_port}/simple/").status_code == 200
    response = gh.get(f"/{ns}/simple/etl/")
    assert response.status_code == 502, response.text
    detail = error_of(response)
    assert "unreachable" in detail
    assert "Errno" not in detail and "refused" not in detail.lower(), detail
    assert any("Connection refused" in line or "ConnectError" in line for line in guarded.log_lines())
