"""Real clients against a real server: twine, uv, pip and the packyard CLI as subprocesses.

The clients run through :mod:`tests.support.clients`, with their configuration cut off from
this machine, so whatever a client installs or resolves can only have come from packyard.

The ``server`` fixture is session scoped and parametrized over both backends; fixtures here
that upload are module scoped, so each module uploads its set once per backend.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import LiveServer
from tests.support.clients import clean_env, make_venv, run

PIP_MIN = Version("24")
"""From here on ``pip install --dry-run`` reads PEP 658 metadata without downloading files."""


def installed(python: Path) -> dict[str, str]:
    """Distribution name -> version installed in the venv of ``python``."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    return json.loads(run([python, "-c", code], clean_env()).stdout)


@pytest.fixture(scope="session")
def pip(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``python -m pip`` of a pip recent enough to resolve from PEP 658 metadata alone.

    The interpreter's own pip when it is recent; otherwise a pip installed once per session
    into a fresh venv through this machine's ordinary pip configuration (the only pip call
    that may use it). Point it at a target environment with ``--python VENV/bin/python``.
    """
    if Version(importlib.metadata.version("pip")) >= PIP_MIN:
        return [sys.executable, "-m", "pip"]
    root = tmp_path_factory.mktemp("modern-pip")
    python = make_venv(root / "venv", root / "uv-cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", f"pip>={PIP_MIN}"], env)
    return [str(python), "-m", "pip"]


# -- request log and pages -------------------------------------------------------------------


def fetched(server: LiveServer, mark: int, *namespaces: str) -> list[str]:
    """Paths of the GETs logged since ``mark`` under any of ``namespaces``."""
    prefixes = tuple(f"/{ns}/" for ns in namespaces)
    return [path for method, path, _ in server.requests_since(mark) if method == "GET" and path.startswith(prefixes)]


def assert_metadata_only(paths: list[str]) -> None:
    """Only index pages and PEP 658 metadata were read: no wheel or sdist was downloaded."""
    assert paths, "the client made no request to the index"
    downloads = [p for p in paths if not (re.search(r"/simple/", p) or p.endswith(".metadata"))]
    assert downloads == [], f"files were downloaded: {downloads}"
    assert any(p.endswith(".metadata") for p in paths), paths
    assert not any(p.endswith((".whl", ".tar.gz", ".zip")) for p in paths), paths


@dataclass
class Link:
    text: str
    attrs: dict[str, str | None]
    raw: str
    """The start tag as served (to check escaping)."""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[Link] = []
        self._open: Link | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = Link("", dict(attrs), self.get_starttag_text() or "")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append(self._open)
            self._open = None


def links(html: str) -> dict[str, Link]:
    """The anchors of a simple page by their text (the filename or project name)."""
    parser = _Links()
    parser.feed(html)
    return {link.text: link for link in parser.links}
