"""compose.yaml and the Dockerfile, checked against the code they deploy, without Docker.

No Docker engine runs in CI, so nothing here starts a container. Instead each test pins
one link of the wiring that would otherwise only break at ``docker compose up``: every
``PACKYARD_*`` variable is a real ``Settings`` field, the S3 endpoint, bucket and keys
are the ones MinIO and the bucket job use, ports, data volume, command and health checks
agree. Compose's own ``${VAR:-default}`` interpolation is reproduced by a small helper,
so the checks hold for the defaults and for values set from outside.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from packyard.settings import Settings, secret

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"

PREFIX = Settings.model_config["env_prefix"]
ADMIN_TOKEN = "compose-test-admin-token"
"""The one variable compose requires from outside; every other has a default."""
MINIO_DEFAULT_API_PORT = 9000


# -- compose interpolation ------------------------------------------------------------------

_REF = re.compile(
    r"\$(?:"
    r"(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r")"
)


class MissingVariable(LookupError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
    ``${VAR:?msg}``, ``${VAR?msg}``. The ``:`` forms treat an empty value as unset."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("-") and unset:
            return arg
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    result = _REF.sub(one, text)
    assert "${" not in result, f"unsupported interpolation left in {text!r}"
    return result


def variables(text: str) -> set[str]:
    """Names of the compose variables a value refers to (not ``$$`` shell escapes)."""
    return {m["braced"] or m["named"] for m in _REF.finditer(text) if not m["escaped"]}


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a loaded compose file, as compose does."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def strings(node: Any) -> list[str]:
    """Every string value of a loaded compose file (keys are not interpolated)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for item in node for text in strings(item)]
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    return []


def test_interpolate_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("$A/${B}", {"A": "a", "B": "b"}) == "a/b"
    assert interpolate("$$HOME", {"HOME": "no"}) == "$HOME"
    assert interpolate("${A:?need A}", {"A": "ok"}) == "ok"
    with pytest.raises(MissingVariable, match="need A"):
        interpolate("${A:?need A}", {"A": ""})
    assert variables('"$$USER" ${A:-x} $B') == {"A", "B"}


# -- loading --------------------------------------------------------------------------------


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment``, in either the mapping or the ``KEY=VALUE`` list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_text(value: str | list[str] | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """compose.yaml as written, variables not yet resolved."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml as ``docker compose`` sees it with only the required variable set."""
    return resolve(raw, {"PACKYARD_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


SERVERS = ("packyard-1", "packyard-2")
"""The packyard servers behind the load balancer; they run one configuration."""
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def packyard_env(services: dict[str, Any]) -> dict[str, str]:
    """The servers' environment (the same for both: checked below)."""
    return environment(services[SERVERS[0]])


def minio_api_port(minio: Mapping[str, Any]) -> int:
    """The port MinIO's S3 API listens on inside its container: ``--address`` or 9000."""
    args = shlex.split(command_text(minio.get("command")))
    for i, arg in enumerate(args):
        if arg == "--address":
            return int(args[i + 1].rsplit(":", 1)[1])
        if arg.startswith("--address="):
            return int(arg.rsplit(":", 1)[1])
    return MINIO_DEFAULT_API_PORT


def shell_commands(script: str) -> list[list[str]]:
    """A ``sh -c`` script split into its simple commands (at ``&&``, ``||``, ``;``)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def mc_commands(createbucket: Mapping[str, Any]) -> dict[str, list[str]]:
    """The bucket job's ``mc`` sub-commands (``alias set``, ``mb``) with their arguments."""
    entrypoint = createbucket.get("entrypoint")
    command = createbucket.get("command")
    if isinstance(entrypoint, list) and entrypoint[-1] == "-c":
        script = command_text(command)
    else:
        script = command_text(entrypoint) + " " + command_text(command)
    found: dict[str, list[str]] = {}
    for words in shell_commands(script):
        if words[0] != "mc":
            continue
        if words[1:3] == ["alias", "set"]:
            found["alias set"] = words[3:]
        elif words[1] == "mb":
            found["mb"] = words[2:]
    return found


# -- services -------------------------------------------------------------------------------


def test_services_exist(services: dict[str, Any]) -> None:
    assert {"postgres", "minio", "createbucket", *SERVERS, "worker", "lb"} <= services.keys()


def test_every_packyard_variable_is_a_settings_field(packyard_env: dict[str, str]) -> None:
    fields = set(Settings.model_fields)
    assert packyard_env, "the packyard service sets no environment"
    for name in packyard_env:
        assert name.startswith(PREFIX), f"{name} is not a {PREFIX}* variable"
        field = name.removeprefix(PREFIX).lower()
        assert field in fields, f"{name} is not a Settings field; Settings has {sorted(fields)}"


def test_only_the_admin_token_is_required(raw: dict[str, Any]) -> None:
    """Every variable but the admin token has a default, and that one must be set."""
    with pytest.raises(MissingVariable, match="PACKYARD_ADMIN_TOKEN"):
        resolve(raw, {})
    resolve(raw, {"PACKYARD_ADMIN_TOKEN": ADMIN_TOKEN})  # nothing else missing
    for name in (*SERVERS, "worker"):
        env = environment(raw["services"][name])
        token = env.get("PACKYARD_ADMIN_TOKEN") or env["PACKYARD_TOKEN"]
        assert variables(token) == {"PACKYARD_ADMIN_TOKEN"}
    # no bare $VAR or ${VAR}: unset, it would silently become ""
    bare = {
        match[0] for text in strings(raw) for match in _REF.finditer(text) if not match["escaped"] and not match["op"]
    }
    assert not bare, f"variables without a default: {sorted(bare)}"


def test_s3_endpoint_is_the_minio_service(services: dict[str, Any], packyard_env) -> None:
    endpoint = urlsplit(packyard_env[f"{PREFIX}S3_ENDPOINT"])
    assert endpoint.scheme == "http"  # MinIO here serves plain HTTP on the compose network
    assert endpoint.hostname == "minio"
    assert endpoint.hostname in services
    assert endpoint.port == minio_api_port(services["minio"])
    assert endpoint.path in ("", "/")


def test_minio_listens_on_its_default_api_port(services: dict[str, Any]) -> None:
    assert minio_api_port(services["minio"]) == MINIO_DEFAULT_API_PORT
    args = shlex.split(command_text(services["minio"]["command"]))
    assert args[:2] == ["server", "/data"]
    console = args[args.index("--console-address") + 1]
    assert int(console.rsplit(":", 1)[1]) != MINIO_DEFAULT_API_PORT


def test_createbucket_makes_the_bucket_packyard_uses(services: dict[str, Any], packyard_env):
    mc = mc_commands(services["createbucket"])
    assert set(mc) == {"alias set", "mb"}, mc
    alias, url = mc["alias set"][:2]
    assert url.rstrip("/") == packyard_env[f"{PREFIX}S3_ENDPOINT"].rstrip("/")
    assert "--ignore-existing" in mc["mb"], "a restart of the stack would fail on an existing bucket"
    (target,) = [arg for arg in mc["mb"] if not arg.startswith("-")]
    target_alias, bucket = target.split("/", 1)
    assert target_alias == alias
    assert bucket == packyard_env[f"{PREFIX}S3_BUCKET"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket), "not a valid S3 bucket name"


@pytest.mark.parametrize(
    "outside",
    [
        {},
        {
            "MINIO_ROOT_USER": "someone",
            "MINIO_ROOT_PASSWORD": "something-long",
            "PACKYARD_S3_BUCKET": "artifacts",
        },
    ],
    ids=["defaults", "overridden"],
)
def test_credentials_and_bucket_agree_however_set(raw: dict[str, Any], outside) -> None:
    """Same variables *and* same defaults: otherwise they agree only in one of the cases."""
    services = resolve(raw, {"PACKYARD_ADMIN_TOKEN": ADMIN_TOKEN, **outside})["services"]
    minio, packyard = environment(services["minio"]), environment(services[SERVERS[0]])
    assert all(environment(services[name]) == packyard for name in SERVERS)
    root = (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    keys = (packyard[f"{PREFIX}S3_ACCESS_KEY"], packyard[f"{PREFIX}S3_SECRET_KEY"])
    assert keys == root
    # the bucket job logs in as the root user too ($$VAR: expanded by its own shell)
    job_env = environment(services["createbucket"])
    user, password = mc_commands(services["createbucket"])["alias set"][2:4]
    assert (interpolate(user, job_env), interpolate(password, job_env)) == root
    bucket = mc_commands(services["createbucket"])["mb"][-1].split("/", 1)[1]
    assert bucket == packyard[f"{PREFIX}S3_BUCKET"]
    if outside:
        assert root == (outside["MINIO_ROOT_USER"], outside["MINIO_ROOT_PASSWORD"])
        assert bucket == outside["PACKYARD_S3_BUCKET"]


def test_minio_default_credentials_are_long_enough(services: dict[str, Any]) -> None:
    """MinIO refuses to start with a user under 3 or a password under 8 characters."""
    env = environment(services["minio"])
    assert len(env["MINIO_ROOT_USER"]) >= 3
    assert len(env["MINIO_ROOT_PASSWORD"]) >= 8


def published_ports(service: Mapping[str, Any]) -> list[tuple[int, int]]:
    """``(host, container)`` pairs from short (``[ip:]host:container[/proto]``) or long syntax."""
    pairs = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        assert isinstance(entry, str), f"quote port {entry!r}: YAML may read it as a number"
        parts = entry.split("/", 1)[0].split(":")
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def nginx_conf() -> tuple[int, set[str]]:
    """The load balancer's listen port and its upstream servers (``host:port``)."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    (listen,) = re.findall(r"\blisten\s+(\d+)\s*;", text)
    (block,) = re.findall(r"upstream\s+packyard\s*\{([^}]*)\}", text)
    return int(listen), set(re.findall(r"\bserver\s+(\S+?)[\s;]", block))


def test_only_the_load_balancer_is_published(services: dict[str, Any], packyard_env) -> None:
    port = int(packyard_env[f"{PREFIX}PORT"])
    listen, _ = nginx_conf()
    assert published_ports(services["lb"]) == [(port, listen)]
    for name in (*SERVERS, "worker", "postgres"):
        assert not services[name].get("ports"), f"{name} is reached through the compose network only"


def test_load_balancer_routes_to_every_server(services: dict[str, Any], packyard_env) -> None:
    _, upstreams = nginx_conf()
    assert upstreams == {f"{name}:{packyard_env[f'{PREFIX}PORT']}" for name in SERVERS}
    mounts = [v.split(":") for v in services["lb"]["volumes"]]
    assert ["./deploy/nginx.conf", "/etc/nginx/nginx.conf", "ro"] in mounts
    assert services["lb"]["image"].startswith("nginx:")
    text = NGINX_CONF.read_text()
    assert "client_max_body_size 0;" in text, "nginx's 1 MB default would refuse uploads before packyard sees them"
    assert "proxy_request_buffering off;" in text


def test_servers_share_one_catalog_and_one_bucket(raw: dict[str, Any]) -> None:
    """Both servers and PostgreSQL agree on the database, with defaults and with values set."""
    for outside in ({}, {"POSTGRES_PASSWORD": "another-secret"}):
        services = resolve(raw, {"PACKYARD_ADMIN_TOKEN": ADMIN_TOKEN, **outside})["services"]
        envs = [environment(services[name]) for name in SERVERS]
        assert envs[0] == envs[1]
        url = urlsplit(envs[0][f"{PREFIX}DATABASE_URL"])
        postgres = environment(services["postgres"])
        assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
        assert (url.username, url.password, url.path.lstrip("/")) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        if outside:
            assert url.password == outside["POSTGRES_PASSWORD"]
    assert "pg_isready" in command_text(services["postgres"]["healthcheck"]["test"])
    assert ["postgres-data", "/var/lib/postgresql/data"] in [v.split(":") for v in services["postgres"]["volumes"]]


def test_builds_run_in_the_worker_service(services: dict[str, Any], packyard_env) -> None:
    assert packyard_env[f"{PREFIX}EMBEDDED_WORKER"] == "false"
    worker = environment(services["worker"])
    assert set(worker) == {f"{PREFIX}URL", f"{PREFIX}TOKEN"}, "the worker needs no database or bucket secret"
    lb = urlsplit(worker[f"{PREFIX}URL"])
    assert lb.hostname == "lb" and lb.port == nginx_conf()[0]
    assert packyard_env[f"{PREFIX}PUBLIC_URL"] == worker[f"{PREFIX}URL"]
    assert worker[f"{PREFIX}TOKEN"] == ADMIN_TOKEN
    assert shlex.split(command_text(services["worker"]["command"]))[:2] == ["packyard", "worker"]
    from packyard.cli import app

    assert "worker" in app.commands


def test_server_binds_all_interfaces(packyard_env: dict[str, str]) -> None:
    assert packyard_env[f"{PREFIX}HOST"] == "0.0.0.0"


def test_data_volume_is_mounted_at_the_data_folder(compose: dict[str, Any], packyard_env):
    data = packyard_env[f"{PREFIX}DATA"]
    sources = []
    for name in SERVERS:
        mounts = {}
        for entry in compose["services"][name].get("volumes", []):
            if isinstance(entry, dict):
                mounts[entry["target"]] = entry.get("source")
            else:
                source, target = entry.split(":")[:2]
                mounts[target] = source
        assert data in mounts, f"nothing mounted at {data}: {name}'s caches would die with the container"
        assert mounts[data] in (compose.get("volumes") or {}), "mount a named, declared volume"
        sources.append(mounts[data])
    assert len(set(sources)) == len(SERVERS), "each server keeps its own cache folder"


def test_minio_data_is_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = [v.split(":") for v in compose["services"]["minio"]["volumes"]]
    assert ["minio-data", "/data"] in mounts
    assert "minio-data" in compose["volumes"]


def test_start_order_waits_for_health(services: dict[str, Any]) -> None:
    server = {
        "postgres": "service_healthy",
        "minio": "service_healthy",
        "createbucket": "service_completed_successfully",
    }
    expected = {
        "createbucket": {"minio": "service_healthy"},
        **{name: server for name in SERVERS},
        "lb": {name: "service_healthy" for name in SERVERS},
        "worker": {"lb": "service_healthy"},
    }
    for name, wanted in expected.items():
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: the list form waits only for 'started'"
        assert {dep: spec["condition"] for dep, spec in depends.items()} == wanted
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has none"


def test_minio_healthcheck_probes_minio(services: dict[str, Any]) -> None:
    test = services["minio"]["healthcheck"]["test"]
    text = command_text(test)
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "mc ready local" in text or "/minio/health/live" in text


def test_createbucket_is_a_one_shot(services: dict[str, Any]) -> None:
    assert services["createbucket"].get("restart", "no") == "no"


def test_packyard_is_built_from_this_repository(services: dict[str, Any]) -> None:
    for name in SERVERS:
        assert services[name]["build"] == services["worker"]["build"]
    build = services[SERVERS[0]]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE.parent / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


# -- the server reads what compose sets ------------------------------------------------------


def test_settings_read_what_compose_sets(packyard_env, services, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in packyard_env.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert settings.backend == "s3"
    assert settings.s3_endpoint == "http://minio:9000"
    assert settings.s3_bucket == packyard_env[f"{PREFIX}S3_BUCKET"]
    minio = environment(services["minio"])
    assert secret(settings.s3_access_key) == minio["MINIO_ROOT_USER"]
    assert secret(settings.s3_secret_key) == minio["MINIO_ROOT_PASSWORD"]
    assert secret(settings.admin_token) == ADMIN_TOKEN
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.data == Path("/data")
    assert secret(settings.database_url) == packyard_env[f"{PREFIX}DATABASE_URL"]
    assert settings.embedded_worker is False


# -- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        pairs.append((keyword.upper(), args.strip()))
    return pairs


def dockerfile(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for args in dockerfile("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_dockerfile_base_and_install() -> None:
    assert dockerfile("FROM")[0].startswith("python:3.11-slim")
    runs = " ".join(dockerfile("RUN"))
    # the server's image: the server extra (a plain `pip install .` is the client only)
    assert "pip install --no-cache-dir '.[server]'" in runs
    assert "git" in shlex.split(runs), "git sync needs git in the image"


def test_dockerfile_exposes_the_server_port(packyard_env: dict[str, str]) -> None:
    exposed = {int(p.split("/")[0]) for args in dockerfile("EXPOSE") for p in args.split()}
    assert exposed == {int(packyard_env[f"{PREFIX}PORT"])}
    assert dockerfile_env()[f"{PREFIX}PORT"] == packyard_env[f"{PREFIX}PORT"]


def test_dockerfile_env_matches_compose(packyard_env: dict[str, str]) -> None:
    env = dockerfile_env()
    fields = set(Settings.model_fields)
    for name in (n for n in env if n.startswith(PREFIX)):
        assert name.removeprefix(PREFIX).lower() in fields, name
    assert env[f"{PREFIX}HOST"] == "0.0.0.0"
    assert env[f"{PREFIX}DATA"] == packyard_env[f"{PREFIX}DATA"]
    volumes = [v for args in dockerfile("VOLUME") for v in json.loads(args)]
    assert env[f"{PREFIX}DATA"] in volumes


def test_dockerfile_runs_packyard_serve_as_non_root() -> None:
    (cmd,) = dockerfile("CMD")
    assert json.loads(cmd) == ["packyard", "serve"]
    assert not dockerfile("ENTRYPOINT")
    users = dockerfile("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the command exists: the console script and its `serve` sub-command
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["packyard"] == "packyard.entry:main"
    from packyard.cli import app

    assert "serve" in app.commands


def test_dockerfile_healthcheck_hits_healthz(tmp_path: Path) -> None:
    (check,) = dockerfile("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"], "slim has no curl: probe with python"
    probe = argv[2]
    assert "'http://127.0.0.1:'" in probe and "'/healthz'" in probe
    assert "os.environ.get('PACKYARD_PORT', '8000')" in probe
    compile(probe, "<healthcheck>", "exec")
    from packyard.app import create_app

    app = create_app(Settings(data=tmp_path, s3_endpoint=None))
    assert "/healthz" in {getattr(route, "path", None) for route in app.routes}


# -- the single-node shape: SQLite with a Litestream sidecar ------------------------------------

SINGLE = ("restore", "single", "litestream")
"""The single-node services: a one-shot restore, the server, the replicating sidecar."""


def test_single_node_services_share_one_configuration_and_volume(compose: dict[str, Any], services) -> None:
    envs = [environment(services[name]) for name in SINGLE]
    assert envs[0] == envs[1] == envs[2], "restore, server and sidecar must agree on the data folder and bucket"
    for name in SINGLE:
        assert services[name].get("profiles") == ["single"], f"{name} starts only with --profile single"
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert ["single-data", envs[0][f"{PREFIX}DATA"]] in mounts, name
        assert services[name]["build"] == services[SERVERS[0]]["build"], "the sidecar runs packyard's own image"
    assert "single-data" in compose["volumes"]
    for name in envs[0]:
        assert name.removeprefix(PREFIX).lower() in Settings.model_fields, name
    assert f"{PREFIX}DATABASE_URL" not in envs[0], "the single node keeps its catalog in SQLite"
    assert f"{PREFIX}REPLICATE" not in envs[0], "the sidecar replicates; the server must not run a second Litestream"


def test_single_node_sidecar_replicates_into_the_minio_bucket(services, monkeypatch) -> None:
    from packyard.cli import app
    from packyard.replication import check_replicable, config

    commands = {name: shlex.split(command_text(services[name]["command"])) for name in ("restore", "litestream")}
    assert commands == {"restore": ["packyard", "restore", "--if-needed"], "litestream": ["packyard", "replicate"]}
    assert {"restore", "replicate"} <= set(app.commands)
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in environment(services["litestream"]).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    check_replicable(settings, "the sidecar")  # S3 blobs, SQLite catalog: what restore can bring back
    (db,) = config(settings)["dbs"]
    assert db["path"] == "/data/catalog.db"
    replica = db["replica"]
    assert replica["endpoint"] == environment(services[SERVERS[0]])[f"{PREFIX}S3_ENDPOINT"]
    assert replica["bucket"] == mc_commands(services["createbucket"])["mb"][-1].split("/", 1)[1]
    assert replica["force-path-style"] is True and replica["path"] == "catalog"
    # a fresh machine: the bucket first, then the restore, then the server, then the sidecar
    assert services["restore"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    assert services["single"]["depends_on"] == {"restore": {"condition": "service_completed_successfully"}}
    assert services["litestream"]["depends_on"] == {"single": {"condition": "service_healthy"}}
    assert published_ports(services["single"]) == [(8000, int(environment(services["single"])[f"{PREFIX}PORT"]))]
