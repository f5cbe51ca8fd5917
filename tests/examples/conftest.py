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
from tests.support.dists import WHEEL, _metadata, pack_wheel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLIT_CORE = "flit_core>=3.4,<4"


def download_wheel(spec: str, out: Path) -> Path:
    """One public wheel, with this machine's ordinary pip configuration (on purpose: see above)."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", spec, "-d", out]
    run(cmd, dict(os.environ), timeout=120)
    (wheel,) = out.glob("*.whl")
    return wheel


def etl_wheel(out: Path) -> Path:
    """``examples/etl`` as its 0.1.0 wheel, packed in-process (the Kestra tests build it for real)."""
    source = EXAMPLES / "etl"
    files = {f"etl/{p.name}": p.read_bytes() for p in sorted((source / "etl").glob("*.py"))}
    dist_info = "etl-0.1.0.dist-info"
    files[f"{dist_info}/METADATA"] = _metadata("etl", "0.1.0", [], ">=3.9", "The team's shared helpers").encode()
    files[f"{dist_info}/WHEEL"] = WHEEL
    return pack_wheel(out, "etl-0.1.0-py3-none-any.whl", dist_info, files, (2024, 1, 1, 0, 0, 0))


@pytest.fixture(scope="module")
def flit_core_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``flit_core`` wheel the sample project's builds need."""
    return download_wheel(FLIT_CORE, tmp_path_factory.mktemp("flit-core"))
