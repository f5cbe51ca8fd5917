"""``pip install packyard`` is the client: lean, and enough for every task-side command.

The wheel is installed WITHOUT extras into a fresh virtual environment, and from there every
client command (and the Python API) runs against a real server. The server's dependencies
are not installed there, and no command imports one (each run records ``sys.modules``); the
server's own commands answer with one line that names the extra. Then ``packyard run``
installs and runs a namespace's package where, as in ``python:3.11-slim``, there is no git,
no compiler and no uv on PATH (issue #15, items 2, 3 and 5).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import httpx

from tests.conftest import LiveServer
from tests.runs.conftest import simple_wheel
from tests.support.clients import clean_env, git_env, upload

SERVERS = ("local",)

BASE = {"packyard", "click", "packaging", "uv"}
"""The base install: packyard and its three dependencies (pyproject.toml)."""

SERVER_ONLY = (
    "fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings", "minio", "psycopg", "git", "build",
    "jinja2", "rich", "httpx", "typer", "multipart",
)  # fmt: skip
"""Import names of the server extra's distributions and of what they pull in."""

PROBE = """
import atexit, json, sys
out = sys.argv[1]
sys.argv = ["packyard", *json.loads(sys.argv[2])]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from packyard.entry import main
main()
"""


def client_env(server: LiveServer, tmp: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    env.update(PACKYARD_URL=server.url, PACKYARD_CACHE_DIR=str(tmp / "cache"), PIP_CONFIG_FILE=os.devnull)
    if token:
        env["PACKYARD_TOKEN"] = token
    return env


class Base:
    """``packyard ...`` in the base install, each run checked for server modules."""

    def __init__(self, python: Path, env: dict[str, str], tmp: Path) -> None:
        self.python, self.env, self.tmp, self.count = python, env, tmp, 0

    def __call__(self, *argv: str | Path, code: int | tuple[int, ...] = 0, cwd: Path | None = None) -> str:
        self.count += 1
        modules = self.tmp / f"modules-{self.count}.json"
        args = [str(a) for a in argv]
        done = subprocess.run(
            [self.python, "-c", PROBE, modules, json.dumps(args)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=cwd or self.tmp,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode in (code if isinstance(code, tuple) else (code,)), (args, done.returncode, done.stderr)
        if code == 0:
            assert "Traceback" not in done.stderr, (args, done.stderr)
        loaded = json.loads(modules.read_text())
        heavy = sorted(m for m in loaded if m.split(".")[0] in SERVER_ONLY)
        assert heavy == [], f"packyard {' '.join(args)} imported {heavy}"
        return done.stdout + done.stderr if code else done.stdout


def installed(base: Path) -> tuple[list[str], list[str]]:
    """(the distributions in the venv but pip and setuptools, the server modules importable there)."""
    probe = """
import importlib.metadata as md, importlib.util, json, sys
dists = sorted({d.metadata["Name"].lower() for d in md.distributions()} - {"pip", "setuptools"})
present = [n for n in json.loads(sys.argv[1]) if importlib.util.find_spec(n) is not None]
print(json.dumps([dists, present]))
"""
    done = subprocess.run([base, "-I", "-c", probe, json.dumps(SERVER_ONLY)], capture_output=True, text=True)
    return json.loads(done.stdout)


def test_the_base_install_is_the_client_in_four_packages(base: Path) -> None:
    dists, present = installed(base)
    assert set(dists) == BASE, dists
    assert present == [], f"server dependencies in a base install: {present}"


def test_server_commands_name_the_extra_in_one_line(base: Path, tmp_path: Path) -> None:
    packyard = Base(base, {**clean_env(), "PACKYARD_DATA": str(tmp_path / "data")}, tmp_path)
    server_commands = (
        ["serve"], ["worker", "--once"], ["fsck"], ["gc"], ["restore"], ["replicate"],
        ["copy-catalog", "--to", "postgresql://u:p@127.0.0.1:1/x"], ["token", "create", "--scope", "*", "--local"],
    )  # fmt: skip
    for argv in server_commands:
        said = packyard(*argv, code=10)
        lines = [line for line in said.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, said)
        assert "pip install 'packyard[server]'" in lines[0], (argv, said)
    assert not (tmp_path / "data").exists()  # nothing was opened or created


def _project(root: Path) -> dict[str, bytes]:
    """A one-module setuptools project (what ``packyard build`` builds)."""
    return {
        "proj/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        b'[project]\nname = "proj"\nversion = "0.1"\n',
        "proj/proj.py": b"X = 1\n",
    }


def test_every_client_command_against_a_real_server(
    base: Path, server: LiveServer, http: httpx.Client, ns: str, tmp_path: Path
) -> None:
    packyard = Base(base, client_env(server, tmp_path, server.admin_token), tmp_path)
    child = f"{ns}.child"
    sync = ns.replace(".", "-")

    # namespaces
    assert packyard("ns", "create", ns).strip() == f"created namespace {ns}"
    packyard("ns", "create", child)
    assert [n["name"] for n in json.loads(packyard("ns", "ls", "--under", ns, "--json"))] == [ns, child]
    assert json.loads(packyard("ns", "show", ns, "--json"))["name"] == ns
    assert "│ inherit" in packyard("ns", "show", child)
    packyard("ns", "set", child, "--inherit")

    # files
    src = tmp_path / "a.py"
    src.write_bytes(b"print('a')\n")
    assert packyard("files", "put", ns, "flows/a.py", src).startswith(f"wrote {ns}:flows/a.py revision 1 ")
    for path, data in _project(tmp_path).items():
        (tmp_path / "p").mkdir(exist_ok=True)
        (tmp_path / "p" / "f").write_bytes(data)
        packyard("files", "put", ns, path, tmp_path / "p" / "f")
    packyard("files", "get", ns, "flows/a.py", "-o", tmp_path / "got.py")
    assert (tmp_path / "got.py").read_bytes() == src.read_bytes()
    assert packyard("files", "get", ns, "flows/a.py") == "print('a')\n"
    listed = json.loads(packyard("files", "ls", ns, "--json"))
    assert [f["path"] for f in listed] == ["flows/a.py", "proj/proj.py", "proj/pyproject.toml"]
    assert "│ flows/a.py" in packyard("files", "ls", ns)
    packyard("files", "mv", ns, "flows/a.py", "flows/b.py")
    assert [h["revision"] for h in json.loads(packyard("files", "history", ns, "flows/a.py", "--json"))] == [1, 2]
    assert "as revision 3" in packyard("files", "restore", ns, "flows/a.py", "1")
    assert "deleted" in packyard("files", "rm", ns, "flows/b.py")
    packyard("files", "export", ns, "-o", tmp_path / "ns.zip", "--prefix", "flows")
    assert zipfile.ZipFile(tmp_path / "ns.zip").namelist() == ["flows/a.py"]
    assert packyard("files", "import", child, tmp_path / "ns.zip", "--prefix", "copied").strip() == (
        f"imported 1 files into {child} (1 changed)"
    )
    packyard("files", "get", ns, "missing.py", code=3)

    # a namespace as one archive, into another name
    packyard("export", ns, "-o", tmp_path / "ns.tar")
    said = packyard("import", tmp_path / "ns.tar", "--into", f"{ns}x", "--json")
    assert json.loads(said)["namespace"] == f"{ns}x"
    assert http.get(f"/api/v1/namespaces/{ns}x/files/flows/a.py").content == src.read_bytes()

    # pull, with the parents' files
    packyard("pull", child, "--dest", tmp_path / "work", "--with-parents")
    assert (tmp_path / "work" / "flows" / "a.py").read_bytes() == src.read_bytes()
    assert (tmp_path / "work" / "copied" / "flows" / "a.py").is_file()

    # the index: fetch, dists, yank, index-config, mirror warm
    upload(http, server, ns, simple_wheel(tmp_path / "dist", "tool", "1.0", body="def hello():\n    return 'hi'\n"))
    assert json.loads(packyard("dists", "ls", ns, "--json"))[0]["filename"] == "tool-1.0-py3-none-any.whl"
    fetched = packyard("fetch", child, "tool", "--dest", tmp_path / "fetched").split()
    assert fetched == [str(tmp_path / "fetched" / "tool-1.0-py3-none-any.whl")]
    packyard("fetch", ns, "tool-1.0-py3-none-any.whl", "--dest", tmp_path / "fetched")
    assert f"yanked {ns}:tool-1.0-py3-none-any.whl (old)" in packyard("yank", ns, "tool", "1.0", "--reason", "old")
    assert f"unyanked {ns}:tool-1.0-py3-none-any.whl" in packyard("unyank", ns, "tool", "1.0")
    assert f"index-url = {server.url}/{ns}/simple/" in packyard("index-config", ns)
    (tmp_path / "req.txt").write_text("tool\n")
    assert "tool-1.0-py3-none-any.whl" in packyard("mirror", "warm", ns, "-r", tmp_path / "req.txt")

    # task runs: an environment, and a command in it
    environment = json.loads(packyard("env", ns, "--with", "tool", "--json"))
    assert Path(environment["python"]).is_file()
    said = packyard("run", child, "--with", "tool", "--", "python", "-c", "import tool; print(tool.hello())")
    assert said.strip() == "hi"
    packyard("run", ns, "--", "python", "-c", "import sys; sys.exit(3)", code=3)

    # tokens
    created = json.loads(packyard("token", "create", "--scope", ns, "--role", "read", "--name", "t", "--json"))
    assert created["secret"].startswith("pky_")
    assert created["token"]["id"] in [t["id"] for t in json.loads(packyard("token", "list", "--json"))]
    assert packyard("token", "revoke", created["token"]["id"]).strip() == f"revoked token {created['token']['id']}"

    # builds: queue, inspect, cancel (a build's own run is tests/e2e/test_quickstart.py's)
    build = json.loads(packyard("build", ns, "--path", "proj", "--json"))
    assert build["namespace"] == ns and build["path"] == "proj"
    assert json.loads(packyard("build", "show", str(build["id"]), "--json"))["id"] == build["id"]
    packyard("build", "cancel", str(build["id"]), code=(0, 4))  # 4: it already ended
    packyard("build", "logs", str(build["id"]))
    assert build["id"] in [b["id"] for b in json.loads(packyard("builds", "ls", "-n", ns, "--json"))]

    # git sync, one-off and registered
    repo = tmp_path / "repo"
    git = git_env("Ann", "ann@example.com")
    subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True, env=git)
    (repo / "flow.py").write_text("print('synced')\n")
    subprocess.run(["git", "-C", repo, "add", "."], check=True, env=git)
    subprocess.run(["git", "-C", repo, "commit", "-qm", "one"], check=True, env=git)
    url = repo.as_uri()
    assert "flow.py" in packyard("sync", "run", child, url, "--prefix", "git")
    packyard("sync", "add", sync, "-n", child, "--url", url, "--prefix", "reg")
    assert [s["name"] for s in json.loads(packyard("sync", "list", "--json"))].count(sync) == 1
    assert json.loads(packyard("sync", "show", sync, "--json"))["namespace"] == child
    packyard("sync", "trigger", sync)
    assert len(json.loads(packyard("sync", "runs", sync, "--json"))) == 1
    packyard("sync", "rm", sync)
    assert http.get(f"/api/v1/namespaces/{child}/files/reg/flow.py").content == b"print('synced')\n"


API = """
import json, subprocess, sys, time
from pathlib import Path
from packyard import Client
from packyard.store.errors import NotFound, PackyardError

ns, out = sys.argv[1], Path(sys.argv[2])
with Client() as client:
    entry, created = client.put_file(ns, "flows/x.py", b"print('x')\\n")
    assert created and entry["revision"] == 1
    assert client.get_file(ns, "flows/x.py") == b"print('x')\\n"
    assert [f["path"] for f in client.list_files(ns)] == ["flows/x.py"]
    client.move_file(ns, "flows/x.py", "flows/y.py")
    assert [h["revision"] for h in client.history(ns, "flows/x.py")] == [1, 2]
    client.restore(ns, "flows/x.py", 1)
    client.delete_file(ns, "flows/y.py")
    assert client.pull(ns, dest=out / "work") == {"downloaded": 1, "unchanged": 0}
    assert client.pull(ns, out / "work", prefix="flows") == {"downloaded": 0, "unchanged": 1}
    (wheel,) = client.fetch(ns, "tool", dest=out / "dists")
    assert wheel.name == "tool-1.0-py3-none-any.whl", wheel
    assert [d["filename"] for d in client.dists(ns)] == [wheel.name]
    python = client.env(ns, "tool")
    said = subprocess.run([python, "-c", "import tool; print(tool.hello())"], capture_output=True, text=True)
    assert said.stdout == "hi\\n", said
    assert client.run(ns, ["python", "-c", "import tool, sys; sys.exit(len(tool.hello()))"], requirements=["tool"]) == 2
    time.sleep(6)  # past the server's keep-alive timeout: the kept connection is closed
    entry, _ = client.put_file(ns, "streamed.bin", iter([b"a" * 100_000, b"b"]))  # a body that cannot be sent twice
    assert entry["size"] == 100_001, entry
    try:
        client.get_file(ns, "nothing.py")
    except NotFound as exc:
        assert isinstance(exc, PackyardError) and "nothing.py" in exc.message
    else:
        raise AssertionError("no NotFound")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[3]))
assert heavy == [], heavy
print("ok")
"""


def test_the_python_api_in_a_base_install(
    base: Path, server: LiveServer, http: httpx.Client, ns: str, tmp_path: Path
) -> None:
    http.post("/api/v1/namespaces", json={"name": ns}, headers=server.admin).raise_for_status()
    upload(http, server, ns, simple_wheel(tmp_path / "dist", "tool", "1.0", body="def hello():\n    return 'hi'\n"))
    done = subprocess.run(
        [base, "-c", API, ns, tmp_path, json.dumps(SERVER_ONLY)],
        env=client_env(server, tmp_path, server.admin_token),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "ok", (done.stdout, done.stderr)


ESSENTIALS = ("sh", "cat", "ls", "env", "mkdir", "rm", "tar")
"""Of a slim image's /usr/bin, what a task script might call; no git, compiler or uv."""


def test_packyard_run_without_git_compiler_or_uv_on_path(
    base: Path, server: LiveServer, http: httpx.Client, ns: str, tmp_path: Path
) -> None:
    """As in ``python:3.11-slim`` after ``pip install packyard``: PATH holds the interpreter's
    bin folder and a few system tools, no ``git``, ``cc``, ``gcc`` or (beforehand) ``uv``."""
    assert set(installed(base)[0]) == BASE  # the client only, as in the task image
    http.post("/api/v1/namespaces", json={"name": ns}, headers=server.admin).raise_for_status()
    upload(http, server, ns, simple_wheel(tmp_path / "dist", "greet", "2.0", body="def hello():\n    return 'hello'\n"))
    system = tmp_path / "usr-bin"
    system.mkdir()
    for tool in ESSENTIALS:
        found = shutil.which(tool)
        if found:
            (system / tool).symlink_to(found)
    bin_dir = base.parent
    path = os.pathsep.join([str(bin_dir), str(system)])
    for tool in ("git", "cc", "gcc", "clang"):
        assert shutil.which(tool, path=path) is None, tool
    assert shutil.which("uv", path=str(system)) is None
    # the only uv is the one the base install brought, as a dependency
    assert shutil.which("uv", path=path) == str(bin_dir / "uv")

    env = {**client_env(server, tmp_path, server.admin_token), "PATH": path, "HOME": str(tmp_path / "home")}
    script = textwrap.dedent(
        """
        import shutil, sys, greet
        print(greet.hello(), shutil.which("git"), shutil.which("gcc"))
        """
    )
    (tmp_path / "task.py").write_text(script)
    done = subprocess.run(
        [bin_dir / "packyard", "run", ns, "--with", "greet==2.0", "--", "python", tmp_path / "task.py"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip() == "hello None None"
    assert Path(sys.executable).parent != bin_dir
