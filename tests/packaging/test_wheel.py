"""The built wheel owns one top-level import name, ``packyard``.

``store/``, ``sync/`` and ``builder/`` are folders of the repository but are installed as
``packyard.store``, ``packyard.sync`` and ``packyard.builder`` (pyproject's ``package-dir``):
PyPI has unrelated distributions named ``store``, ``sync`` and ``builder``, and flow code has
its own ``sync.py``. The test builds the wheel the way a release would, installs it into a
fresh virtual environment and imports every module from there, not from the checkout.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from tests.packaging.conftest import ROOT
from tests.support.clients import UV, make_venv, run, uv_env


def test_the_wheel_holds_only_packyard(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"packyard", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    top_level = [n for n in names if n.endswith("top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["packyard"]
    # Every package folder of the checkout is in the wheel (pyproject lists them by hand).
    for folder, prefix in (
        ("packyard", "packyard"),
        ("store", "packyard/store"),
        ("sync", "packyard/sync"),
        ("builder", "packyard/builder"),
    ):
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.relative_to(ROOT / folder).as_posix()
            assert f"{prefix}/{relative}" in names, f"{init} is not in the wheel: add it to pyproject's packages"
    assert "packyard/builder/driver.py" in names
    assert any(n.startswith("packyard/ui/templates/") for n in names)


def test_store_sync_and_builder_are_not_importable_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", tmp_path / "cache")
    # with the server's dependencies: every module is imported, the server's too
    run([UV, "pip", "install", "-q", "--python", python, f"{wheel}[server]"], uv_env(tmp_path / "cache"))
    probe = """
import importlib, importlib.util, pkgutil, sys
for name in ("store", "sync", "builder"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable"
import packyard
assert "site-packages" in packyard.__file__, packyard.__file__
skip = {"packyard.__main__", "packyard.builder.driver"}
count = 0
for module in pkgutil.walk_packages(packyard.__path__, "packyard."):
    if module.name not in skip:
        importlib.import_module(module.name)
        count += 1
print(count)
"""
    result = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 80


def test_the_checkout_as_working_directory_runs_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """The README's start: `pip install '.[server]'` then `python -m packyard serve`, both in
    the checkout. Python then imports the checkout's packyard/ folder, which has no store/
    inside: packyard/__init__.py must find store/, sync/ and builder/ beside it."""
    python = make_venv(tmp_path / "venv", tmp_path / "cache")
    run([UV, "pip", "install", "-q", "--python", python, wheel], uv_env(tmp_path / "cache"))
    probe = (
        "import packyard.store.errors, packyard.sync, packyard.builder, packyard.cli; print(packyard.store.__file__)"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == ROOT / "store" / "__init__.py"
    result = subprocess.run([python, "-m", "packyard", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
