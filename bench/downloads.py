"""Downloads: packyard against nginx and devpi-server for the same wheels, same run, same bytes.

``python -m bench.downloads`` (``--quick`` while developing). For a 2 kB, a 200 kB and a
20 MB wheel it measures req/s (and MB/s) with wrk from:

- packyard (local backend, anonymous reads, no request log): the file stored in a
  namespace, and the same file mirrored from an upstream (nginx's static index) after the
  first download stored it;
- optionally packyard as it was before (``--baseline DIR``: a checkout whose code the same
  server command runs, PYTHONPATH=DIR), and packyard under granian (``--granian``: the same
  app, ``granian --interface asgi``, which offers ``http.response.pathsend``);
- nginx (one worker, sendfile, no access log) serving the files as a PEP 503 static index;
- devpi-server (``bench/.peers-venv``, as ``bench/index.py`` installs it).

Then a project page (pages must not get slower), a 50-package ``uv pip install`` (no uv
cache, fresh venv) from packyard (internal and mirrored) and from nginx's static index,
and a download storm: many distinct small files, with the server's peak RSS (VmHWM)
against the blob cache's bound. Servers are measured one after another, interleaved per
row, on a machine that may be shared: the load average is printed beside the figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import (
    CheckFailed,
    Process,
    begin,
    exit_status,
    fmt,
    load_average,
    log_tail,
    new_parser,
    run_timed,
    scratch,
    server_log,
    verdict,
)
from bench.index import PEERS_VENV, Devpi, Load, ensure_peers, ensure_wrk
from tests.support.clients import post_upload
from tests.support.dists import WHEEL, pack_wheel
from tests.support.procs import Server, free_port

NS = "bench"
MIRROR_NS = "mirror"
SIZES = {"2 kB": 2_000, "200 kB": 200_000, "20 MB": 20_000_000}
INSTALL_PACKAGES = 50
STORM_FILES = 400
STORM_SIZE = 256_000
STORM_CACHE = 32 * 1024 * 1024
PAGE_ACCEPT = "application/vnd.pypi.simple.v1+json"

SMALL_VS_NGINX = 0.3
LARGE_VS_NGINX = 0.6
MIRRORED_VS_INTERNAL = 0.9
INSTALL_VS_NGINX = 1.1


# -- the data set ----------------------------------------------------------------------------


def wheel(out: Path, name: str, payload: int) -> Path:
    """A valid wheel of about ``payload`` bytes (random, so deflate cannot shrink it)."""
    module = name.replace("-", "_")
    dist_info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": b"VERSION = '1.0'\n",
        f"{module}/data.bin": os.urandom(max(payload - 900, 0)),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n".encode(),
        f"{dist_info}/WHEEL": WHEEL,
    }
    return pack_wheel(out, f"{module}-1.0-py3-none-any.whl", dist_info, files)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def static_index(root: Path, wheels: list[Path]) -> None:
    """A PEP 503 directory: ``simple/<project>/index.html`` linking to ``files/<wheel>``."""
    files = root / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[Path]] = {}
    for path in wheels:
        shutil.copy(path, files / path.name)
        projects.setdefault(path.name.split("-")[0].replace("_", "-"), []).append(path)
    (root / "simple").mkdir()
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "simple" / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for project, paths in projects.items():
        (root / "simple" / project).mkdir()
        anchors = "".join(
            f'<a href="../../files/{html.escape(p.name)}#sha256={sha256(p)}">{html.escape(p.name)}</a>\n' for p in paths
        )
        (root / "simple" / project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n")


# -- the servers -----------------------------------------------------------------------------


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/zip whl; text/html html; }}
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {site};
        index index.html;
    }}
}}
"""


@dataclass
class Nginx:
    root: Path
    site: Path
    port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise CheckFailed("nginx is missing: apt-get install -y nginx-light")
        self.port = free_port()
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        for folder in (self.site.parent, self.site):  # nginx's workers run as another user (0700 scratch)
            folder.chmod(0o755)
        conf = self.root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=self.root, port=self.port, site=self.site))
        self.process = Process([nginx, "-c", str(conf), "-p", str(self.root)], self.root / "nginx.log")
        self.process.start(f"{self.url}/simple/", "nginx")

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Packyard:
    """``packyard serve`` (or granian with the same app), local backend, anonymous reads."""

    root: Path
    name: str
    code: Path | None = None
    """Run this checkout's code instead of this one's (PYTHONPATH, and the working directory:
    ``python -m`` puts the working directory before PYTHONPATH)."""
    granian: bool = False
    workers: int = 1
    extra: dict[str, str] = field(default_factory=dict)
    server: Server = field(init=False)
    process: Process | None = None

    def __post_init__(self) -> None:
        env = {
            "PACKYARD_ANONYMOUS_READ": "true",
            "PACKYARD_LOG_REQUESTS": "false",
            "PACKYARD_EMBEDDED_WORKER": "false",
            "PACKYARD_UPSTREAM_ALLOW_HOSTS": "127.0.0.1",
            **self.extra,
        }
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code)
        self.server = Server(self.root / self.name.replace(" ", "-"), env, cwd=self.code)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        if self.granian:
            self._start_granian()
            return
        try:
            self.server.start()
        except RuntimeError as exc:
            raise CheckFailed(f"{exc}\n{log_tail(server_log(self.server))}") from exc

    def _start_granian(self) -> None:
        self.server.port = free_port()
        self.server.data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
        env.update(self.server.env)
        env.update(
            {
                "PACKYARD_DATA": str(self.server.data),
                "PACKYARD_PORT": str(self.server.port),
                "PACKYARD_ADMIN_TOKEN": self.server.admin_token,
            }
        )
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--no-ws", "--http", "1"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.server.port), "--workers", str(self.workers)]
        cmd += ["--no-access-log"]
        self.process = Process([*cmd, "packyard.app:from_environment"], self.root / "granian.log", env=env)
        self.process.start(f"{self.url}/healthz", "packyard under granian")

    def pid(self) -> int:
        if self.process is not None:
            return self.process.pid
        assert self.server.proc is not None
        return self.server.proc.pid

    def rss_peak_mb(self) -> float:
        """VmHWM of the serving process (granian: its worker, the child with the app)."""
        pids = [self.pid()]
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{self.pid()}/task/{self.pid()}/children").read_text().split()]
        peaks = []
        for pid in pids:
            with contextlib.suppress(OSError):
                found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                if found:
                    peaks.append(int(found.group(1)) * 1024 / 1e6)
        return max(peaks)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.server.stop()

    def upload(self, wheels: list[Path], ns: str = NS) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            created = http.post("/api/v1/namespaces", json={"name": ns}, headers=self._admin)
            if created.status_code not in (201, 409):
                raise CheckFailed(f"creating {ns}: {created.status_code} {created.text}")
            for path in wheels:
                answer = post_upload(http, ns, path.name, path.read_bytes(), self.server.admin_token)
                if answer.status_code != 200:
                    raise CheckFailed(f"upload {path.name}: {answer.status_code} {answer.text[:200]}")

    def mirror(self, upstream: str) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            created = http.post("/api/v1/namespaces", json={"name": MIRROR_NS}, headers=self._admin)
            if created.status_code not in (201, 409):
                raise CheckFailed(f"creating {MIRROR_NS}: {created.status_code} {created.text}")
            answer = http.patch(
                f"/api/v1/namespaces/{MIRROR_NS}/settings", json={"upstream": upstream}, headers=self._admin
            )
            if answer.status_code != 200:
                raise CheckFailed(f"setting the upstream: {answer.status_code} {answer.text}")

    @property
    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin_token}"}


def fetch(url: str, expect: bytes, times: int = 3, accept: str | None = None) -> None:
    """Check the URL serves exactly ``expect`` (so wrk measures real downloads) and warm it."""
    with httpx.Client(timeout=120, headers={"Accept": accept} if accept else {}) as http:
        for _ in range(times):
            got = http.get(url)
            if got.status_code != 200 or (expect and got.content != expect):
                raise CheckFailed(f"GET {url}: {got.status_code}, {len(got.content)} bytes, not the file")


def devpi_file_url(devpi: Devpi, project: str, filename: str) -> str:
    page = httpx.get(devpi.project_url(project), timeout=60).text
    found = re.search(r'href="([^"#]*' + re.escape(filename) + r")", page)
    if found is None:
        raise CheckFailed(f"devpi's page for {project} does not link {filename}")
    return httpx.URL(devpi.project_url(project)).join(found.group(1)).__str__()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    unit: str
    figures: dict[str, float | None]
    goal: str = ""
    ok: bool | None = None


def uv_install(index: str, packages: list[str], work: Path) -> float:
    """A fresh venv and ``uv pip install`` of ``packages`` with no cache: its wall time."""
    venv = Path(tempfile.mkdtemp(dir=work, prefix="venv-"))
    run_timed(["uv", "venv", "-q", str(venv)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["VIRTUAL_ENV"] = str(venv)
    cmd = ["uv", "pip", "install", "-q", "--no-cache", "--index-url", index, "--python", str(venv / "bin" / "python")]
    elapsed = run_timed([*cmd, *packages], env=env)
    shutil.rmtree(venv, ignore_errors=True)
    return elapsed


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = new_parser("bench.downloads", __doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="uv installs per server (median)")
    parser.add_argument("--baseline", type=Path, help="a checkout of packyard to measure as 'before'")
    parser.add_argument(
        "--granian", action="store_true", help="also measure packyard under granian, one and two worker processes"
    )
    parser.add_argument("--no-devpi", action="store_true", help="skip devpi-server (no peers venv)")
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs, one install round")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 3, 1
    return args


def main(argv: list[str] | None = None) -> int:  # noqa: C901, PLR0915 - one run, told in order
    args = parse_args(argv)
    out = begin(160, "wrk: " + f"{args.threads} threads, {args.connections} connections, {args.duration} s per run")
    errors: list[str] = []
    rows: list[Row] = []
    with scratch("downloads") as root, contextlib.ExitStack() as stack:
        load = Load(ensure_wrk(out), args.duration, args.threads, args.connections)
        wheels = {label: wheel(root / "wheels", f"dl-{i}", size) for i, (label, size) in enumerate(SIZES.items())}
        installs = [wheel(root / "wheels", f"inst-{i:02d}", 2_000) for i in range(INSTALL_PACKAGES)]
        site = root / "site"
        static_index(site, [*wheels.values(), *installs])

        nginx = Nginx(root / "nginx", site)
        stack.callback(nginx.stop)  # before start: a start that fails leaves a process to stop
        nginx.start()

        servers: dict[str, Packyard] = {"packyard": Packyard(root, "packyard")}
        if args.baseline:
            servers["packyard before"] = Packyard(root, "packyard before", code=args.baseline.resolve())
        if args.granian:
            servers["packyard granian"] = Packyard(root, "packyard granian", granian=True)
            servers["packyard granian ×2"] = Packyard(root, "packyard granian 2", granian=True, workers=2)
        for server in servers.values():
            stack.callback(server.stop)
            server.start()
            server.upload([*wheels.values(), *installs])
            server.mirror(f"{nginx.url}/simple/")

        devpi: Devpi | None = None
        if not args.no_devpi:
            devpi = Devpi(root / "devpi", ensure_peers(PEERS_VENV, out))
            (root / "devpi").mkdir()
            stack.callback(devpi.stop)
            devpi.start()
            devpi.upload(list(wheels.values()))

        out.print(f"[dim]servers up; load average {load_average()}[/]")
        for label, path in wheels.items():
            data = path.read_bytes()
            size = len(data)
            project = path.name.split("-")[0].replace("_", "-")
            urls: dict[str, tuple[str, int]] = {}
            for name, server in servers.items():
                urls[name] = (f"{server.url}/{NS}/dists/{path.name}", server.pid())
                fetch(f"{server.url}/{MIRROR_NS}/simple/{project}/", b"", accept=PAGE_ACCEPT)
                urls[f"{name} mirrored"] = (f"{server.url}/{MIRROR_NS}/dists/{path.name}", server.pid())
            urls["nginx"] = (f"{nginx.url}/files/{path.name}", nginx.pid())
            if devpi is not None:
                urls["devpi-server"] = (devpi_file_url(devpi, project, path.name), devpi.pid())
            figures: dict[str, float | None] = {}
            cpu: dict[str, float | None] = {}
            for name, (url, pid) in urls.items():
                try:
                    fetch(url, data)
                    figure = load.measure(url, pid)
                    figures[name] = figure.rps if size < 1_000_000 else figure.rps * size / 1e6
                    # granian's and nginx's workers are child processes: their CPU is not the pid's
                    cpu[name] = None if "granian" in name or name == "nginx" else figure.cpu_us
                except CheckFailed as exc:
                    errors.append(f"{label} from {name}: {exc}")
                    figures[name] = None
            unit = "req/s" if size < 1_000_000 else "MB/s"
            ours, theirs = figures.get("packyard"), figures.get("nginx")
            target = SMALL_VS_NGINX if size < 1_000_000 else LARGE_VS_NGINX
            ok = None if not ours or not theirs else ours >= target * theirs
            rows.append(Row(f"{label} wheel", unit, figures, f"≥ {target}× nginx", ok))
            rows.append(Row(f"{label}: server CPU", "µs/req", cpu))
            mirrored = figures.get("packyard mirrored")
            ok = None if not ours or not mirrored else mirrored >= MIRRORED_VS_INTERNAL * ours
            rows.append(
                Row(
                    f"{label}: mirrored / internal",
                    "ratio",
                    {"packyard": mirrored / ours if ours and mirrored else None},
                    f"≥ {MIRRORED_VS_INTERNAL}",
                    ok,
                )
            )
            out.print(f"[dim]{label}: done; load average {load_average()}[/]")

        # a project page, as pip asks for it: must not be slower than before
        figures, cpu = {}, {}
        for name, server in servers.items():
            url = f"{server.url}/{NS}/simple/inst-00/"
            try:
                fetch(url, b"", accept=PAGE_ACCEPT)
                figure = load.measure(url, server.pid(), accept=PAGE_ACCEPT)
                figures[name], cpu[name] = figure.rps, None if "granian" in name else figure.cpu_us
            except CheckFailed as exc:
                errors.append(f"page from {name}: {exc}")
        figure = load.measure(f"{nginx.url}/simple/inst-00/", nginx.pid())
        figures["nginx"] = figure.rps
        before, after = figures.get("packyard before"), figures.get("packyard")
        ok = None if not before or not after else after >= 0.9 * before  # ±10 %: wrk's run-to-run noise here
        rows.append(Row("project page", "req/s", figures, "≥ before (±10 %)", ok))
        rows.append(Row("project page: server CPU", "µs/req", cpu))

        # 50 packages with uv: internal, mirrored, and the static index on nginx
        names = [p.name.split("-")[0].replace("_", "-") for p in installs]
        indexes = {name: server.url for name, server in servers.items()}
        for url in indexes.values():  # warm: the mirror stores its 50 files, every page is cached
            for ns in (NS, MIRROR_NS):
                uv_install(f"{url}/{ns}/simple/", names, root)
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, server in servers.items():
                for ns, key in ((NS, name), (MIRROR_NS, f"{name} mirrored")):
                    with contextlib.suppress(CheckFailed):
                        times.setdefault(key, []).append(uv_install(f"{server.url}/{ns}/simple/", names, root))
            times.setdefault("nginx", []).append(uv_install(f"{nginx.url}/simple/", names, root))
        medians = {k: sorted(v)[len(v) // 2] for k, v in times.items() if v}
        ours, theirs = medians.get("packyard"), medians.get("nginx")
        ok = None if not ours or not theirs else ours <= INSTALL_VS_NGINX * theirs
        rows.append(Row(f"uv pip install {INSTALL_PACKAGES} pkgs", "s", medians, f"≤ {INSTALL_VS_NGINX}× nginx", ok))
        mirrored = medians.get("packyard mirrored")
        ok = None if not ours or not mirrored else mirrored <= ours / MIRRORED_VS_INTERNAL
        rows.append(
            Row(
                "install: mirrored / internal",
                "ratio",
                {"packyard": mirrored / ours if ours and mirrored else None},
                f"≤ {1 / MIRRORED_VS_INTERNAL:.2f}",
                ok,
            )
        )

        for server in servers.values():
            server.stop()
        storm = storm_rss(root, out)
        rows.append(storm)

    out.print(report(rows, load_average()))
    goals = {f"{r.what}: {r.goal}": r.ok for r in rows if r.goal}
    return exit_status(out, errors, goals)


def storm_rss(root: Path, out: Console) -> Row:
    """Many distinct files downloaded once each: the cache's bound must hold the RSS down."""
    server = Packyard(root, "packyard storm", extra={"PACKYARD_BLOB_CACHE_BYTES": str(STORM_CACHE)})
    try:
        server.start()
        wheels = [wheel(root / "storm", f"storm-{i:03d}", STORM_SIZE) for i in range(STORM_FILES)]
        server.upload(wheels)
        settled = server.rss_peak_mb()  # up, and every file uploaded: nothing downloaded yet
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(3):  # the routes see each file first, then the hot path keeps what fits
                for path in wheels:
                    got = http.get(f"/{NS}/dists/{path.name}")
                    if got.status_code != 200 or len(got.content) != path.stat().st_size:
                        raise CheckFailed(f"storm: {path.name} answered {got.status_code}")
        peak = server.rss_peak_mb()
    finally:
        server.stop()
    total = STORM_FILES * STORM_SIZE / 1e6
    bound = STORM_CACHE / 1e6
    out.print(f"[dim]storm: {STORM_FILES} files, {total:.0f} MB, cache bound {bound:.0f} MB[/]")
    return Row(
        f"storm: {STORM_FILES} × {STORM_SIZE // 1000} kB distinct, cache {bound:.0f} MB",
        "peak RSS MB",
        {"packyard": peak},
        f"≤ {settled:.0f} (before) + {bound:.0f} + 30",
        peak <= settled + bound + 30,
    )


def report(rows: list[Row], load: str) -> Table:
    columns: list[str] = []
    for row in rows:
        for name in row.figures:
            if name not in columns:
                columns.append(name)
    table = Table(title=f"downloads (load average at the end {load})")
    table.add_column("what")
    table.add_column("unit")
    for name in columns:
        table.add_column(name, justify="right")
    table.add_column("goal")
    table.add_column("")
    for row in rows:
        digits = 2 if row.unit in ("s", "ratio") else 0
        cells = [fmt(row.figures.get(name), digits) if name in row.figures else "" for name in columns]
        table.add_row(row.what, row.unit, *cells, row.goal, verdict(row.ok))
    return table


if __name__ == "__main__":
    sys.exit(main())
