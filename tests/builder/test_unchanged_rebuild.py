"""A commit that does not touch the package rebuilds it without publishing anything.

The project sits at the repository's root beside ``flows/``, as Kestra users keep it, and
``packyard sync run --build --wait`` syncs and builds it (with the tiny in-project backend,
which leaves ``flows/`` out of its sdist as setuptools does; the seed's forced rebuild in
``test_seed.py`` shows the same with the real setuptools). A commit
that changes only a flow queues a build (the folder changed) whose sdist and wheel differ
from the published ones only in archive timestamps (``SOURCE_DATE_EPOCH`` is the new
commit's time): that build succeeds, publishes nothing and says so. A commit that changes
the package's code without a version bump fails, naming the files that differ, and tells
the user the command that shows the log.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.builder.conftest import WorkTree, build_log, dists_rows, packyard, tiny_project, unique_ns
from tests.conftest import LiveServer


def _sync_build(server: LiveServer, ns: str, repo: WorkTree, target: str) -> tuple[int, dict | str]:
    """``packyard sync run NS URL --build --build-publish-to T --wait --json``: (exit code, output)."""
    result = packyard(server, "sync", "run", ns, repo.url, "--build", "--build-publish-to", target, "--wait", "--json")
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.returncode, result.stdout + result.stderr


def test_a_commit_outside_the_package_is_a_no_op_and_a_real_change_names_its_files(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    repo = WorkTree(tmp_path / "repo")
    project = tiny_project("rooted", sdist_exclude=["flows"], module="ANSWER = 1\n")
    repo.write({**project, "flows/daily.yml": b"id: daily\n"})
    repo.commit("rooted 0.1.0 and a flow", "2024-05-01T10:00:00+00:00")
    ns, target = unique_ns(), unique_ns("index")

    code, first = _sync_build(server, ns, repo, target)
    assert code == 0, first
    assert [b["state"] for b in first["builds"]] == ["succeeded"], first
    published = dists_rows(server, target)
    assert [name for name, _ in published] == ["rooted-0.1.0-py3-none-any.whl", "rooted-0.1.0.tar.gz"]

    repo.write({"flows/daily.yml": b"id: daily\ntasks: []\n"})  # only the flow changes
    repo.commit("flows: daily runs nothing", "2024-05-02T10:00:00+00:00")
    code, second = _sync_build(server, ns, repo, target)
    assert code == 0, second
    [rebuilt] = second["builds"]
    assert rebuilt["id"] != first["builds"][0]["id"] and rebuilt["source_date_epoch"] == repo.commit_time()
    assert rebuilt["state"] == "succeeded", rebuilt
    assert rebuilt["artifacts"] == ["rooted-0.1.0.tar.gz", "rooted-0.1.0-py3-none-any.whl"]
    log = build_log(http, rebuilt["id"])
    assert "unchanged package content: rooted-0.1.0.tar.gz, rooted-0.1.0-py3-none-any.whl" in log, log[-2000:]
    assert dists_rows(server, target) == published, "a rebuild with the same contents published something"
    assert server.blob_hashes() >= {sha for _, sha in published}

    # a real change without a version bump: refused, naming the files that differ
    changed = tiny_project("rooted", sdist_exclude=["flows"], module="ANSWER = 2\n")
    repo.write({"tiny.json": changed["tiny.json"]})
    repo.commit("rooted: a real change, same version", "2024-05-03T10:00:00+00:00")
    result = packyard(server, "sync", "run", ns, repo.url, "--build", "--build-publish-to", target, "--wait")
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = http.get("/api/v1/builds", params={"namespace": ns}).json()[0]
    assert failed["state"] == "failed", failed
    error = failed["error"]
    assert f"rooted-0.1.0.tar.gz already exists in {target} with other contents: rooted-0.1.0/tiny.json differ" in error
    assert (
        f"rooted-0.1.0-py3-none-any.whl already exists in {target} with other contents: "
        "rooted-0.1.0.dist-info/RECORD, rooted/__init__.py differ"
    ) in error, error
    assert "bump the version" in error, error
    assert f"see the log: packyard build logs {failed['id']}" in result.stdout, result.stdout
    assert dists_rows(server, target) == published
