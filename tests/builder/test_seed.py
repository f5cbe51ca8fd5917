"""The seed scenario end to end, on both backends, with the real setuptools and hatchling.

A git work tree holds ``etl`` (setuptools) below ``packages/etl``; it is synced into
``company``, built with ``packyard build company --path packages/etl --publish-to
company.sales --wait``, and ``etl==0.1.0`` is installed from ``company.sales``'s index in a
fresh venv by pip and by uv, and called. The build's SOURCE_DATE_EPOCH is the commit's time.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.builder.conftest import (
    WorkTree,
    build_info,
    build_log,
    dists_rows,
    hatchling_project,
    headers,
    packyard,
    queued,
    setuptools_etl,
    start_build,
    unique_ns,
    wait_build,
)
from tests.conftest import LiveServer
from tests.support.clients import UV, make_venv, ok, pip_env, run, uv_env

COMMIT_DATE = "2024-12-24T10:00:00+00:00"
CALL = "from etl.utils import standardize_date_format as f; print(f('12/24/2024'))"


@pytest.fixture(scope="module")
def seed(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The seed built once per backend: the repo, the namespaces and the CLI's build record."""
    repo = WorkTree(tmp_path_factory.mktemp("seed") / "repo")
    repo.write({"README.md": b"# company monorepo\n"})
    repo.write(setuptools_etl(), prefix="packages/etl/")
    repo.commit("etl 0.1.0", COMMIT_DATE)
    company = unique_ns("")
    child = f"{company}.sales"
    with httpx.Client(base_url=server.url, timeout=120) as http:
        response = http.post(f"/api/v1/namespaces/{company}/sync", json={"url": repo.url}, headers=server.admin)
        assert response.status_code == 200, response.text
    result = packyard(server, "build", company, "--path", "packages/etl", "--publish-to", child, "--wait", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    return {"repo": repo, "company": company, "child": child, "build": json.loads(result.stdout)}


def test_the_cli_builds_and_publishes_sdist_and_wheel_to_the_child(server: LiveServer, seed: dict) -> None:
    build = seed["build"]
    assert build["state"] == "succeeded", build
    assert build["cached"] is False
    assert (build["namespace"], build["path"], build["publish_to"]) == (seed["company"], "packages/etl", seed["child"])
    assert build["artifacts"] == ["etl-0.1.0.tar.gz", "etl-0.1.0-py3-none-any.whl"]
    assert [name for name, _ in dists_rows(server, seed["child"])] == ["etl-0.1.0-py3-none-any.whl", "etl-0.1.0.tar.gz"]
    assert dists_rows(server, seed["company"]) == [], "published to the source namespace too"
    assert build["backend"].startswith("setuptools "), build["backend"]
    assert build["worker"] and build["log_sha256"]
    assert [f["path"] for f in build["snapshot"]] == ["etl/__init__.py", "etl/utils.py", "pyproject.toml"]


def test_source_date_epoch_is_the_commit_time(server: LiveServer, seed: dict) -> None:
    expected = seed["repo"].commit_time()
    assert expected == 1735034400  # COMMIT_DATE: not the sync's or the build's time
    assert seed["build"]["source_date_epoch"] == expected
    with httpx.Client(base_url=server.url, timeout=60) as http:
        log = build_log(http, seed["build"]["id"])
        assert f"SOURCE_DATE_EPOCH={expected}" in log
        assert headers(log) == [seed["build"]["id"]]
        # the wheel's members carry the commit's time: the backend saw SOURCE_DATE_EPOCH
        wheel = http.get(f"/{seed['child']}/simple/etl/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        url = next(f["url"] for f in wheel.json()["files"] if f["filename"].endswith(".whl"))
        data = http.get(httpx.URL(f"{server.url}/{seed['child']}/simple/etl/").join(url)).content
    stamps = {info.date_time for info in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    assert stamps == {(2024, 12, 24, 10, 0, 0)}, stamps


def test_pip_installs_the_built_etl_from_the_childs_index(server: LiveServer, seed: dict, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    index = f"{server.url}/{seed['child']}/simple/"
    pip = [sys.executable, "-m", "pip", "--python", python]  # this interpreter's pip, installing into the venv
    run([*pip, "install", "--no-cache-dir", "--index-url", index, "etl==0.1.0"], pip_env())
    assert "etl" in run([*pip, "list", "--format=freeze"], pip_env()).stdout
    assert run([python, "-c", CALL], pip_env()).stdout.strip() == "2024-12-24"


def test_uv_installs_the_built_etl_from_the_childs_index(server: LiveServer, seed: dict, tmp_path: Path) -> None:
    env = uv_env(tmp_path / "uv-cache")
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")  # uv venv
    index = f"{server.url}/{seed['child']}/simple/"
    run([UV, "pip", "install", "--python", python, "--index-url", index, "etl==0.1.0"], env)
    assert run([python, "-c", CALL], env).stdout.strip() == "2024-12-24"


def test_show_and_ls_report_the_build(server: LiveServer, seed: dict) -> None:
    build_id = seed["build"]["id"]
    shown = json.loads(ok(packyard(server, "build", "show", str(build_id), "--json")))
    assert shown["state"] == "succeeded"
    assert shown["backend"] == seed["build"]["backend"] and shown["backend"].split()[0] == "setuptools"
    assert shown["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert len(shown["key"]) == 64
    assert shown["source_date_epoch"] == seed["repo"].commit_time()
    listed = json.loads(ok(packyard(server, "builds", "ls", "--namespace", seed["child"], "--json")))
    assert [b["id"] for b in listed] == [build_id], listed  # listed under its target
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.get("/api/v1/builds", params={"namespace": seed["company"]})
        assert [b["id"] for b in response.json()] == [build_id]  # and under its source
    logs = ok(packyard(server, "build", "logs", str(build_id)))
    assert "Successfully built etl-0.1.0.tar.gz and etl-0.1.0-py3-none-any.whl" in logs


def test_the_same_source_again_is_answered_from_cache(server: LiveServer, seed: dict) -> None:
    result = packyard(
        server, "build", seed["company"], "--path", "packages/etl", "--publish-to", seed["child"], "--wait", "--json"
    )
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["cached"] is True and again["id"] == seed["build"]["id"], again
    assert len(server.rows("SELECT id FROM builds WHERE namespace = ?", (seed["company"],))) == 1


def test_a_forced_rebuild_of_the_setuptools_project_changes_nothing_published(server: LiveServer, seed: dict) -> None:
    """Local backend only: it costs a full setuptools build and is not about storage.

    setuptools' sdist is not byte-reproducible (tar and gzip times are the build's clock), but
    it holds the same files with the same bytes: the forced rebuild succeeds and publishes
    nothing new."""
    if server.backend != "local":
        pytest.skip("the reproducibility of setuptools does not depend on the storage backend")
    before = dists_rows(server, seed["child"])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        forced = queued(http, server, seed["company"], path="packages/etl", publish_to=seed["child"], force=True)
        assert forced["key"] == seed["build"]["key"] and forced["id"] != seed["build"]["id"]
        done = wait_build(http, forced["id"])
        log = build_log(http, forced["id"])
    assert dists_rows(server, seed["child"]) == before
    assert done["state"] == "succeeded", (done, log[-2000:])
    assert "unchanged package content: etl-0.1.0.tar.gz" in log, log[-2000:]


def test_a_hatchling_project_builds(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    files = hatchling_project("hatchdemo")
    for path, data in files.items():
        assert http.put(f"/api/v1/namespaces/{ns}/files/{path}", content=data, headers=server.admin).status_code == 201
    response = start_build(http, server, ns)  # no --publish-to: the same namespace
    assert response.status_code == 201, response.text
    build = wait_build(http, response.json()["id"])
    assert build["state"] == "succeeded", (build, build_log(http, build["id"])[-3000:])
    assert build["backend"].startswith("hatchling "), build["backend"]
    assert build["publish_to"] == ns
    names = [name for name, _ in dists_rows(server, ns)]
    assert len(names) == 2 and names[0].startswith("hatchdemo-1.2.0-") and names[0].endswith("-none-any.whl")
    assert names[1] == "hatchdemo-1.2.0.tar.gz"
    assert build_info(http, build["id"])["source_date_epoch"] > 0
