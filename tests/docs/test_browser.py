"""The built site in a real headless browser (Debian's chromium through chromedriver, as tests/serve's page
test): search for ``DenseBlock``, land on its API entry, and no request leaves the machine."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest

from tests.chromium import chromium

LOCAL = (
    "http://127.0.0.1",
    "http://localhost",
    "file://",
    "data:",
    "blob:",
    "about:",
    "chrome:",
    "devtools:",
)


@pytest.fixture
def served_site(built_site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built_site))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile", size="1400,900", network_log=True) as driver:
        yield driver


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_search_finds_denseblock_api_entry_and_nothing_leaves_the_machine(browser, served_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served_site}/index.html")
    wait = WebDriverWait(browser, 30)
    box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
    box.send_keys("DenseBlock")
    link = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, ".md-search-result__list a[href*='DenseBlock']"))
    )
    link.click()
    wait.until(lambda d: "DenseBlock" in d.current_url)
    assert "/api/" in browser.current_url, browser.current_url
    anchor = browser.current_url.split("#", 1)[1]
    entry = browser.find_element(By.ID, anchor)
    assert "DenseBlock" in entry.text
    urls = requested_urls(browser)
    assert urls, "the performance log recorded no request"
    outside = [u for u in urls if not u.startswith(LOCAL)]
    assert not outside, f"requests left the machine: {outside}"
