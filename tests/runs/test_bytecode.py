"""Task environments carry their bytecode: compiled once when the environment is built,
shipped in its bundle, and still valid where a fresh worker unpacks it (another path).

With ``PYTHONDONTWRITEBYTECODE=1`` (many containers) an environment without ``.pyc`` files
compiles every module it imports on every run; these tests ask the interpreter itself
(``python -v``) whether it loaded each module from its ``.pyc`` or compiled the source.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.conftest import cli, env_json, unique_ns, wheel
from tests.support.clients import clean_env, create_ns, run, upload

pytestmark = pytest.mark.local_only  # client-side: the storage backend holds the same bytes either way

MODULES = ("crunch/__init__.py", "crunch/utils.py", "crunch/deep/__init__.py", "crunch/deep/core.py")
TAG = sys.implementation.cache_tag


def files_of(env: Path) -> dict[str, int]:
    """Every file of an environment with its mtime in ns (a write of any .pyc changes this)."""
    return {str(p.relative_to(env)): p.stat().st_mtime_ns for p in env.rglob("*") if p.is_file()}


def assert_loads_bytecode(env: Path) -> None:
    """Each module of ``crunch`` has its .pyc, and the interpreter uses it rather than the source."""
    site = next((env / "lib").glob("python*/site-packages"))
    for module in MODULES:
        source = site / module
        assert (source.parent / "__pycache__" / f"{source.stem}.{TAG}.pyc").is_file(), f"no bytecode for {module}"
    before = files_of(env)
    probe = run([env / "bin" / "python", "-v", "-c", "import crunch.utils, crunch.deep.core"], clean_env())
    assert files_of(env) == before  # nothing compiled and written
    quiet = {**clean_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = run([env / "bin" / "python", "-v", "-c", "import crunch.utils, crunch.deep.core"], quiet)
    for module in MODULES:
        # "# .../__pycache__/utils.cpython-311.pyc matches .../crunch/utils.py" is printed only
        # when the .pyc is valid for the source; compiling prints "code object from .../utils.py"
        assert re.search(rf"\.pyc matches \S*/{re.escape(module)}$", probe.stderr, re.M), (module, probe.stderr)
        assert not re.search(rf"code object from '?\S*/{re.escape(module)}'?$", probe.stderr, re.M), module


def test_built_and_unpacked_environments_carry_their_bytecode(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    ns = unique_ns("pyc")
    create_ns(http, server, ns)
    body = "def double(x):\n    return 2 * x\n"
    modules = {module: f"# {module}\n{body}" for module in MODULES}
    upload(http, server, ns, wheel(tmp_path / "dists", "crunch", "1.0", modules))

    built = env_json(server, tmp_path / "worker-a", ns, "--with", "crunch")  # installed by uv, shared
    assert (built["from_bundle"], built["reused"]) == (False, False)
    assert_loads_bytecode(Path(built["path"]))
    (row,) = server.rows("SELECT namespace FROM bundles WHERE key = ?", (built["key"],))  # the server took it
    assert row == (ns,)

    # a fresh worker: the start-up fast path unpacks the bundle into another cache (another path)
    fast = env_json(server, tmp_path / "worker-b" / "elsewhere", ns, "--with", "crunch")
    assert (fast["key"], fast["from_bundle"]) == (built["key"], True)
    assert fast["path"] != built["path"]
    assert_loads_bytecode(Path(fast["path"]))

    # and the full client (--refresh is not a fast-path option) unpacks the same bundle alike
    full = env_json(server, tmp_path / "worker-c", ns, "--with", "crunch", "--refresh")
    assert (full["key"], full["from_bundle"]) == (built["key"], True)
    assert_loads_bytecode(Path(full["path"]))
    code = "import crunch.deep.core as c; print(c.double(21))"
    ran = cli(server, tmp_path / "worker-c", "run", ns, "--with", "crunch", "--", "python", "-c", code)
    assert ran.stdout.strip() == "42"
