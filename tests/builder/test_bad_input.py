"""Bad input, on both backends: each ends as a failed build, its log kept and explaining, and
nothing published — no dists row, no index page, not even the target namespace.

All the failing builds of a backend are queued at once by one module fixture, so the embedded
worker runs them back to back; each test then waits for its own. A source folder that does
not exist, or holds no project, is refused at enqueue instead (4xx, non-zero CLI exit, no row).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from packyard.builder.worker import LOG_CAP

from tests.builder.conftest import (
    all_gone,
    build_log,
    build_rows,
    dists_rows,
    headers,
    marker,
    packyard,
    processes_with,
    put_files,
    queued,
    start_build,
    tiny_project,
    unique_ns,
    wait_build,
)
from tests.conftest import LiveServer
from tests.support.clients import post_upload
from tests.support.dists import make_wheel

TIMEOUT = 5
NO_SUCH_BACKEND = "packyard-no-such-backend-xyz"


@dataclass
class Case:
    source: str
    target: str
    project: str
    build_id: int = 0
    extra: dict = field(default_factory=dict)


SPELLED = "ETL-0.1.0-py3-none-any.whl"
"""Another spelling of the wheel a build of etl 0.1 makes."""


def _escapes(server: LiveServer) -> list[Path]:
    """Places a backend must not write to: the worker's real home, /tmp, the server's data."""
    tag = uuid.uuid4().hex[:8]
    return [Path.home() / f"packyard-escape-{tag}", Path(f"/tmp/packyard-escape-{tag}"), server.server.data / tag]


@pytest.fixture(scope="module")
def cases(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """Every bad build of this backend, queued back to back (the timeouts through the CLI)."""
    escapes = _escapes(server)
    sleeper = marker()
    sources: dict[str, tuple[str, dict[str, bytes]]] = {
        "setup_py_syntax_error": (
            "broken",
            {"setup.py": b"from setuptools import setup\n\nsetup(name='broken', version='0.1.0'\n"},
        ),
        "invalid_pyproject": (
            "badtoml",
            {"pyproject.toml": b'[build-system\nrequires = ["setuptools"\n', "badtoml/__init__.py": b""},
        ),
        "missing_backend": (
            "nobackend",
            {
                "pyproject.toml": (
                    f'[build-system]\nrequires = ["{NO_SUCH_BACKEND}"]\nbuild-backend = "no_such_backend"\n'
                    '\n[project]\nname = "nobackend"\nversion = "0.1.0"\n'
                ).encode(),
                "nobackend/__init__.py": b"",
            },
        ),
        "prints_forever": ("chatty", tiny_project("chatty", print_forever=True)),
        "hangs": ("sleepy", tiny_project("sleepy", marker=sleeper, sleep=3600)),
        "writes_outside": ("escaper", tiny_project("escaper", write_outside=[str(p) for p in escapes])),
        "artifacts_disagree": ("etl", tiny_project("etl", "0.1.0", wheel_version="0.2.0")),
        "version_exists_with_other_bytes": ("etl", tiny_project("etl", "0.1.0")),
        "spelling_exists_with_other_bytes": ("etl", tiny_project("etl", "0.1")),
    }
    found: dict[str, Case] = {}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        taken = make_wheel(tmp_path_factory.mktemp("taken"), "etl", "0.1.0", module_body="TAKEN = True\n")
        for name, (project, files) in sources.items():
            case = Case(unique_ns(), unique_ns("target"), project)
            put_files(http, server, case.source, files)
            if name == "version_exists_with_other_bytes":
                response = post_upload(http, case.target, taken.name, taken.read_bytes(), server.admin_token)
                assert response.status_code == 200, response.text
            if name == "spelling_exists_with_other_bytes":  # etl 0.1 is etl 0.1.0, ETL is etl
                response = post_upload(http, case.target, SPELLED, taken.read_bytes(), server.admin_token)
                assert response.status_code == 200, response.text
            if name in ("prints_forever", "hangs"):
                out = packyard(server, "build", case.source, "--publish-to", case.target, "--timeout", str(TIMEOUT))
                assert out.returncode == 0, out.stderr
                assert "queued" in out.stdout
                case.build_id = json.loads(packyard(server, "builds", "ls", "-n", case.source, "--json").stdout)[0][
                    "id"
                ]
            else:
                case.build_id = queued(http, server, case.source, publish_to=case.target)["id"]
            found[name] = case
    found["writes_outside"].extra["escapes"] = escapes
    found["hangs"].extra["marker"] = sleeper
    found["version_exists_with_other_bytes"].extra["taken"] = taken
    found["spelling_exists_with_other_bytes"].extra["taken"] = taken
    return found


def failed(http: httpx.Client, server: LiveServer, case: Case) -> tuple[dict, str]:
    """Wait for the case's build; check the common outcome; its record and log."""
    build = wait_build(http, case.build_id)
    log = build_log(http, case.build_id)
    assert build["state"] == "failed", (build, log[-3000:])
    assert build["error"], build
    assert build["log_sha256"], "the log was not kept as a blob"
    assert headers(log) == [case.build_id] and log.startswith(f"[packyard] build {case.build_id}: "), log[:500]
    assert build["artifacts"] is None
    return build, log


def nothing_published(http: httpx.Client, server: LiveServer, case: Case) -> None:
    assert dists_rows(server, case.target) == []
    assert server.count("namespaces", case.target) == 0
    assert http.get(f"/{case.target}/simple/{case.project}/").status_code == 404


def test_a_syntax_error_in_setup_py(server: LiveServer, http: httpx.Client, cases: dict[str, Case]) -> None:
    build, log = failed(http, server, cases["setup_py_syntax_error"])
    assert "SyntaxError: '(' was never closed" in log
    assert "the build exited with status" in build["error"]
    nothing_published(http, server, cases["setup_py_syntax_error"])


def test_an_invalid_pyproject_toml(server: LiveServer, http: httpx.Client, cases: dict[str, Case]) -> None:
    _, log = failed(http, server, cases["invalid_pyproject"])
    assert "pyproject.toml" in log.split("[packyard] installer", 1)[1], log
    nothing_published(http, server, cases["invalid_pyproject"])


def test_a_missing_build_backend(server: LiveServer, http: httpx.Client, cases: dict[str, Case]) -> None:
    _, log = failed(http, server, cases["missing_backend"])
    assert NO_SUCH_BACKEND in log.split("[packyard] installer", 1)[1], log
    nothing_published(http, server, cases["missing_backend"])


def test_a_build_that_prints_forever_is_capped_and_killed(
    server: LiveServer, http: httpx.Client, cases: dict[str, Case]
) -> None:
    build, log = failed(http, server, cases["prints_forever"])
    assert f"timeout of {TIMEOUT}s" in build["error"]
    assert build["settings"]["timeout"] == TIMEOUT
    raw = http.get(f"/api/v1/builds/{build['id']}/log").content
    assert LOG_CAP <= len(raw) <= LOG_CAP + 4096, len(raw)
    assert "log truncated" in log
    assert f"timeout of {TIMEOUT}s" in log[-1000:], "the log does not say why the build ended"
    nothing_published(http, server, cases["prints_forever"])


def test_a_build_that_hangs_is_killed_at_its_timeout(
    server: LiveServer, http: httpx.Client, cases: dict[str, Case]
) -> None:
    case = cases["hangs"]
    build, log = failed(http, server, case)
    assert f"timeout of {TIMEOUT}s" in build["error"] and f"timeout of {TIMEOUT}s" in log
    assert f"SLEEPING {case.extra['marker']}" in log
    assert all_gone(case.extra["marker"]), f"the hanging backend still runs: {processes_with(case.extra['marker'])}"
    nothing_published(http, server, cases["hangs"])


def test_a_backend_that_writes_outside_its_folder(
    server: LiveServer, http: httpx.Client, cases: dict[str, Case]
) -> None:
    case = cases["writes_outside"]
    _, log = failed(http, server, case)
    for path in case.extra["escapes"]:
        assert not path.exists(), f"the build wrote {path}"
        # refused (read-only, or not there at all in the sandbox), or written into the build's
        # own private /tmp, which is thrown away with it
        private = f"WROTE {path}" in log and path.parts[1] == "tmp"
        assert f"REFUSED {path}: " in log or private, log[-3000:]
    assert f"REFUSED {case.extra['escapes'][0]}: [Errno 30] Read-only file system" in log, log[-3000:]  # home
    assert "sandbox bwrap" in log
    nothing_published(http, server, case)


def test_artifacts_that_disagree_on_the_version(server: LiveServer, http: httpx.Client, cases: dict[str, Case]) -> None:
    build, log = failed(http, server, cases["artifacts_disagree"])
    assert "etl 0.1.0" in build["error"] and "etl 0.2.0" in build["error"], build["error"]
    assert "the sdist is etl 0.1.0 but the wheel is etl 0.2.0" in log
    nothing_published(http, server, cases["artifacts_disagree"])


def test_a_version_that_exists_with_other_bytes(server: LiveServer, http: httpx.Client, cases: dict[str, Case]) -> None:
    """Neither file is published: the sdist is new, but the wheel's name is taken by other bytes."""
    case = cases["version_exists_with_other_bytes"]
    build, log = failed(http, server, case)
    assert "etl-0.1.0-py3-none-any.whl already exists" in build["error"], build["error"]
    assert "bump the version" in build["error"]
    assert "bump the version" in log, "the log does not say why nothing was published"
    taken = case.extra["taken"]
    assert dists_rows(server, case.target) == [(taken.name, hashlib.sha256(taken.read_bytes()).hexdigest())]


def test_another_spelling_of_the_version_exists_with_other_bytes(
    server: LiveServer, http: httpx.Client, cases: dict[str, Case]
) -> None:
    """A build of etl 0.1 publishes nothing where ETL-0.1.0-py3-none-any.whl holds other bytes:
    one distribution, however the filename spells it (issue 12, item 6)."""
    case = cases["spelling_exists_with_other_bytes"]
    build, log = failed(http, server, case)
    assert "etl-0.1-py3-none-any.whl already exists" in build["error"], build["error"]
    assert f"as {SPELLED}: the same distribution" in build["error"], build["error"]
    taken = case.extra["taken"]
    assert dists_rows(server, case.target) == [(SPELLED, hashlib.sha256(taken.read_bytes()).hexdigest())]


# -- refused at enqueue --------------------------------------------------------------------------


def test_a_folder_that_does_not_exist_is_refused(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("fine"), prefix="pkg/")
    response = start_build(http, server, ns, path="nope")
    assert response.status_code == 404, response.text
    assert "nope" in response.json()["detail"]
    result = packyard(server, "build", ns, "--path", "no/such/folder", "--wait")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert (
        result.stderr.startswith("error: ") and "no/such/folder" in result.stderr and "Traceback" not in result.stderr
    )
    assert build_rows(server, ns) == []


def test_a_folder_without_a_project_file_is_refused(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    put_files(http, server, ns, {"docs/index.md": b"# docs\n", "docs/conf.py": b"x = 1\n"})
    response = start_build(http, server, ns, path="docs")
    assert response.status_code == 400, response.text
    assert "no pyproject.toml or setup.py" in response.json()["detail"]
    assert start_build(http, server, ns).status_code == 400  # the root holds no project either
    assert build_rows(server, ns) == []


def test_a_namespace_that_does_not_exist_is_refused(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    assert start_build(http, server, ns).status_code == 404
    assert start_build(http, server, "Not A Namespace!").status_code in (400, 422)
    assert build_rows(server, ns) == []


def test_a_timeout_out_of_range_is_refused(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("fine"))
    assert start_build(http, server, ns, timeout=0).status_code == 400
    assert start_build(http, server, ns, timeout=10**6).status_code == 400
    assert build_rows(server, ns) == []
