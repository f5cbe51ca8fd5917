"""The wheel as a release builds it, and a fresh virtual environment with only its base install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.clients import UV, clean_env, run, uv_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # sdist first, then the wheel from the unpacked sdist (as `uv build` does by default): the
    # sdist is shown to be complete, and no build/ folder is left in the checkout.
    run([UV, "build", "-q", "--out-dir", out, ROOT], uv_env(out / "cache"))
    (built,) = out.glob("packyard-*.whl")
    return built


@pytest.fixture(scope="module")
def base(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding ``pip install packyard`` (no extras).

    Made with ``python -m venv``, so it holds pip as a ``python:3.11-slim`` image does."""
    root = tmp_path_factory.mktemp("base")
    run([sys.executable, "-m", "venv", root / "venv"], clean_env())
    python = root / "venv" / "bin" / "python"
    run([UV, "pip", "install", "-q", "--python", python, wheel], uv_env(root / "cache"))
    return python
