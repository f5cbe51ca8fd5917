"""Reading a namespace nobody has created yet reads its nearest existing ancestor's chain.

A flow engine's namespaces exist the moment a flow uses one, so ``packyard run
company.sales.emea ...`` must work on a setup where only ``company`` was ever written:
index pages, files, ``pull``, ``fetch``, ``run``, the index state. A name with no existing
ancestor at all stays a 404 (a typo must not read as an empty namespace), reads create
nothing, and the pre-rendered page of an uncreated child follows when it, or a namespace
between it and its ancestors, is created later.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.conftest import ETL_CALL, cli, etl_wheel, pip_install, simple_wheel, unique_ns, venv
from tests.support.clients import JSON_V1, PIP_ACCEPT, put_file, upload


@pytest.fixture(scope="module")
def company(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Only ``company`` exists: etl 0.1.0 in its index and one namespace file."""
    name = unique_ns("u")
    wheel = etl_wheel(tmp_path_factory.mktemp("etl"))
    upload(module_http, server, name, wheel)
    put_file(module_http, server, name, "scripts/daily.py", b"print('daily')\n")
    return {"name": name, "wheel": wheel}


def _names(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return sorted(p["name"] for p in page.json()["projects"])


@pytest.mark.local_only  # namespace resolution does not depend on the storage backend
def test_an_uncreated_child_reads_as_its_chain(
    server: LiveServer, http: httpx.Client, company: dict, tmp_path: Path
) -> None:
    child = f"{company['name']}.sales.emea"
    wheel = company["wheel"].name

    for _ in range(2):  # the second answer comes from the page cache (the hot path)
        assert _names(http.get(f"/{child}/simple/", headers={"Accept": JSON_V1})) == ["etl"]
        page = http.get(f"/{child}/simple/etl/", headers={"Accept": PIP_ACCEPT})
        assert page.status_code == 200 and wheel in page.text, page.text
        assert http.get(f"/{child}/dists/{wheel}").content == company["wheel"].read_bytes()
    state = http.get(f"/api/v1/namespaces/{child}/index-state")
    assert state.status_code == 200 and state.json()["chain"] == [company["name"]], state.text
    assert http.get(f"/api/v1/namespaces/{child}/files").json() == []
    assert http.get(f"/api/v1/namespaces/{child}/dists").json() == []

    cache = tmp_path / "cache"
    work = tmp_path / "work"
    cli(server, cache, "pull", child, "--dest", work, "--with-parents")
    assert (work / "scripts" / "daily.py").read_bytes() == b"print('daily')\n"
    cli(server, cache, "fetch", child, wheel, "--dest", tmp_path / "fetched")
    assert (tmp_path / "fetched" / wheel).read_bytes() == company["wheel"].read_bytes()
    python = venv(tmp_path / "venv")
    pip_install(python, "--index-url", f"{server.url}/{child}/simple/", "etl")
    assert server.count("namespaces", child) == 0, "a read created the namespace"

    ran = cli(server, cache, "run", child, "--with", "etl", "--", "python", "-c", ETL_CALL)
    assert ran.stdout.strip() == "2024-12-24", ran.stderr
    # sharing the environment is a write: it creates the namespace, as every write does, and
    # the next run in the child finds what it stored through the child's own chain
    again = json.loads(cli(server, tmp_path / "fresh-worker", "env", child, "--with", "etl", "--json").stdout)
    assert again["from_bundle"] is True, again


@pytest.mark.local_only
def test_a_name_with_no_existing_ancestor_is_still_a_404(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    typo = f"{unique_ns('nope')}.sales"
    for url in (f"/{typo}/simple/", f"/{typo}/simple/etl/", f"/api/v1/namespaces/{typo}/files"):
        response = http.get(url, headers={"Accept": JSON_V1})
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"] == "NotFound" and typo in response.json()["detail"]
    assert http.get(f"/api/v1/namespaces/{typo}/index-state").status_code == 404
    ran = cli(server, tmp_path / "cache", "run", typo, "--with", "etl", "--", "python", "-c", "pass", check=False)
    assert ran.returncode == 3 and "does not exist" in ran.stderr, (ran.returncode, ran.stderr)
    assert server.count("namespaces", typo) == 0


def test_the_cached_page_of_an_uncreated_child_follows_creation_and_ancestors(
    server: LiveServer, http: httpx.Client, company: dict, tmp_path: Path
) -> None:
    middle = f"{company['name']}.ops"
    child = f"{middle}.daily"
    root = f"/{child}/simple/"
    for _ in range(2):
        assert _names(http.get(root, headers={"Accept": JSON_V1})) == ["etl"]

    upload(http, server, middle, simple_wheel(tmp_path, "opstool", "1.0"))  # creates the namespace between
    assert _names(http.get(root, headers={"Accept": JSON_V1})) == ["etl", "opstool"]
    assert http.get(f"/api/v1/namespaces/{child}/index-state").json()["chain"] == [middle, company["name"]]

    upload(http, server, child, simple_wheel(tmp_path, "dailytool", "1.0"))  # creates the child itself
    assert _names(http.get(root, headers={"Accept": JSON_V1})) == ["dailytool", "etl", "opstool"]

    response = http.patch(f"/api/v1/namespaces/{middle}/settings", json={"inherit": False}, headers=server.admin)
    assert response.status_code == 200, response.text
    assert _names(http.get(root, headers={"Accept": JSON_V1})) == ["dailytool", "opstool"]
