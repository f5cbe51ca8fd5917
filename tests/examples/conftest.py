"""Shared pieces of the recipe tests (``examples/``): where the recipes are, and the build backend.

The sample project ``examples/etl`` is built with ``flit_core``. Wherever pip builds it in a
task (``pip install .``, ``pip install etl-0.1.0.tar.gz``) the namespace's index is pip's only
index, so the index must offer ``flit_core`` as a production namespace would through its
upstream. The tests put the wheel into the namespace instead (an upstream to the real PyPI
would make every run depend on it): downloaded once per module with this machine's ordinary
pip configuration — the one place a recipe test reaches outside packyard.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.clients import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLIT_CORE = "flit_core>=3.4,<4"


@pytest.fixture(scope="module")
def flit_core_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``flit_core`` wheel the sample project's builds need."""
    out = tmp_path_factory.mktemp("flit-core")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", FLIT_CORE, "-d", out]
    run(cmd, dict(os.environ), timeout=120)  # this machine's pip configuration, on purpose
    (wheel,) = out.glob("flit_core-*.whl")
    return wheel
