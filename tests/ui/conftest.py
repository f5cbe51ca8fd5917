"""Web UI test kit: one packyard server (anonymous reads off) and one headless Chromium per module.

The browser is Debian's ``chromium`` driven by Playwright (no browser is downloaded here:
``scripts/test.sh`` installs the package). With ``PACKYARD_SCREENSHOTS=1`` the tests save
screenshots of the main pages into ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builder.conftest import private_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with private_server(tmp_path_factory.mktemp("ui"), {"PACKYARD_ANONYMOUS_READ": "false"}) as live:
        yield live


@pytest.fixture(scope="module")
def admin_http(ui_server) -> Iterator[httpx.Client]:  # noqa: ANN001 - LiveServer
    with httpx.Client(base_url=ui_server.url, headers=ui_server.admin, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/test.sh (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def shoot(page, name: str) -> None:  # noqa: ANN001 - playwright Page
    """Save a screenshot for the README when PACKYARD_SCREENSHOTS is set."""
    if os.environ.get("PACKYARD_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
