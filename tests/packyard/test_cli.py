"""The ``packyard`` CLI as users run it: real subprocesses against a real server, both backends.

Every call here is a fresh ``python -m packyard`` process (about half a second each), so each
test walks one whole scenario instead of checking one command per test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
from packyard.store.catalog import Catalog
from packyard.store.retention import KEYS as RETENTION_KEYS
from packyard.store.tokens import Tokens

from tests.conftest import LiveServer
from tests.support.clients import unique_ns
from tests.support.procs import free_port


def cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "packyard", *args],
        env=env,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    """The stdout of a call that must succeed (its stderr in the failure message otherwise)."""
    assert result.returncode == 0, (result.args, result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout.decode(errors="replace")


def error_problem(result: subprocess.CompletedProcess[bytes], code: int) -> str | None:
    """What breaks the error contract (exit ``code``, one 'error: ...' line, no traceback), if anything."""
    stderr = result.stderr.decode(errors="replace")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if result.returncode != code:
        return f"exit {result.returncode}, not {code}; stderr {stderr!r}; stdout {result.stdout[:300]!r}"
    if "Traceback" in stderr or b"Traceback" in result.stdout:
        return f"a traceback: {stderr}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"not one 'error: ' line: {stderr!r}"
    return None


def failed(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    """Assert the exit code and the one-line 'error: ...' contract; return the message."""
    problem = error_problem(result, code)
    assert problem is None, (result.args[3:], problem)
    return result.stderr.decode().strip()


def spawn(env: dict[str, str], argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "packyard", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[bytes]:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli_many(env: dict[str, str], commands: list[list[str]]) -> list[subprocess.CompletedProcess[bytes]]:
    """Run independent CLI calls side by side (each one is mostly interpreter start-up)."""
    return [finish(proc) for proc in [spawn(env, argv) for argv in commands]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def admin_put(http: httpx.Client, server: LiveServer, ns: str, path: str, data: bytes) -> None:
    response = http.put(f"/api/v1/namespaces/{ns}/files/{path}", content=data, headers=server.admin)
    assert response.status_code in (200, 201), response.text


# -- namespaces ---------------------------------------------------------------------------


def test_namespaces(server: LiveServer, ns: str) -> None:
    admin = server.client_env(server.admin_token)
    assert ok(cli(admin, "ns", "create", ns)).strip() == f"created namespace {ns}"
    failed(cli(admin, "ns", "create", ns), 4)  # it exists already: Conflict

    parent = ns.split(".")[0]
    listed = json.loads(ok(cli(server.client_env(), "ns", "ls", "--under", parent, "--json")))
    assert [row["name"] for row in listed] == [parent, ns]

    shown = json.loads(ok(cli(server.client_env(), "ns", "show", ns, "--json")))
    assert (shown["name"], shown["files"], shown["bytes"], shown["settings"]) == (ns, 0, 0, {})
    assert shown["created_by"] == "token:env-admin (PACKYARD_ADMIN_TOKEN)"


def test_ns_show_gives_the_effective_settings_and_where_each_comes_from(server: LiveServer, http: httpx.Client) -> None:
    """An upstream and allow list set on the top, a deny list and no-inherit in the middle:
    the leaf's own settings are empty, its effective ones come from both (computed by the
    server, rendered by the CLI); a child that turns the upstream off has no lists either."""
    top = unique_ns("eff")
    mid, leaf, off = f"{top}.mid", f"{top}.mid.leaf", f"{top}.mid.leaf.off"
    upstream = f"http://127.0.0.1:9/{'a-long-path/' * 8}simple/"  # longer than 80 columns; never fetched
    for name, settings in (
        (top, {"upstream": upstream, "upstream_allow": ["req*", "idna"]}),
        (mid, {"upstream_deny": ["internal-*"], "inherit": False}),
        (leaf, {}),
        (off, {"upstream": ""}),
    ):
        assert http.post("/api/v1/namespaces", json={"name": name}, headers=server.admin).status_code == 201
        if settings:
            changed = http.patch(f"/api/v1/namespaces/{name}/settings", json=settings, headers=server.admin)
            assert changed.status_code == 200, changed.text
    env = server.client_env()
    shown, text, shown_off = cli_many(
        env, [["ns", "show", leaf, "--json"], ["ns", "show", leaf], ["ns", "show", off, "--json"]]
    )

    info = json.loads(ok(shown))
    assert info["settings"] == {}
    assert info["effective"] == {
        "index_chain": [leaf, mid],  # mid does not inherit: top's files are not in leaf's index
        "inherit": {"value": True, "from": None},
        "upstream": {"value": upstream, "from": top},
        "upstream_auth_env": {"value": None, "from": top},
        "upstream_allow": [{"patterns": ["req*", "idna"], "from": top}],
        "upstream_deny": [{"patterns": ["internal-*"], "from": mid}],
        "retention": {key: {"value": None, "from": None} for key in RETENTION_KEYS},  # no policy in the chain
    }
    rows = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in ok(text).splitlines() if "│" in line}
    assert ("upstream", upstream, top) in rows  # whole, though the output is not a terminal
    assert ("upstream_allow", "req* idna", top) in rows
    assert ("upstream_deny", "internal-*", mid) in rows
    assert ("inherit", "True", "(default)") in rows

    effective = json.loads(ok(shown_off))["effective"]
    assert effective["upstream"] == {"value": None, "from": off}
    assert (effective["upstream_allow"], effective["upstream_deny"]) == ([], [])


def test_tables_print_whole_lines_off_a_terminal(server: LiveServer) -> None:
    """Piped (as here), a table is as wide as its longest cell, not cut to 80 columns."""
    long = unique_ns("wide") + "." + "x" * 90
    admin = server.client_env(server.admin_token)
    ok(cli(admin, "ns", "create", long))
    listing = ok(cli(admin, "ns", "ls", "--under", long))
    assert any(long in line for line in listing.splitlines()), listing
    assert "…" not in listing


# -- files --------------------------------------------------------------------------------


def test_files_lifecycle(server: LiveServer, ns: str, tmp_path: Path, http: httpx.Client) -> None:
    env = server.client_env(server.admin_token)
    v1, v2 = b"print('v1')\n", b"print('v2')\n"
    data = os.urandom(200_000)
    local = tmp_path / "etl.py"
    local.write_bytes(v1)

    out = ok(cli(env, "files", "put", ns, "flows/etl.py", str(local)))
    assert out.strip() == f"wrote {ns}:flows/etl.py revision 1 sha256 {sha(v1)}"
    out = ok(cli(env, "files", "put", ns, "data/in.bin", "-", stdin=data))
    assert out.startswith(f"wrote {ns}:data/in.bin revision 1 ")
    out = ok(cli(env, "files", "put", ns, "data/in.bin", "-", stdin=data))
    assert out.startswith(f"unchanged {ns}:data/in.bin revision 1 ")
    # PATH doubles as the local file when SOURCE is left out
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_bytes(v2)
    out = ok(cli(env, "files", "put", ns, "flows/etl.py", cwd=tmp_path))
    assert out.strip() == f"wrote {ns}:flows/etl.py revision 2 sha256 {sha(v2)}"

    target = tmp_path / "out" / "etl-r1.py"
    got, _, listed = cli_many(
        server.client_env(),
        [
            ["files", "get", ns, "data/in.bin"],
            ["files", "get", ns, "flows/etl.py", "-r", "1", "-o", str(target)],
            ["files", "ls", ns, "--json"],
        ],
    )
    ok(got)
    assert got.stdout == data
    assert target.read_bytes() == v1
    assert [p.name for p in target.parent.iterdir()] == ["etl-r1.py"]  # no temporary left
    listing = json.loads(ok(listed))
    assert [(f["path"], f["revision"], f["size"], f["sha256"]) for f in listing] == [
        ("data/in.bin", 1, len(data), sha(data)),
        ("flows/etl.py", 2, len(v2), sha(v2)),
    ]

    assert "moved" in ok(cli(env, "files", "mv", ns, "flows/etl.py", "flows/main.py"))
    assert "deleted" in ok(cli(env, "files", "rm", ns, "data/in.bin"))
    names = [f["path"] for f in http.get(f"/api/v1/namespaces/{ns}/files").json()]
    assert names == ["flows/main.py"]

    history = json.loads(ok(cli(server.client_env(), "files", "history", ns, "flows/etl.py", "--json")))
    assert [(h["revision"], h["deleted"], h["origin"]) for h in history] == [
        (1, False, "put"),
        (2, False, "put"),
        (3, True, "move:flows/etl.py"),
    ]
    assert history[0]["sha256"] == sha(v1)

    out = ok(cli(env, "files", "restore", ns, "flows/etl.py", "1"))
    assert "as revision 4" in out
    assert http.get(f"/api/v1/namespaces/{ns}/files/flows/etl.py").content == v1
    assert http.get(f"/api/v1/namespaces/{ns}/files/flows/main.py").content == v2


def test_export_and_import(server: LiveServer, ns: str, tmp_path: Path, http: httpx.Client) -> None:
    files = {"flows/etl.py": b"print('etl')\n", "data/rows.csv": b"a,b\n1,2\n", "README.md": b"# hi\n"}
    for path, data in files.items():
        admin_put(http, server, ns, path, data)

    archive = tmp_path / "x.zip"
    assert "exported" in ok(cli(server.client_env(), "files", "export", ns, "-o", str(archive)))
    with zipfile.ZipFile(archive) as z:
        assert {name: z.read(name) for name in z.namelist()} == files
    umask = os.umask(0)
    os.umask(umask)
    assert archive.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user makes, not 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left

    copy = f"{ns}.copy"
    env = server.client_env(server.admin_token)
    out = ok(cli(env, "files", "import", copy, str(archive), "--prefix", "restored"))
    assert out.strip() == f"imported 3 files into {copy} (3 changed)"
    for path, data in files.items():
        assert http.get(f"/api/v1/namespaces/{copy}/files/restored/{path}").content == data

    # an unsafe archive is refused whole: exit 2, nothing written
    bad = tmp_path / "bad.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fine.txt", b"fine")
        z.writestr("../evil.txt", b"evil")
    bad.write_bytes(buf.getvalue())
    before = server.blob_hashes()
    failed(cli(env, "files", "import", f"{ns}.bad", str(bad)), 2)
    assert server.count("file_revisions", f"{ns}.bad") == 0
    assert server.blob_hashes() == before
    assert server.temp_count() == 0


# -- tokens -------------------------------------------------------------------------------


def test_tokens(server: LiveServer, ns: str, tmp_path: Path) -> None:
    admin = server.client_env(server.admin_token)
    created = json.loads(
        ok(cli(admin, "token", "create", "--scope", ns, "--role", "write", "--name", "cli-test", "--json"))
    )
    token, secret = created["token"], created["secret"]
    assert (token["scope"], token["role"], token["name"], token["revoked"]) == (ns, "write", "cli-test", None)
    assert secret.startswith("pky_")

    listed = json.loads(ok(cli(admin, "token", "list", "--json")))
    mine = [row for row in listed if row["id"] == token["id"]]
    assert mine == [token]
    assert all("secret" not in key for row in listed for key in row)
    assert secret not in json.dumps(listed)

    writer = server.client_env(secret)
    ok(cli(writer, "files", "put", ns, "a.txt", "-", stdin=b"from the new token"))
    # a child namespace is in scope, a sibling is not
    ok(cli(writer, "files", "put", f"{ns}.child", "a.txt", "-", stdin=b"child"))
    sibling = ns.split(".")[0] + ".other"
    failed(cli(writer, "files", "put", sibling, "a.txt", "-", stdin=b"nope"), 7)
    assert server.count("file_revisions", sibling) == 0
    # a write token cannot mint tokens
    failed(cli(writer, "token", "create", "--scope", ns, "--role", "read"), 7)

    assert ok(cli(admin, "token", "revoke", token["id"])).strip() == f"revoked token {token['id']}"
    failed(cli(writer, "files", "put", ns, "a.txt", "-", stdin=b"after revoke"), 6)
    assert server.count("file_revisions", ns) == 1


def test_local_token_bootstrap(tmp_path: Path) -> None:
    """``token create --local`` writes the catalog in PACKYARD_DATA directly: no server needed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    data = tmp_path / "data"
    env["PACKYARD_DATA"] = str(data)
    env["PACKYARD_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: it must not be used

    created = json.loads(ok(cli(env, "token", "create", "--local", "--scope", "*", "--role", "admin", "--json")))
    token, secret = created["token"], created["secret"]
    assert (token["scope"], token["role"], token["created_by"]) == ("*", "admin", "local")

    listed = json.loads(ok(cli(env, "token", "list", "--local", "--json")))
    assert listed == [token]

    catalog = Catalog(data / "catalog.db")
    try:
        row = catalog.one("SELECT * FROM tokens WHERE id = ?", (token["id"],))
        assert row is not None
        assert row["secret_hash"] == sha(secret.encode())
        assert secret not in json.dumps(row)
        assert Tokens(catalog).authenticate(secret).id == token["id"]
    finally:
        catalog.close()

    failed(cli(env, "token", "create", "--local", "--scope", "Bad..Scope", "--role", "admin"), 2)
    failed(cli(env, "token", "revoke", "--local", "no-such-token"), 3)


# -- errors -------------------------------------------------------------------------------


BAD_NAMES = {
    "dotdot": ("files", "put", "{ns}", "../x", "{src}"),
    "dot-segment": ("files", "put", "{ns}", "a/./b", "{src}"),
    "empty-segment": ("files", "put", "{ns}", "a//b", "{src}"),
    "climb-to-another-route": ("files", "get", "{ns}", "../../../../../healthz"),
    "backslash": ("files", "rm", "{ns}", "a\\b"),
    "history-dotdot": ("files", "history", "{ns}", "../../tokens"),
    "bad-namespace": ("files", "put", "Bad..NS", "a.txt", "{src}"),
    "dotdot-namespace": ("files", "ls", ".."),
}


def test_bad_names_exit_2(server: LiveServer, ns: str, tmp_path: Path) -> None:
    """Each bad path or namespace: exit 2 with one 'error:' line, and nothing written."""
    src = tmp_path / "src.txt"
    src.write_bytes(b"payload")
    before = server.blob_hashes()
    commands = [[a.format(ns=ns, src=src) for a in args] for args in BAD_NAMES.values()]
    results = cli_many(server.client_env(server.admin_token), commands)
    problems = {}
    for case, result in zip(BAD_NAMES, results, strict=True):
        problem = error_problem(result, 2)
        if problem is None and not any(word in result.stderr.decode() for word in ("path", "namespace")):
            problem = f"the message does not say what was wrong: {result.stderr!r}"
        if problem:
            problems[case] = problem
    assert not problems, "\n".join(f"{case}: {problem}" for case, problem in problems.items())
    assert server.count("file_revisions", ns) == 0
    assert server.count("namespaces", ns) == 0
    assert server.blob_hashes() == before


def test_error_exit_codes(server: LiveServer, ns: str, tmp_path: Path, http: httpx.Client) -> None:
    src = tmp_path / "src.txt"
    src.write_bytes(b"payload")

    admin_put(http, server, ns, "present.txt", b"here")
    response = http.post("/api/v1/tokens", json={"scope": f"{ns}x", "role": "admin"}, headers=server.admin)
    assert response.status_code == 201, response.text
    other_scope = response.json()["secret"]
    out = tmp_path / "got.txt"
    cases = {
        # a write without a token
        "no-token": (None, ["files", "put", ns, "a.txt", str(src)], 6),
        # a token whose scope is a sibling ('{ns}x' does not cover '{ns}')
        "wrong-scope": (other_scope, ["files", "put", ns, "a.txt", str(src)], 7),
        # a file or revision that does not exist (-o must then leave no file behind)
        "missing-file": (None, ["files", "get", ns, "missing.txt"], 3),
        "missing-revision": (None, ["files", "get", ns, "present.txt", "-r", "7", "-o", str(out)], 3),
        "missing-namespace": (None, ["ns", "show", f"{ns}.nothing"], 3),
        # a local file that does not exist: refused before any request
        "missing-local-file": (server.admin_token, ["files", "put", ns, "b.txt", str(tmp_path / "nope")], 2),
    }
    started = {case: spawn(server.client_env(token), argv) for case, (token, argv, _) in cases.items()}
    results = {case: finish(proc) for case, proc in started.items()}
    problems = {case: error_problem(results[case], code) for case, (_, _, code) in cases.items()}
    problems = {case: problem for case, problem in problems.items() if problem}
    assert not problems, "\n".join(f"{case}: {problem}" for case, problem in problems.items())
    assert "token" in results["no-token"].stderr.decode()
    assert list(tmp_path.iterdir()) == [src]
    assert server.count("file_revisions", ns) == 1


def test_unreachable_server_exits_8(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env["PACKYARD_URL"] = f"http://127.0.0.1:{free_port()}"
    message = failed(cli(env, "files", "ls", "company"), 8)
    assert "PACKYARD_URL" in message
    failed(cli(env, "files", "get", "company", "a.txt", "-o", str(tmp_path / "a.txt")), 8)
    assert list(tmp_path.iterdir()) == []
