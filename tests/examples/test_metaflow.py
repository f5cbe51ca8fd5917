"""The Metaflow recipe (``examples/metaflow``): ``python flow.py run`` for real, against a real packyard.

Metaflow runs with its local datastore and metadata in this module's temporary folder. The
step gets ``etl`` (the sample project's wheel, published in ``company``) and ``tabulate`` (a
public package, as an upstream would serve it) through the index of ``company.sales``; a
second run on the same machine reuses the environment the first one built.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.examples.conftest import EXAMPLES, download_wheel, etl_wheel
from tests.support.clients import clean_env, create_ns, create_token, run, unique_ns, upload

SERVERS = ("local",)

FLOW = EXAMPLES / "metaflow" / "flow.py"


@dataclass
class Metaflow:
    sales: str
    env: dict[str, str]
    root: Path

    def run(self, *args: str) -> str:
        """``python flow.py run ARGS`` in a folder of the test's own; everything it printed."""
        cmd = [sys.executable, FLOW, "--no-pylint", "run", "--packyard_namespace", self.sales, *args]
        proc = run(cmd, self.env, cwd=self.root / "cwd", timeout=300)
        return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def metaflow(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Metaflow:
    company = unique_ns(prefix="m")
    create_ns(module_http, server, company, f"{company}.sales")
    root = tmp_path_factory.mktemp("metaflow")
    upload(module_http, server, company, etl_wheel(root / "dist"), download_wheel("tabulate", root / "public"))
    _, token = create_token(module_http, server, f"{company}.sales", "read", "metaflow")

    (root / "cwd").mkdir()
    env = clean_env("METAFLOW_")
    env.update(
        PACKYARD_URL=server.url,
        PACKYARD_TOKEN=token,
        PACKYARD_CACHE_DIR=str(root / "packyard-cache"),
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(root / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        USERNAME="flow-tester",
        METAFLOW_HOME=str(root / "metaflow-home"),
        METAFLOW_DEFAULT_DATASTORE="local",
        METAFLOW_DATASTORE_SYSROOT_LOCAL=str(root / "datastore"),
        METAFLOW_DEFAULT_METADATA="local",
    )
    return Metaflow(f"{company}.sales", env, root)


def environment_line(output: str) -> tuple[str, str]:
    """(key, how) from the step's ``environment KEY (HOW)`` line."""
    (line,) = [line for line in output.splitlines() if "] environment " in line]
    key, how = line.split("] environment ", 1)[1].split(" ", 1)
    return key, how


def test_flow_step_gets_etl_from_packyard_then_starts_warm(metaflow: Metaflow) -> None:
    first = metaflow.run()
    key, how = environment_line(first)
    assert how == "(built)", first
    # the end step prints tabulate's row holding etl's answer
    assert re.search(r"\] 12/24/2024\s+2024-12-24$", first, re.M), first
    assert "Done!" in first
    assert (metaflow.root / "datastore" / ".metaflow" / "SalesFlow").is_dir()  # Metaflow's local datastore

    second = metaflow.run("--day", "1/2/2025")
    assert environment_line(second) == (key, "(reused)"), second
    assert re.search(r"\] 1/2/2025\s+2025-01-02$", second, re.M), second
    assert not (EXAMPLES / "metaflow" / ".metaflow").exists()  # the runs wrote nothing into the recipe's folder
