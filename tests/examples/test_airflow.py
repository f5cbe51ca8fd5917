"""The Airflow recipe (``examples/airflow``): its task callables, called directly, against a real packyard.

``airflow dags test`` does not fit the suite: apache-airflow 3.3 is 130 packages (~200 MB)
and, measured on this 2-core machine, ``airflow db migrate`` took 32 s and ``airflow dags
test`` of a one-task DAG 64 s. The DAG file keeps its callables in ``packyard_tasks.py``,
which imports nothing from Airflow, so they are tested here as Airflow would run them:

- ``sales_report`` (the ``@task``): in the worker's process, through ``from packyard import Client``;
- ``standardize_in_virtualenv`` (the ``@task.virtualenv``): in a fresh virtualenv that pip
  filled from the namespace's index, the ``index_urls`` the DAG gives Airflow.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.conftest import LiveServer
from tests.examples.conftest import EXAMPLES, etl_wheel
from tests.support.clients import clean_env, create_ns, pip_env, run, unique_ns, upload

SERVERS = ("local",)

DAGS = EXAMPLES / "airflow" / "dags"


def load_tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("packyard_tasks", DAGS / "packyard_tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the recipe's folder
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


@pytest.fixture(scope="module")
def sales(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    company = unique_ns(prefix="a")
    create_ns(module_http, server, company, f"{company}.sales")
    upload(module_http, server, company, etl_wheel(tmp_path_factory.mktemp("airflow-dist")))
    return f"{company}.sales"


def test_the_dag_runs_the_callables_tested_here() -> None:
    """What this module tests is what the DAG wraps (the DAG itself needs Airflow to import)."""
    tree = ast.parse((DAGS / "sales_dag.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "packyard_tasks"]
    imported = {alias.name for node in imports for alias in node.names}
    assert imported == {"sales_report", "standardize_in_virtualenv"}
    assert "import airflow" not in (DAGS / "packyard_tasks.py").read_text()
    assert "from airflow" not in (DAGS / "packyard_tasks.py").read_text()


def test_report_task_runs_in_packyards_environment(
    server: LiveServer, sales: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith(("PACKYARD_", "PIP_", "UV_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PACKYARD_URL", server.url)
    monkeypatch.setenv("PACKYARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")

    assert load_tasks().sales_report("12/24/2024", namespace=sales) == "2024-12-24"


def test_virtualenv_task_installs_etl_from_the_namespace_index(server: LiveServer, sales: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], clean_env())
    python = venv / "bin" / "python"
    index = f"{server.url}/{sales}/simple/"  # the DAG's index_urls with the packyard_url Variable set
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-cache-dir", "--index-url", index]
    run([*install, "etl==0.1.0"], pip_env())
    code = "import packyard_tasks; print(packyard_tasks.standardize_in_virtualenv('12/24/2024'))"
    env = clean_env() | {"PYTHONPATH": str(DAGS), "PYTHONDONTWRITEBYTECODE": "1"}
    assert run([python, "-c", code], env).stdout.strip() == "2024-12-24"
