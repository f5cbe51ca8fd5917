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


def _metadata(name: str, version: str, requires: list[str], requires_python: str | None, summary: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
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
            name, version, requires or [], requires_python, f"{name} for tests"
        ).encode()
    content.update(members or {})
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{module}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in content.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return path
