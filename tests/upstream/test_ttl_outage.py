"""TTL and outage, on private servers with ``PACKYARD_UPSTREAM_TTL=1``.

The upstream is a static directory served by ``python -m http.server`` that the test stops:
after that, cached pages are served marked ``X-Packyard-Upstream: stale`` and installs of
files fetched before (by an install or by ``packyard mirror warm``) still succeed.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer
from tests.support.clients import JSON_V1, create_ns, output
from tests.support.dists import make_wheel
from tests.upstream.conftest import (
    INSTALLERS,
    PRIVATE_TTL,
    Evil,
    StaticIndex,
    cached_pages,
    cli,
    error_of,
    in_parallel,
    installed,
    mirrored,
    set_settings,
    unique_ns,
    wait_past_ttl,
)


def versions(http: httpx.Client, url: str) -> list[str]:
    response = http.get(url, headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    return response.json()["versions"]


def test_pages_expire_and_an_outage_serves_the_cache(
    private: LiveServer, static_index: StaticIndex, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    static = static_index
    static.publish(make_wheel(wheels, "ttlpkg", "1.0", requires=["ttldep"]))
    static.publish(make_wheel(wheels, "ttldep", "1.0"))
    static.publish(make_wheel(wheels, "warmpkg", "1.0", requires=["warmdep"]))
    static.publish(make_wheel(wheels, "warmdep", "1.0"))
    static.publish(make_wheel(wheels, "platpkg", "1.0", requires_python=">=3.8"))
    static.publish(make_wheel(wheels, "coldpkg", "1.0"))
    static.start()
    ns = unique_ns("ttl")
    simple = f"{private.url}/{ns}/simple/"
    with httpx.Client(base_url=private.url, timeout=30) as http:
        create_ns(http, private, ns)
        set_settings(http, private, ns, upstream=static.url)

        # fetched once, then reused for the TTL
        assert versions(http, f"/{ns}/simple/ttlpkg/") == ["1.0"]
        fetched_at = time.monotonic()
        static.publish(make_wheel(wheels, "ttlpkg", "2.0", requires=["ttldep"]))
        assert versions(http, f"/{ns}/simple/ttlpkg/") == ["1.0"] or time.monotonic() - fetched_at >= PRIVATE_TTL
        # after the TTL the page is fetched again and the new version appears
        wait_past_ttl(fetched_at)
        asked = static.gets("/simple/ttlpkg/")
        assert versions(http, f"/{ns}/simple/ttlpkg/") == ["1.0", "2.0"]
        assert static.gets("/simple/ttlpkg/") == asked + 1

    # before the outage: one install fetches ttlpkg 2.0 + ttldep; mirror warm fetches the rest
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("warmpkg\n")
    platform_requirements = tmp_path / "platform.txt"
    platform_requirements.write_text("platpkg>=1\n")
    install, warm, warm_platform = in_parallel(
        lambda: INSTALLERS["uv"](simple, tmp_path / "before", "ttlpkg"),
        lambda: cli(private, "mirror", "warm", ns, "-r", str(requirements)),
        lambda: cli(
            private,
            "mirror",
            "warm",
            ns,
            "-r",
            str(platform_requirements),
            "--python-version",
            "3.11",
            "--platform",
            "manylinux2014_x86_64",
        ),
    )
    assert installed(tmp_path / "before") == {"ttlpkg": "2.0", "ttldep": "1.0"}
    assert "cached warmpkg-1.0-py3-none-any.whl" in warm.stdout, output(warm)
    assert "cached warmdep-1.0-py3-none-any.whl" in warm.stdout, output(warm)
    assert "cached platpkg-1.0-py3-none-any.whl" in warm_platform.stdout, output(warm_platform)
    for name in ("warmpkg", "warmdep", "platpkg"):
        assert mirrored(private, f"{name}-1.0-py3-none-any.whl"), name
    assert static.gets("/files/warmpkg-1.0-py3-none-any.whl") == 1

    # the outage
    static.stop()
    outage = time.monotonic()
    wait_past_ttl(outage)
    with httpx.Client(base_url=private.url, timeout=30) as http:
        for accept in (JSON_V1, "text/html"):
            stale = http.get(f"/{ns}/simple/ttlpkg/", headers={"Accept": accept})
            assert stale.status_code == 200, stale.text
            assert stale.headers["x-packyard-upstream"] == "stale"
            assert "unreachable" in stale.headers["x-packyard-upstream-error"]
            assert "ttlpkg-2.0-py3-none-any.whl" in stale.text
        # what was never fetched fails clearly, and nothing is cached for it
        never = http.get(f"/{ns}/simple/neverpkg/")
        assert never.status_code == 502, never.text
        assert "unreachable" in error_of(never)
        assert cached_pages(private, "neverpkg") == []
        cold = http.get(f"/{ns}/dists/coldpkg-1.0-py3-none-any.whl")
        assert cold.status_code == 502, cold.text
        assert mirrored(private, "coldpkg-1.0-py3-none-any.whl") == []

    # installs of cached files (installed before, or only warmed) still succeed, pip and uv
    reqs = ("ttlpkg==2.0", "warmpkg", "platpkg")
    in_parallel(*(lambda i=i: INSTALLERS[i](simple, tmp_path / f"offline-{i}", *reqs) for i in ("pip", "uv")))
    expected = {"ttlpkg": "2.0", "ttldep": "1.0", "warmpkg": "1.0", "warmdep": "1.0", "platpkg": "1.0"}
    for installer in ("pip", "uv"):
        assert installed(tmp_path / f"offline-{installer}") == expected, installer


def test_a_5xx_upstream_keeps_the_cached_page_and_says_so(private: LiveServer) -> None:
    evil = Evil()
    ok = (
        200,
        {"Content-Type": "text/html"},
        b'<html><body><a href="/f/flaky-1.0.tar.gz#sha256=' + b"a" * 64 + b'">flaky-1.0.tar.gz</a></body></html>',
    )
    evil.routes["/simple/flaky/"] = ok
    ns = unique_ns("flaky")
    try:
        with httpx.Client(base_url=private.url, timeout=30) as http:
            create_ns(http, private, ns)
            set_settings(http, private, ns, upstream=evil.url)
            fresh = http.get(f"/{ns}/simple/flaky/")
            assert fresh.status_code == 200 and "x-packyard-upstream" not in fresh.headers
            fetched_at = time.monotonic()
            evil.routes["/simple/flaky/"] = (503, {"Content-Type": "text/plain"}, b"maintenance")
            wait_past_ttl(fetched_at)
            stale = http.get(f"/{ns}/simple/flaky/")
            assert stale.status_code == 200, stale.text
            assert stale.headers["x-packyard-upstream"] == "stale"
            assert "503" in stale.headers["x-packyard-upstream-error"]
            assert "flaky-1.0.tar.gz" in stale.text
            # back up: fresh again, no header
            evil.routes["/simple/flaky/"] = ok
            again = http.get(f"/{ns}/simple/flaky/")
            assert again.status_code == 200 and "x-packyard-upstream" not in again.headers
    finally:
        evil.stop()
