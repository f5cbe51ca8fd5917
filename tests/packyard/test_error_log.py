"""With the default settings the server logs every failed request, one line each, and nothing else.

A dedicated server (the session one logs every request): ``PACKYARD_LOG_REQUESTS`` unset.
Each line names the method, the path without its query string, the status, the namespace
and the token id, never a secret; a path cannot forge a second line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import TWINE, create_ns, create_token, run, twine_env, unique_ns, upload
from tests.support.dists import make_wheel
from tests.support.procs import free_port, running

LINE = re.compile(r" (WARNING|ERROR) packyard\.http: (\S+) (\S+) (\d{3}) ns=(\S+) token=(\S+)(?: detail=(.*))?$")


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = live_server(
        tmp_path_factory.mktemp("error-log"),
        {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_UPSTREAM_ALLOW_HOSTS": "127.0.0.1"},
    )
    with running(live.server):
        yield live


def lines_since(server: LiveServer, mark: int) -> list[str]:
    time.sleep(0.2)  # the server writes its line after the answer is sent
    return server.log_lines()[mark:]


def errors(lines: list[str]) -> list[tuple[str, ...]]:
    return [m.groups() for line in lines if (m := LINE.search(line))]


def test_failures_are_logged_once_each_with_who_and_where(quiet: LiveServer, tmp_path: Path) -> None:
    ns = unique_ns()
    with httpx.Client(base_url=quiet.url, timeout=30) as http:
        create_ns(http, quiet, ns)
        upload(http, quiet, ns, make_wheel(tmp_path, "logged", "1.0"))
        reader_id, reader = create_token(http, quiet, ns, "read")
        mark = len(quiet.log_lines())

        assert http.get(f"/{ns}/simple/logged/").status_code == 200  # a success: no line
        assert http.get(f"/{ns}/simple/logged/").status_code == 200  # (the hot path's)
        assert http.get(f"/{ns}/simple/missing/").status_code == 404
        bad = http.get(
            f"/{ns}/simple/",
            params={"token": "pky_secret_in_query"},
            headers={"Authorization": "Bearer pky_unknown_secret"},
        )
        assert bad.status_code == 401
        refused = run(
            [*TWINE, "upload", "--repository-url", f"{quiet.url}/{ns}/", "-u", "__token__", "-p", reader,
             "--non-interactive", "--disable-progress-bar", make_wheel(tmp_path / "2", "logged", "2.0")],
            twine_env(),
            check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        forged = http.get(f"/{ns}/simple/x%0a2026 ERROR packyard.http: forged/")
        assert forged.status_code == 400  # refused by the control-character guard
        response = http.patch(
            f"/api/v1/namespaces/{ns}/settings", json={"upstream": f"http://127.0.0.1:{free_port()}/simple/"},
            headers=quiet.admin,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        assert http.get(f"/{ns}/simple/only-upstream/").status_code == 502

    lines = lines_since(quiet, mark)
    found = errors(lines)
    assert [(level, method, status) for level, method, _, status, *_ in found] == [
        ("WARNING", "GET", "404"),
        ("WARNING", "GET", "401"),
        ("WARNING", "POST", "403"),
        ("WARNING", "GET", "400"),
        ("ERROR", "GET", "502"),
    ], lines
    missing, unknown, upload_refused, forged_line, upstream = found
    assert missing[2:6] == (f"/{ns}/simple/missing/", "404", ns, "-")
    assert "no project 'missing'" in missing[6]
    assert unknown[2:6] == (f"/{ns}/simple/", "401", ns, "invalid")
    assert upload_refused[2:6] == (f"/{ns}/", "403", ns, reader_id)
    assert "may not write" in upload_refused[6]
    assert forged_line[2] == f"/{ns}/simple/x%0a2026%20ERROR%20packyard.http:%20forged/"
    assert upstream[2:5] == (f"/{ns}/simple/only-upstream/", "502", ns)
    assert "unreachable" in upstream[6]
    # one line each, and no access log by default (other packyard loggers may say more)
    assert len([line for line in lines if "packyard.http:" in line]) == len(found), lines
    assert not [line for line in lines if " HTTP/1.1" in line], lines
    text = "\n".join(quiet.log_lines())
    for secret in ("pky_secret_in_query", "pky_unknown_secret", reader, quiet.admin_token):
        assert secret not in text
