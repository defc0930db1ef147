"""A rendered docs site in a real headless Chromium: titles, sidebar navigation, search, a clean console.

Needs Debian's `chromium` and `chromium-driver` packages and the `selenium` Python package; the module is
skipped without them. Selenium is pointed at both binaries so it never tries to download a browser.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import chrome, h1, wait  # first: skips this module without chromium or selenium

# isort: split
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec

from minipaas.build.docsite.site import render_site

SAMPLE = {
    "README.md": "# Demo docs\n\nStart with [installing](guide/install.md).\n\n## Overview\n\nSome text.\n\n"
                 "```python\ndef hello() -> str:\n    return 'hi'\n```\n",
    "guide/README.md": "# The guide\n\n## Concepts\n",
    "guide/install.md": "# Installing\n\n## Requirements\n\nDocker and git.\n\n## Troubleshooting\n\n"
                        "| Symptom | Fix |\n|---|---|\n| slow | wait |\n",
    "guide/deep/tuning.md": "# Tuning\n\n## Worker processes\n",
    "faq.md": "# FAQ\n\n## Why static files?\n",
}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = chrome(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()



@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser, with its console checked after each test: no SEVERE entry (failed load, script error)."""
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("docsite")
    for rel, content in SAMPLE.items():
        path = root / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    render_site(root / "src", root / "out", title="Demo")
    handler = functools.partial(QuietHandler, directory=str(root / "out"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def search_results(driver: webdriver.Chrome, query: str) -> list[WebElement]:
    box = driver.find_element(By.ID, "ds-search")
    box.clear()
    box.send_keys(query)
    wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#ds-results li")))
    return driver.find_elements(By.CSS_SELECTOR, "#ds-results a")


def test_page_title_and_styles(page: webdriver.Chrome, site: str) -> None:
    page.get(f"{site}/index.html")
    assert page.title == "Demo docs – Demo"
    assert h1(page) == "Demo docs"
    # the stylesheet and the highlighting loaded: the sidebar sits left of the article, code is coloured
    sidebar = page.find_element(By.CSS_SELECTOR, ".ds-sidebar").rect
    article = page.find_element(By.CSS_SELECTOR, ".ds-article").rect
    assert sidebar["x"] + sidebar["width"] <= article["x"]
    keyword = page.find_element(By.CSS_SELECTOR, ".highlight .k")
    assert keyword.value_of_css_property("color") != page.find_element(By.TAG_NAME, "body").value_of_css_property(
        "color")


def test_sidebar_link_navigates(page: webdriver.Chrome, site: str) -> None:
    page.get(f"{site}/index.html")
    page.find_element(By.CSS_SELECTOR, "#ds-nav").find_element(By.LINK_TEXT, "Installing").click()
    wait(page).until(ec.url_to_be(f"{site}/guide/install.html"))
    assert h1(page) == "Installing"
    assert page.title == "Installing – Demo"
    current = page.find_element(By.CSS_SELECTOR, "#ds-nav [aria-current=page]")
    assert current.text == "Installing"
    # and back up from a nested page: relative links work at any depth
    page.find_element(By.CSS_SELECTOR, "#ds-nav").find_element(By.LINK_TEXT, "Tuning").click()
    wait(page).until(ec.url_to_be(f"{site}/guide/deep/tuning.html"))
    page.find_element(By.CSS_SELECTOR, "#ds-nav").find_element(By.LINK_TEXT, "FAQ").click()
    wait(page).until(ec.url_to_be(f"{site}/faq.html"))
    assert h1(page) == "FAQ"


def test_search_finds_titles_and_headings(page: webdriver.Chrome, site: str) -> None:
    page.get(f"{site}/guide/deep/tuning.html")
    results = search_results(page, "requir")
    assert [result.find_element(By.CLASS_NAME, "ds-hit-title").text for result in results] == ["Requirements"]
    assert results[0].get_attribute("href") == f"{site}/guide/install.html#requirements"
    results[0].click()
    wait(page).until(ec.url_to_be(f"{site}/guide/install.html#requirements"))
    assert h1(page) == "Installing"

    titles = [result.text for result in search_results(page, "faq")]
    assert titles == ["FAQ"]
    page.find_element(By.ID, "ds-search").send_keys(Keys.ENTER)
    wait(page).until(ec.url_to_be(f"{site}/faq.html"))

    search_results(page, "no such words")
    assert page.find_element(By.CSS_SELECTOR, "#ds-results .ds-no-results").text.startswith("No results")


def test_table_of_contents_links_to_headings(page: webdriver.Chrome, site: str) -> None:
    page.get(f"{site}/guide/install.html")
    page.find_element(By.CSS_SELECTOR, ".ds-toc").find_element(By.LINK_TEXT, "Troubleshooting").click()
    wait(page).until(ec.url_to_be(f"{site}/guide/install.html#troubleshooting"))
    assert page.find_element(By.ID, "troubleshooting").tag_name == "h2"


def test_narrow_screen_folds_the_menu(page: webdriver.Chrome, site: str) -> None:
    page.set_window_size(420, 800)
    try:
        page.get(f"{site}/guide/install.html")
        nav, button = page.find_element(By.ID, "ds-nav"), page.find_element(By.ID, "ds-menu-button")
        assert button.is_displayed()
        assert not nav.is_displayed()
        button.click()
        assert nav.is_displayed()
        assert button.get_attribute("aria-expanded") == "true"
    finally:
        page.set_window_size(1280, 900)


def test_screenshot(page: webdriver.Chrome, site: str, tmp_path: Path) -> None:
    page.get(f"{site}/guide/install.html")
    shot = tmp_path / "docsite.png"
    assert page.save_screenshot(str(shot))
    assert shot.stat().st_size > 5000


