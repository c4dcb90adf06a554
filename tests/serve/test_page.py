"""The page of ``resdense serve`` in a real headless browser (Debian's chromium, driven by selenium through
chromedriver): an image chosen, the answer read off the page, a screenshot saved.

scripts/setup.sh installs chromium and chromium-driver (as root); this test skips only where neither is
installed. ``RESDENSE_SCREENSHOT=docs/serve-page.png`` writes the screenshot docs/guide/export.md shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from resdense.serve import load_predictor
from resdense.serve.http import create_app
from resdense.serve.predict import predict_files
from tests.chromium import chromium

from .live import live_server, png_bytes


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile") as driver:
        yield driver


def test_the_page_answers_an_uploaded_image(browser, real_fashion_mnist, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # a real test image (an ankle boot), enlarged as a photo would be
    test = real_fashion_mnist.test
    i = int((test.labels == 9).nonzero()[0])
    array = np.kron(test.images[i, 0].numpy(), np.ones((4, 4), dtype=np.uint8))
    image = tmp_path / "ankle-boot.png"
    image.write_bytes(png_bytes(array))
    predictor = load_predictor("fashion-mnist", weights=True)
    expected = predict_files(predictor, [image], top_k=5, invert="auto")[0].top

    with live_server(create_app(predictor, source="fashion-mnist")) as (url, _):
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "card-list").text)  # the model card has arrived
        card = browser.find_element(By.ID, "card").text
        assert "fashion-mnist" in card and "94.78%" in card and "Ankle boot" in card
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "answered")
        rows = browser.find_elements(By.CSS_SELECTOR, "#top li")
        shown = [(r.get_attribute("data-class"), float(r.get_attribute("data-probability"))) for r in rows]
        assert [c for c, _ in shown] == [c for c, _ in expected]
        assert all(abs(p - q) < 1e-5 for (_, p), (_, q) in zip(shown, expected))
        first = rows[0].text
        assert first.startswith(expected[0][0]) and f"{100 * expected[0][1]:.1f}%" in first
        assert (
            browser.find_element(By.ID, "preview").get_attribute("naturalWidth") == "112"
        )  # the image shown
        assert not browser.find_element(By.ID, "explanation-panel").is_displayed()  # no explainer served
        # the page loads nothing from elsewhere: every resource came from the server itself
        sources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert sources and all(s.startswith(url) or s.startswith("blob:") for s in sources), sources
        shot = Path(os.environ.get("RESDENSE_SCREENSHOT") or tmp_path / "page.png")
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_page_shows_where_the_model_looked_and_the_docs_are_local(browser, real_fashion_mnist, tmp_path):
    """Served as ``resdense serve`` serves it (Grad-CAM on): the page shows the map beside the answer; and
    ``/docs`` lists the routes from openapi.json with nothing loaded from elsewhere (FastAPI's Swagger UI
    would load its scripts from a CDN)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from resdense.serve.explain import overlay_png

    test = real_fashion_mnist.test
    image = tmp_path / "bag.png"
    image.write_bytes(png_bytes(test.images[int((test.labels == 8).nonzero()[0]), 0].numpy()))
    predictor = load_predictor("fashion-mnist", weights=True)
    with live_server(create_app(predictor, source="fashion-mnist", explain=overlay_png)) as (url, _):
        wait = WebDriverWait(browser, 60)
        browser.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "card-list").text)
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "answered")
        assert browser.find_element(By.ID, "explanation-panel").is_displayed()
        wait.until(lambda d: d.find_element(By.ID, "explanation").get_attribute("naturalWidth") == "112")

        browser.get(url + "/docs")
        wait.until(lambda d: "POST /predict" in d.find_element(By.ID, "routes").text)
        routes = browser.find_element(By.ID, "routes").text
        assert "GET /health" in routes and "GET /model" in routes
        sources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(s.startswith(url) for s in sources), sources


def test_an_error_clears_the_last_answer_and_map(browser, real_fashion_mnist, tmp_path):
    """An unreadable file after a good one: the page shows the error alone, not the last image's classes and
    Grad-CAM map beside it (issue 35); and the page has a favicon of its own."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from resdense.serve.explain import overlay_png

    test = real_fashion_mnist.test
    good = tmp_path / "bag.png"
    good.write_bytes(png_bytes(test.images[int((test.labels == 8).nonzero()[0]), 0].numpy()))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    predictor = load_predictor("fashion-mnist", weights=True)
    with live_server(create_app(predictor, source="fashion-mnist", explain=overlay_png)) as (url, _):
        wait = WebDriverWait(browser, 60)
        browser.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "card-list").text)
        browser.find_element(By.ID, "file").send_keys(str(good))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "answered")
        assert browser.find_elements(By.CSS_SELECTOR, "#top li")
        assert browser.find_element(By.ID, "explanation-panel").is_displayed()
        browser.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
        assert browser.find_elements(By.CSS_SELECTOR, "#top li") == []
        assert not browser.find_element(By.ID, "explanation-panel").is_displayed()
        assert browser.find_element(By.ID, "explanation").get_attribute("src") in (None, "")
        assert "broken.png" in browser.find_element(By.ID, "status").text
        icon = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
        assert icon == url + "/favicon.svg"
        sources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(s.startswith(url) for s in sources), sources
