"""Run a Kestra flow's script tasks the way Kestra's Process task runner does, without Kestra.

Kestra cannot run here, so the recipes in ``examples/kestra/`` are executed by this small
stand-in for one Kestra worker:

- the worker is one long-lived machine: its ``HOME`` (and so packyard's and uv's caches under
  ``~/.cache``) survives from one execution to the next, as on a real worker;
- every task gets a fresh working directory and a fresh Python (a virtual environment whose
  ``python`` and ``pip`` come first on ``PATH``, as a Kestra guide's
  ``python3 -m venv .venv && . .venv/bin/activate`` or a fresh container would give), so what
  one task ``pip install``\\ s never satisfies another; the ``packyard`` client is on ``PATH``, as
  in a task image that installed it;
- with ``namespaceFiles.enabled`` the flow namespace's Kestra namespace files (given to the
  worker as a folder per namespace; ``include`` globs honoured) are copied into the working
  directory first;
- the task's ``env`` is added to the worker's environment; ``beforeCommands`` then the
  ``commands`` (Commands tasks) or ``python <file>`` of the ``script`` written into the working
  directory (Script tasks) run in one ``/bin/sh`` with ``set -e``, so the first failing command
  fails the task, and a failed task ends the execution (the later tasks do not run);
- the Pebble expressions the recipes use are rendered first: ``{{ secret('X') }}``,
  ``{{ kv('X') }}``, ``{{ inputs.x }}`` (defaults from the flow's ``inputs``),
  ``{{ flow.namespace }}``, ``{{ flow.id }}``. Jinja2 renders them (the syntax is the same for
  these), with undefined names an error, so a flow that uses anything else fails here instead
  of rendering as an empty string.

The test suite shares one server between many tests, so a flow's namespace is mapped to a
test's own: ``namespaces={"company": "t3f9..."}`` runs the flows of ``company`` and
``company.sales`` in ``t3f9...`` and ``t3f9....sales``.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

SCRIPT_TYPES = {"io.kestra.plugin.scripts.python.Script"}
COMMAND_TYPES = {"io.kestra.plugin.scripts.python.Commands", "io.kestra.plugin.scripts.shell.Commands"}
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"


@dataclass
class TaskRun:
    id: str
    workdir: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def log(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Execution:
    flow: str
    namespace: str
    tasks: dict[str, TaskRun] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "SUCCESS" if all(t.returncode == 0 for t in self.tasks.values()) else "FAILED"

    def logs(self) -> str:
        return "\n".join(f"--- {t.id} (exit {t.returncode})\n{t.log}" for t in self.tasks.values())

    def succeeded(self) -> Execution:
        """This execution, after asserting that every task succeeded (the logs say why not)."""
        assert self.state == "SUCCESS", f"{self.flow} failed:\n{self.logs()}"
        return self


@dataclass
class Worker:
    """One Kestra worker with the Process task runner."""

    root: Path
    env: dict[str, str]
    """The worker's environment (tasks add their ``env`` to it)."""
    secrets: dict[str, str] = field(default_factory=dict)
    kv: dict[str, str] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)
    """Kestra namespace prefix -> the test's namespace."""
    namespace_files: dict[str, Path] = field(default_factory=dict)
    """Kestra namespace -> folder holding its Kestra namespace files."""

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.bin = self.root / "bin"
        self.home.mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "packyard"  # the task image's packyard client
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m packyard "$@"\n')
        shim.chmod(0o755)

    @property
    def cache_dir(self) -> Path:
        """Where ``packyard env``/``run`` keep environments on this worker (their default)."""
        return self.home / ".cache" / "packyard"

    def map_namespace(self, name: str) -> str:
        for prefix, target in self.namespaces.items():
            if name == prefix or name.startswith(prefix + "."):
                return target + name[len(prefix) :]
        return name

    def execute(self, flow_file: Path, inputs: dict[str, str] | None = None) -> Execution:
        """Run every task of the flow in order; stop at the first that fails."""
        flow = yaml.safe_load(flow_file.read_text())
        namespace = self.map_namespace(flow["namespace"])
        values = {i["id"]: i.get("defaults") for i in flow.get("inputs", [])}
        unknown = set(inputs or {}) - set(values)
        assert not unknown, f"{flow['id']} has no inputs {unknown}"
        values.update(inputs or {})
        context = {"inputs": values, "flow": {"id": flow["id"], "namespace": namespace}}
        execution = Execution(flow["id"], namespace)
        run_dir = self.root / "executions" / f"{flow['id']}-{uuid.uuid4().hex[:8]}"
        for task in flow["tasks"]:
            done = self._run_task(task, flow["namespace"], context, run_dir / task["id"])
            execution.tasks[task["id"]] = done
            if done.returncode != 0:
                break
        return execution

    # -- one task ------------------------------------------------------------------------------

    def _render(self, value: object, context: dict) -> object:
        if isinstance(value, str):
            env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
            env.globals.update(secret=self.secrets.__getitem__, kv=self.kv.__getitem__)
            return env.from_string(value).render(context)
        if isinstance(value, list):
            return [self._render(v, context) for v in value]
        if isinstance(value, dict):
            return {k: self._render(v, context) for k, v in value.items()}
        return value

    def _run_task(self, task: dict, kestra_ns: str, context: dict, workdir: Path) -> TaskRun:
        kind = task["type"]
        assert kind in SCRIPT_TYPES | COMMAND_TYPES, f"task type {kind} is not one the harness runs"
        assert task.get("taskRunner", {}).get("type") == PROCESS_RUNNER, "the recipes use the Process task runner"
        task = {k: self._render(v, context) for k, v in task.items() if k not in ("type", "taskRunner")}
        workdir.mkdir(parents=True)

        files = task.get("namespaceFiles") or {}
        if files.get("enabled"):
            self._copy_namespace_files(kestra_ns, files, workdir)

        lines = ["set -e", *task.get("beforeCommands", [])]
        if kind in SCRIPT_TYPES:
            script = workdir / f"{task['id']}_script.py"  # Kestra writes the inline script to a file too
            script.write_text(task["script"])
            lines.append(f"python {script.name}")
        else:
            lines.extend(task["commands"])

        python = self._fresh_python(workdir.parent / f".{task['id']}-venv")
        env = {
            **self.env,
            "HOME": str(self.home),
            "PATH": os.pathsep.join([str(python.parent), str(self.bin), self.env.get("PATH", os.defpath)]),
            "VIRTUAL_ENV": str(python.parent.parent),
            **{k: str(v) for k, v in (task.get("env") or {}).items()},
        }
        proc = subprocess.run(
            ["/bin/sh", "-c", "\n".join(lines)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
        return TaskRun(task["id"], workdir, proc.returncode, proc.stdout, proc.stderr)

    def _copy_namespace_files(self, kestra_ns: str, spec: dict, workdir: Path) -> None:
        source = self.namespace_files[kestra_ns]
        include = spec.get("include") or ["**"]
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, pattern) for pattern in include):
                (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, workdir / rel)

    def _fresh_python(self, where: Path) -> Path:
        """A new virtual environment with ``pip`` (the base interpreter's, as a module): ~0.1 s, no ensurepip."""
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(where)],
            check=True,
            capture_output=True,
        )
        pip = where / "bin" / "pip"
        pip.write_text(f'#!/bin/sh\nexec "{where / "bin" / "python"}" -m pip "$@"\n')
        pip.chmod(0o755)
        return where / "bin" / "python"
