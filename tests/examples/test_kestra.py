"""The Kestra recipes (``examples/kestra/flows``) run task by task against a real packyard.

:mod:`tests.examples.kestra_runner` plays the Kestra worker (Process task runner). The module
shares one server (the session's, local backend), one git repository holding
``examples/etl`` and one build of it: ``git_sync`` then ``build_publish`` run once (the
``published`` fixture), and the flows that use the package run against what they left.
The flows' ``company`` is a namespace of this module's own.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import jinja2
import pytest

from tests.conftest import LiveServer
from tests.examples.conftest import EXAMPLES
from tests.examples.kestra_runner import Execution, Worker
from tests.support.clients import create_ns, create_token, git_env, pip_env, run, unique_ns, upload

SERVERS = ("local",)  # the recipes exercise the client side; the backends are covered elsewhere

FLOWS = EXAMPLES / "kestra" / "flows"
EXPECTED = "2024-12-24"


@dataclass
class Kestra:
    company: str
    repository: str
    worker: Worker


def git_repository(root: Path) -> str:
    """A bare repository (file://) whose main branch holds examples/etl, committed with real git."""
    work, bare = root / "etl-work", root / "etl.git"
    shutil.copytree(EXAMPLES / "etl", work, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    env = git_env("Data Team", "data@example.com")
    run(["git", "init", "-q", "-b", "main", work], env)
    run(["git", "-C", work, "add", "."], env)
    run(["git", "-C", work, "commit", "-q", "-m", "etl 0.1.0"], env)
    run(["git", "clone", "-q", "--bare", work, bare], env)
    return bare.as_uri()


@pytest.fixture(scope="module")
def kestra(
    server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory, flit_core_wheel: Path
) -> Kestra:
    company = unique_ns(prefix="k")
    create_ns(module_http, server, company, f"{company}.sales")
    upload(module_http, server, company, flit_core_wheel)  # what the upstream would serve (see conftest)
    _, token = create_token(module_http, server, company, "write", "kestra")  # the flows' secret: company only
    root = tmp_path_factory.mktemp("kestra")
    worker = Worker(
        root / "worker",
        env=pip_env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never"),
        secrets={"PACKYARD_TOKEN": token},
        kv={"PACKYARD_URL": server.url},
        namespaces={"company": company},
        namespace_files={"company.sales": EXAMPLES / "kestra" / "namespace-files" / "company.sales"},
    )
    return Kestra(company, git_repository(root), worker)


@pytest.fixture(scope="module")
def published(kestra: Kestra) -> tuple[Execution, Execution]:
    """``git_sync`` then ``build_publish``, as their Flow trigger chains them."""
    synced = kestra.worker.execute(FLOWS / "git_sync.yaml", {"repository": kestra.repository}).succeeded()
    built = kestra.worker.execute(FLOWS / "build_publish.yaml").succeeded()
    return synced, built


def test_git_sync_flow_brings_the_repository_into_the_namespace(
    server: LiveServer, kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    synced, _ = published
    assert synced.namespace == kestra.company
    listing = synced.tasks["sync"].stdout
    for path in ("pyproject.toml", "etl/__init__.py", "etl/utils.py", "README.md"):
        assert path in listing, listing
    got = httpx.get(f"{server.url}/api/v1/namespaces/{kestra.company}/files/etl/utils.py", headers=server.admin)
    assert got.content == (EXAMPLES / "etl" / "etl" / "utils.py").read_bytes()


def test_build_publish_flow_puts_etl_on_the_index(
    server: LiveServer, kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    _, built = published
    listing = built.tasks["build"].stdout
    assert "etl-0.1.0.tar.gz" in listing and "etl-0.1.0-py3-none-any.whl" in listing, built.logs()
    page = httpx.get(f"{server.url}/{kestra.company}/simple/etl/").text
    assert "etl-0.1.0.tar.gz" in page and "etl-0.1.0-py3-none-any.whl" in page


def test_install_project_flow_pip_installs_the_pulled_project(
    kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    execution = kestra.worker.execute(FLOWS / "install_project.yaml", {"day": "1/2/2025"}).succeeded()
    report = execution.tasks["report"]
    assert report.stdout.strip().splitlines()[-1] == "install_project: 2025-01-02", execution.logs()
    assert (report.workdir / "pyproject.toml").is_file()  # pip installed the pulled project, not a dist
    assert "etl-0.1.0" not in "".join(p.name for p in report.workdir.iterdir())


def test_sales_flow_in_the_child_installs_the_sdist_and_from_the_index(
    server: LiveServer, kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    execution = kestra.worker.execute(FLOWS / "sales_report.yaml").succeeded()
    assert execution.namespace == f"{kestra.company}.sales"

    from_sdist = execution.tasks["from_sdist"]
    assert f"sales: {EXPECTED}" in from_sdist.stdout, execution.logs()
    fetched = (from_sdist.workdir / "etl-0.1.0.tar.gz").read_bytes()
    published_sdist = httpx.get(f"{server.url}/{kestra.company}/dists/etl-0.1.0.tar.gz").content
    assert hashlib.sha256(fetched).digest() == hashlib.sha256(published_sdist).digest()  # the parent's build
    assert (from_sdist.workdir / "main.py").is_file()  # the Kestra namespace file, put there by namespaceFiles

    from_index = execution.tasks["from_index"]
    assert from_index.stdout.strip().splitlines()[-1] == f"from_index: {EXPECTED}", execution.logs()
    assert "etl-0.1.0-py3-none-any.whl" in from_index.log  # pip took the published wheel through the child's index


def test_cached_dependencies_flow_reuses_the_environment(
    kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    first = kestra.worker.execute(FLOWS / "cached_dependencies.yaml").succeeded()
    second = kestra.worker.execute(FLOWS / "cached_dependencies.yaml", {"day": "1/2/2025"}).succeeded()
    line1 = first.tasks["report"].stdout.strip().splitlines()[-1]
    line2 = second.tasks["report"].stdout.strip().splitlines()[-1]
    assert line1.startswith(f"sales: {EXPECTED} python: "), first.logs()
    assert line2.startswith("sales: 2025-01-02 python: "), second.logs()
    env1, env2 = line1.split("python: ")[1], line2.split("python: ")[1]
    assert env1 == env2  # the second execution ran in the environment the first one built
    assert Path(env1).is_relative_to(kestra.worker.cache_dir)
    envs = [p for p in (kestra.worker.cache_dir / "envs").iterdir() if p.is_dir()]
    assert [p.name for p in envs] == [Path(env1).name]


# -- the harness itself: a failing command fails the task, and an unknown expression never renders


def test_harness_stops_at_the_first_failing_command(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: failing\nnamespace: company\ntasks:\n"
        "  - id: first\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n      type: io.kestra.plugin.core.runner.Process\n"
        f"    beforeCommands:\n      - 'false'\n    commands:\n      - echo {marker}\n"
        "  - id: second\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n      type: io.kestra.plugin.core.runner.Process\n"
        f"    commands:\n      - echo {marker}\n"
    )
    execution = Worker(tmp_path / "worker", env=pip_env()).execute(flow)
    assert execution.state == "FAILED"
    assert list(execution.tasks) == ["first"]
    assert marker not in execution.tasks["first"].stdout


def test_harness_refuses_an_expression_it_does_not_know(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: unknown\nnamespace: company\ntasks:\n"
        "  - id: only\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n      type: io.kestra.plugin.core.runner.Process\n"
        "    commands:\n      - echo {{ outputs.previous.value }}\n"
    )
    with pytest.raises(jinja2.UndefinedError, match="outputs"):
        Worker(tmp_path / "worker", env=pip_env()).execute(flow)


def test_a_flow_whose_token_may_not_write_fails_and_publishes_nothing(
    server: LiveServer, module_http: httpx.Client, kestra: Kestra, published: tuple[Execution, Execution]
) -> None:
    """The secret decides what a flow may do: a read token of the child cannot build into ``company``."""
    _, reader = create_token(module_http, server, f"{kestra.company}.sales", "read", "kestra-reader")
    worker = Worker(
        kestra.worker.root.parent / "reader-worker",
        env=kestra.worker.env,
        secrets={"PACKYARD_TOKEN": reader},
        kv=kestra.worker.kv,
        namespaces=kestra.worker.namespaces,
    )
    before = module_http.get(f"/api/v1/namespaces/{kestra.company}/dists", headers=server.admin).json()
    execution = worker.execute(FLOWS / "build_publish.yaml")
    assert execution.state == "FAILED"
    build = execution.tasks["build"]
    assert build.returncode == 7, build.log  # the CLI's exit code for forbidden
    assert build.stderr.startswith("error: "), build.log
    assert "etl-0.1.0" not in build.stdout  # `dists ls` after the failed build never ran
    assert module_http.get(f"/api/v1/namespaces/{kestra.company}/dists", headers=server.admin).json() == before
