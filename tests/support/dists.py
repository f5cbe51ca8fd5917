"""Small, valid distributions made in-process: wheels and sdists with chosen metadata.

Built by hand (zip + RECORD, tar.gz + PKG-INFO) rather than with ``python -m build``, so
the index tests spend their time on the index, not on build isolation. Each file is what
pip and uv accept: a wheel installs, an sdist carries PKG-INFO and a buildable layout.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name


def _metadata(
    name: str,
    version: str,
    requires: list[str],
    requires_python: str | None,
    summary: str,
    metadata_version: str = "2.1",
    dynamic: list[str] | None = None,
) -> str:
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    lines += [f"Dynamic: {d}" for d in dynamic or ()]
    return "\n".join(lines) + "\n\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


WHEEL = b"Wheel-Version: 1.0\nGenerator: packyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def pack_wheel(
    out: Path, filename: str, dist_info: str, files: dict[str, bytes], date_time: tuple[int, ...] | None = None
) -> Path:
    """Zip ``files`` (METADATA and WHEEL included) into ``out/filename``, adding the RECORD installers check.

    ``date_time`` pins every member's timestamp (same files, same bytes); without it members get the current time.
    """
    record = [_record_line(path, data) for path, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files = {**files, f"{dist_info}/RECORD": ("\n".join(record) + "\n").encode()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member if date_time is None else zipfile.ZipInfo(member, date_time), data)
    return path


def make_wheel(
    out: Path,
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    requires_python: str | None = None,
    module_body: str | None = None,
    metadata: str | None = None,
) -> Path:
    """A pure-Python wheel whose module ``<name>`` defines VERSION (and module_body)."""
    module = canonicalize_name(name).replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": (f"VERSION = {version!r}\n" + (module_body or "")).encode(),
        f"{dist_info}/METADATA": (
            metadata or _metadata(name, version, requires or [], requires_python, f"{name} for tests")
        ).encode(),
        f"{dist_info}/WHEEL": WHEEL,
    }
    return pack_wheel(out, f"{module}-{version}-py3-none-any.whl", dist_info, files)


def make_sdist(
    out: Path,
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    requires_python: str | None = None,
    members: dict[str, bytes] | None = None,
    pkg_info: bool = True,
    metadata_version: str = "2.1",
    dynamic: list[str] | None = None,
) -> Path:
    """A setuptools-style sdist: ``<name>-<version>/PKG-INFO``, pyproject.toml and the module."""
    module = canonicalize_name(name).replace("-", "_")
    top = f"{module}-{version}"
    content = {
        f"{top}/pyproject.toml": (
            f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ).encode(),
        f"{top}/{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
    }
    if pkg_info:
        content[f"{top}/PKG-INFO"] = _metadata(
            name, version, requires or [], requires_python, f"{name} for tests", metadata_version, dynamic
        ).encode()
    content.update(members or {})
    return pack_sdist(out / f"{module}-{version}.tar.gz", content)


def pack_sdist(path: Path, content: dict[str, bytes]) -> Path:
    """Write ``content`` (member name -> bytes) as a tar archive, compressed as ``path``'s suffix says
    (``.tar.gz``, ``.tar.bz2``, ``.tar.xz``), or as a zip for ``.zip``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in content.items():
                archive.writestr(zipfile.ZipInfo(member, (2023, 11, 14, 22, 13, 20)), data)
        return path
    mode = {".gz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}[path.suffix]
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for member, data in content.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return path


LEGACY_BACKEND = r'''"""An in-tree PEP 517 backend that builds the way an old setuptools sdist does: the
dependencies come from ``setup.py`` (its ``install_requires``), not from PKG-INFO."""

import base64, hashlib, os, sys, types, zipfile


def _setup_kwargs():
    captured = {}
    fake = types.ModuleType("setuptools")
    fake.setup = lambda **kwargs: captured.update(kwargs)
    fake.find_packages = lambda *a, **k: []
    saved = sys.modules.get("setuptools")
    sys.modules["setuptools"] = fake
    try:
        with open("setup.py") as source:
            exec(compile(source.read(), "setup.py", "exec"), {"__name__": "__main__"})
    finally:
        if saved is None:
            del sys.modules["setuptools"]
        else:
            sys.modules["setuptools"] = saved
    return captured


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    kw = _setup_kwargs()
    name, version = kw["name"], kw["version"]
    module = name.lower().replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in kw.get("install_requires", [])]
    files = {f"{dist_info}/METADATA": ("\n".join(metadata) + "\n\n").encode(),
             f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: legacy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    for root, _, names in os.walk(module):
        for n in names:
            if n.endswith(".py"):
                path = os.path.join(root, n)
                with open(path, "rb") as f:
                    files[path.replace(os.sep, "/")] = f.read()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    filename = f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return filename
'''


def make_legacy_sdist(
    out: Path, name: str, version: str, *, install_requires: list[str], suffix: str = ".tar.gz"
) -> Path:
    """A look-alike of an sdist from before Metadata-Version 2.2 (most of PyPI until 2023).

    Its PKG-INFO is Metadata-Version 2.1 and lists no Requires-Dist, while ``setup.py``
    declares ``install_requires``: installing it must follow ``setup.py``. It builds with
    an in-tree backend that reads ``setup.py`` as setuptools would, so pip and uv build it
    without fetching setuptools from the index under test.
    """
    module = canonicalize_name(name).replace("-", "_")
    top = f"{module}-{version}"
    setup = (
        "from setuptools import setup\n\n"
        f"setup(name={name!r}, version={version!r}, install_requires={install_requires!r})\n"
    )
    content = {
        f"{top}/PKG-INFO": _metadata(name, version, [], None, f"{name}, an old-style sdist").encode(),
        f"{top}/setup.py": setup.encode(),
        f"{top}/pyproject.toml": (
            b'[build-system]\nrequires = []\nbuild-backend = "legacy_backend"\nbackend-path = ["."]\n'
        ),
        f"{top}/legacy_backend.py": LEGACY_BACKEND.encode(),
        f"{top}/{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
    }
    return pack_sdist(out / f"{top}{suffix}", content)
