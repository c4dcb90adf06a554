"""Debian's chromium, headless, driven by selenium through chromedriver: the one way the suite opens a page
in a real browser (the service's page, tests/serve/test_page.py; the documentation site, tests/docs).

scripts/setup.sh installs chromium and chromium-driver (as root); a test using :func:`chromium` skips only
where neither is installed."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
DRIVER = shutil.which("chromedriver")


@contextlib.contextmanager
def chromium(profile: Path, *, size: str = "1000,820", network_log: bool = False):
    """A headless chromium with its own profile folder; ``network_log``: keep every network event in the
    driver's performance log (to check that no request leaves the machine)."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium and chromedriver here (scripts/setup.sh installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={size}", f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(arg)
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)  # Debian's driver: nothing downloaded
    try:
        yield driver
    finally:
        driver.quit()
