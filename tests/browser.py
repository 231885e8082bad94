"""Headless Chromium for the dashboard tests: Playwright driving the system's browser (Debian's
`chromium` package), never a browser Playwright downloads. A missing browser fails the tests
with the way to install it; it never skips them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, sync_playwright

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    """The system Chromium (FUGGER_CHROMIUM overrides); the test fails when there is none."""
    for path in (os.environ.get("FUGGER_CHROMIUM"), *CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail("the dashboard tests need Chromium and none was found: install it with "
                "`apt-get install -y chromium` (Debian/Ubuntu), or point FUGGER_CHROMIUM at a "
                "Chromium binary", pytrace=False)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
