"""``packyard pull``: a namespace's files into a working directory, paths kept, hash-checked;
ancestors overlaid with ``--with-parents`` (nearer wins); filters; unchanged files skipped;
``run --pull`` in a temporary directory holding them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from packyard.store.errors import InvalidInput

from packyard.client import Client
from packyard.runs.pull import plan_pull, pull
from packyard.runs.transfer import inside
from tests.conftest import LiveServer
from tests.runs.conftest import cli, log_mark, simple_wheel, unique_ns
from tests.support.clients import output

PARENT_FILES = {
    "flows/x.py": b"print('parent x')\n",
    "flows/common.py": b"SHARED = 1\n",
    "README.md": b"# company\n",
    "data/a.csv": b"a,b\n1,2\n",
}
CHILD_FILES = {
    "flows/x.py": b"print('child x')\n",
    "jobs/run.py": b"print('job')\n",
    "data/b.csv": b"c\n3\n",
    "deep/er/still/file.txt": b"deep\n",
}
GRANDCHILD_FILES = {"data/a.csv": b"overridden\n"}


@dataclass
class Files:
    parent: str
    child: str
    grandchild: str
    empty: str


@pytest.fixture(scope="module")
def files(server: LiveServer) -> Files:
    parent = unique_ns("p")
    f = Files(parent, f"{parent}.c", f"{parent}.c.g", f"{parent}.empty")
    client = Client(server.url, server.admin_token)
    try:
        for name in (f.parent, f.child, f.grandchild, f.empty):
            client.create_namespace(name)
        for ns, content in ((f.parent, PARENT_FILES), (f.child, CHILD_FILES), (f.grandchild, GRANDCHILD_FILES)):
            for path, data in content.items():
                client.put_file(ns, path, data)
    finally:
        client.close()
    return f


def tree_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def file_gets(server: LiveServer, mark: int, *namespaces: str) -> list[str]:
    prefixes = tuple(f"/api/v1/namespaces/{ns}/files/" for ns in namespaces)
    return [p for m, p, _ in server.requests_since(mark) if m == "GET" and p.startswith(prefixes)]


def test_pull_keeps_paths(server: LiveServer, files: Files, tmp_path: Path) -> None:
    dest = tmp_path / "work"
    proc = cli(server, tmp_path / "cache", "pull", files.child, "--dest", dest)
    assert (proc.stdout, proc.stderr) == ("", "")  # quiet when not on a terminal
    assert tree_of(dest) == CHILD_FILES  # only the namespace's own files
    umask = os.umask(0)
    os.umask(umask)
    for path in dest.rglob("*"):
        if path.is_file():  # the usual mode for a new file, not mkstemp's 0600
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_with_parents_lays_ancestors_first_and_nearer_wins(server: LiveServer, files: Files, tmp_path: Path) -> None:
    dest = tmp_path / "work"
    cli(server, tmp_path / "cache", "pull", files.grandchild, "--dest", dest, "--with-parents")
    assert tree_of(dest) == {**PARENT_FILES, **CHILD_FILES, **GRANDCHILD_FILES}
    assert (dest / "flows/x.py").read_bytes() == CHILD_FILES["flows/x.py"]  # child over parent
    assert (dest / "data/a.csv").read_bytes() == GRANDCHILD_FILES["data/a.csv"]  # grandchild over both

    # a namespace with no files of its own still gets its ancestors'
    empty = tmp_path / "empty"
    cli(server, tmp_path / "cache", "pull", files.empty, "--dest", empty, "--with-parents")
    assert tree_of(empty) == PARENT_FILES


@pytest.mark.local_only
def test_prefix_include_exclude(server: LiveServer, files: Files, client: Client, tmp_path: Path) -> None:
    def planned(**filters: object) -> dict[str, bytes]:
        plan = plan_pull(client, files.child, with_parents=True, **filters)  # type: ignore[arg-type]
        return {path: (PARENT_FILES | CHILD_FILES)[path] for path in plan}

    merged = {**PARENT_FILES, **CHILD_FILES}
    assert planned() == merged
    assert planned(prefix="flows") == {k: v for k, v in merged.items() if k.startswith("flows/")}
    assert planned(include=["*.py"]) == {k: v for k, v in merged.items() if k.endswith(".py")}
    assert planned(include=["*.csv", "README.md"]) == {
        k: v for k, v in merged.items() if k.endswith(".csv") or k == "README.md"
    }
    assert planned(exclude=["flows/*", "deep/*"]) == {
        k: v for k, v in merged.items() if not k.startswith(("flows/", "deep/"))
    }
    assert planned(include=["*.nothing"]) == {}

    # the same through the CLI: the options combine, and only the chosen files are written
    dest = tmp_path / "both"
    args = ["--prefix", "flows", "--include", "*.py", "--exclude", "*common*", "--with-parents"]
    cli(server, tmp_path / "cache", "pull", files.child, "--dest", dest, *args)
    assert tree_of(dest) == {"flows/x.py": CHILD_FILES["flows/x.py"]}


def test_second_pull_downloads_nothing_and_repairs_changes(server: LiveServer, files: Files, tmp_path: Path) -> None:
    dest = tmp_path / "work"
    cache = tmp_path / "cache"
    mark = log_mark(server)
    cli(server, cache, "pull", files.child, "--dest", dest, "--with-parents")
    assert len(file_gets(server, mark, files.child, files.parent)) == 7  # x.py once: the child's

    mark = log_mark(server)
    cli(server, cache, "pull", files.child, "--dest", dest, "--with-parents")
    assert file_gets(server, mark, files.child, files.parent) == []  # every sha256 matched

    (dest / "jobs/run.py").write_bytes(b"locally edited\n")
    (dest / "data/a.csv").unlink()
    mark = log_mark(server)
    cli(server, cache, "pull", files.child, "--dest", dest, "--with-parents")
    fetched = file_gets(server, mark, files.child, files.parent)
    assert sorted(p.split("?")[0].rsplit("/files/", 1)[1] for p in fetched) == ["data/a.csv", "jobs/run.py"]
    assert tree_of(dest) == {**PARENT_FILES, **CHILD_FILES}

    client = Client(server.url, server.admin_token)  # the library reports what it did
    try:
        assert pull(client, files.child, dest, with_parents=True) == {"downloaded": 0, "unchanged": 7}
    finally:
        client.close()


@pytest.mark.local_only
def test_dest_with_a_symlink_out_is_refused(server: LiveServer, files: Files, tmp_path: Path) -> None:
    """dest/flows -> elsewhere: writing the namespace's flows/x.py would land outside dest."""
    dest = tmp_path / "work"
    dest.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / "flows").symlink_to(elsewhere)
    proc = cli(server, tmp_path / "cache", "pull", files.child, "--dest", dest, check=False)
    assert proc.returncode == 2, output(proc)
    assert proc.stderr.startswith("error: flows/x.py would land outside"), proc.stderr
    assert list(elsewhere.iterdir()) == []  # nothing written outside
    assert sorted(p.name for p in dest.iterdir()) == ["flows"]  # and nothing inside: refused up front

    # the guard itself: a file in dest that is a symlink out, and a path climbing out
    link_dest = tmp_path / "fetch"
    link_dest.mkdir()
    (link_dest / "etl-0.1.0-py3-none-any.whl").symlink_to(elsewhere / "stolen.whl")
    for relative in ("etl-0.1.0-py3-none-any.whl", "../x.py", str(elsewhere / "abs.py")):
        with pytest.raises(InvalidInput, match="would land outside"):
            inside(link_dest, relative)
    assert inside(link_dest, "sub/../ok.py") == (link_dest / "ok.py").resolve()
    assert list(elsewhere.iterdir()) == []


def test_run_pull_runs_among_the_files_in_a_temporary_directory(
    server: LiveServer, files: Files, tmp_path: Path
) -> None:
    code = "import os, pathlib; print(os.getcwd()); print(pathlib.Path('flows/x.py').read_text(), end='')"
    work = tmp_path / "caller"
    work.mkdir()
    proc = cli(server, tmp_path / "cache", "run", files.child, "--pull", "--", "python", "-c", code, cwd=work)
    cwd, content = proc.stdout.split("\n", 1)
    assert content == CHILD_FILES["flows/x.py"].decode()
    assert Path(cwd) != work and Path(cwd).name.startswith("packyard-run-")
    assert not Path(cwd).exists()  # removed after the run
    assert list(work.iterdir()) == []  # nothing pulled into the caller's directory

    status = cli(server, tmp_path / "cache", "run", files.child, "--pull", "--", "python", "jobs/run.py", check=False)
    assert (status.returncode, status.stdout) == (0, "job\n")


@pytest.mark.local_only
def test_run_pull_resolves_relative_requirements_among_the_pulled_files(server: LiveServer, tmp_path: Path) -> None:
    """``run --pull --with ./crunch-1.0-py3-none-any.whl``: the wheel among NS's files is
    installed, not a same-named one in the caller's directory."""
    ns = unique_ns("relreq")
    pulled = simple_wheel(tmp_path / "pulled", "crunch", "1.0", "WHERE = 'pulled'\n")
    stray = simple_wheel(tmp_path / "caller", "crunch", "1.0", "WHERE = 'caller'\n")
    assert stray.name == pulled.name
    client = Client(server.url, server.admin_token)
    try:
        client.create_namespace(ns)
        client.put_file(ns, pulled.name, pulled.read_bytes())
    finally:
        client.close()
    code = "import crunch; print(crunch.WHERE)"
    proc = cli(
        server, tmp_path / "cache", "run", ns, "--pull", "--with", f"./{pulled.name}", "--", "python", "-c", code,
        cwd=stray.parent,
    )  # fmt: skip
    assert proc.stdout.strip() == "pulled", output(proc)
