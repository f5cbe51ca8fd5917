"""What is one file, one project: distributions are immutable whatever their spelling, and
project names are ASCII (issue 12, items 6 and 7).

One distribution is one (normalized name, version, tags) or one sdist per release: a second
file for it is a 409 however the filename spells the name (``ETL``), the version (``7.0.0``)
or the tag set (``py3.py2``); the same bytes under another spelling are the same file (200,
no second row). Look-alike project names (fullwidth, Kelvin sign, dotless i, Cyrillic) are
refused with a 400 that says names are ASCII — in the filename, the metadata and the form —
and a page asked for under such a name is a 404, never a 500.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.e2e.conftest import links
from tests.e2e.test_upload import dist_rows, twine_upload, uv_publish
from tests.support.clients import create_ns, create_token, output, post_upload, upload, upload_form
from tests.support.dists import make_sdist, make_wheel

CONFUSABLE = {
    "fullwidth": "\uff45\uff54\uff4c",  # ｅｔｌ
    "kelvin sign": "\u212aetl",  # Ketl, folds into ketl
    "dotless i": "et\u0131l",  # etıl
    "cyrillic e": "\u0435tl",  # еtl
}


def renamed(path: Path, filename: str) -> Path:
    """A copy of ``path`` under another filename (same bytes) in a folder of its own."""
    out = path.parent / f"as-{filename}"
    out.mkdir(exist_ok=True)
    return Path(shutil.copy(path, out / filename))


@pytest.fixture(scope="module")
def etl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``etl 7.0`` wheels and sdists whose bytes differ, and spellings of them."""
    root = tmp_path_factory.mktemp("names")
    first = make_wheel(root / "a", "etl", "7.0", module_body="A = 1\n")
    other = make_wheel(root / "b", "etl", "7.0", module_body="B = 2\n")
    third = make_wheel(root / "c", "etl", "7.0", module_body="C = 3\n")
    sdist = make_sdist(root / "s1", "etl", "7.0")
    sdist_other = make_sdist(root / "s2", "etl", "7.0", members={"etl-7.0/EXTRA": b"other\n"})
    return {
        "wheel": first,
        "upper": renamed(other, "ETL-7.0-py3-none-any.whl"),
        "title": renamed(third, "Etl-7.0.0-py3-none-any.whl"),
        "version": renamed(third, "etl-7.0.0-py3-none-any.whl"),
        "same bytes": renamed(first, "ETL-7.0.0-py3-none-any.whl"),
        "sdist": sdist,
        "sdist other": renamed(sdist_other, "ETL-7.0.0.tar.gz"),
        "two tags": renamed(
            make_wheel(root / "t1", "etl", "7.0", module_body="T = 1\n"), "etl-7.0-py2.py3-none-any.whl"
        ),
        "two tags other": renamed(
            make_wheel(root / "t2", "etl", "7.0", module_body="T = 2\n"), "etl-7.0-py3.py2-none-any.whl"
        ),
    }


def page_files(http: httpx.Client, ns: str, project: str) -> list[str]:
    response = http.get(f"/{ns}/simple/{project}/")
    assert response.status_code == 200, response.text
    return sorted(links(response.text))


# -- item 6: one distribution, one file --------------------------------------------------------


def test_another_spelling_of_a_distribution_is_refused_through_twine_and_uv_publish(
    server: LiveServer, http: httpx.Client, ns: str, etl: dict[str, Path], tmp_path: Path
) -> None:
    _, secret = create_token(http, server, ns, "write")
    twine_upload(server, ns, secret, etl["wheel"], etl["sdist"])
    rows = dist_rows(server, ns)

    refused = twine_upload(server, ns, secret, etl["upper"], verbose=True, ok=False)
    assert refused.returncode != 0
    assert "409" in output(refused) and "etl-7.0-py3-none-any.whl" in output(refused), output(refused)
    # uv publish skips non-normalized filenames itself: it gets another spelling of the version
    published = uv_publish(server, ns, secret, tmp_path, etl["version"], ok=False)
    assert published.returncode != 0, output(published)
    assert "immutable" in output(published) or "409" in output(published), output(published)
    for name in ("upper", "title", "sdist other"):
        path = etl[name]
        response = post_upload(http, ns, path.name, path.read_bytes(), secret)
        assert response.status_code == 409, (name, response.text)
        assert "the same distribution" in response.json()["detail"], response.text
    assert dist_rows(server, ns) == rows

    # the same bytes under another spelling are the same file: accepted, no second row
    twine_upload(server, ns, secret, etl["same bytes"])
    assert dist_rows(server, ns) == rows
    assert page_files(http, ns, "etl") == sorted([etl["wheel"].name, etl["sdist"].name])


def test_the_order_of_compressed_tags_does_not_make_another_wheel(
    server: LiveServer, http: httpx.Client, ns: str, etl: dict[str, Path]
) -> None:
    upload(http, server, ns, etl["two tags"])
    other = etl["two tags other"]
    response = post_upload(http, ns, other.name, other.read_bytes(), server.admin_token)
    assert response.status_code == 409, response.text
    assert page_files(http, ns, "etl") == [etl["two tags"].name]


def test_a_child_shadows_its_parents_distribution_whatever_the_spelling(
    server: LiveServer, http: httpx.Client, ns: str, etl: dict[str, Path]
) -> None:
    """A child may still override a parent's file (the inheritance rule); its page then lists
    the child's file only, also when the child spells the filename differently."""
    child = f"{ns}.child"
    create_ns(http, server, ns, child)
    upload(http, server, ns, etl["wheel"])
    upload(http, server, child, etl["upper"])
    assert page_files(http, child, "etl") == [etl["upper"].name]
    assert http.get(f"/{child}/dists/{etl['upper'].name}").content == etl["upper"].read_bytes()
    assert http.get(f"/{child}/dists/{etl['wheel'].name}").status_code == 404
    assert page_files(http, ns, "etl") == [etl["wheel"].name]


# -- item 7: project names are ASCII -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CONFUSABLE))
def test_confusable_project_names_are_refused(
    server: LiveServer, http: httpx.Client, ns: str, kind: str, tmp_path: Path
) -> None:
    name = CONFUSABLE[kind]
    create_ns(http, server, ns)
    ascii_wheel = make_wheel(tmp_path / "ascii", "ketl", "1.0")
    data = ascii_wheel.read_bytes()
    attempts = {
        "filename": post_upload(
            http, ns, f"{name}-1.0-py3-none-any.whl", data, server.admin_token, upload_form(ascii_wheel, data)
        ),
        "form name": post_upload(
            http, ns, ascii_wheel.name, data, server.admin_token, upload_form(ascii_wheel, data, name=name)
        ),
    }
    if kind == "kelvin sign":  # the only one whose metadata matches an ASCII filename today
        meta = make_wheel(
            tmp_path / "meta", "ketl", "1.0", metadata=f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n"
        )
        attempts["metadata"] = post_upload(http, ns, meta.name, meta.read_bytes(), server.admin_token)
    for where, response in attempts.items():
        assert response.status_code == 400, (where, response.text)
        assert "ASCII" in response.json()["detail"], (where, response.text)
    assert dist_rows(server, ns) == []

    for path in (f"/{ns}/simple/{name}/", f"/{ns}/simple/{name[0].upper()}{name[1:]}/"):
        page = http.get(path)
        assert page.status_code == 404, (path, page.status_code, page.text)
        assert "ASCII" in page.json()["detail"]


def test_twine_upload_of_a_confusable_name_is_refused(
    server: LiveServer, http: httpx.Client, ns: str, tmp_path: Path
) -> None:
    """A wheel of ``ketl`` named ``Ketl-1.0-…`` with a Kelvin sign, which ``canonicalize_name``
    folds into ``ketl`` (so main stored it): twine refuses look-alikes in the metadata itself,
    not in the filename, so only the server stops this one."""
    _, secret = create_token(http, server, ns, "write")
    kelvin = renamed(make_wheel(tmp_path, "ketl", "1.0"), f"{CONFUSABLE['kelvin sign']}-1.0-py3-none-any.whl")
    refused = twine_upload(server, ns, secret, kelvin, verbose=True, ok=False)
    assert refused.returncode != 0
    assert "400" in output(refused) and "ASCII" in output(refused), output(refused)
    assert dist_rows(server, ns) == []
