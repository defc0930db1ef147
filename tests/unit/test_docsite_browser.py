"""A rendered docs site in a real headless Chromium: titles, sidebar navigation, search, a clean console.

Needs Debian's `chromium` and `chromium-driver` packages and the `selenium` Python package; the module is
skipped without them. Selenium is pointed at both binaries so it never tries to download a browser.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="needs the selenium package (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from minipaas.routing.docsite import render_site  # noqa: E402

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


def chrome(profile: Path, *extra_flags: str) -> webdriver.Chrome:
    """Debian's headless Chromium, with its console log kept, talking to nothing but what a test serves."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={profile}", *extra_flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


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


def wait(driver: webdriver.Chrome) -> WebDriverWait:
    return WebDriverWait(driver, 10)


def h1(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".ds-article h1").text


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


def test_docs_pushed_to_minipaas_work_in_the_browser(paas, tmp_path: Path) -> None:
    """The whole way: a Markdown repo pushed to minipaas, served by its nginx, browsed by Chromium."""
    from tests.helpers.host import APPS

    app, _ = paas.deploy(APPS / "markdown-docs")
    # Names under paas.test resolve to loopback inside this browser only.
    driver = chrome(tmp_path / "profile", "--host-resolver-rules=MAP *.paas.test 127.0.0.1")
    try:
        base = f"http://{app}.paas.test:{paas.port}"
        driver.get(f"{base}/")
        assert driver.title.startswith("Team handbook")
        link = driver.find_element(By.CSS_SELECTOR, '#ds-nav a[href$="guide/install.html"]')
        driver.execute_script("arguments[0].click()", link)  # the guide folder may be folded on the home page
        wait(driver).until(ec.url_contains("/guide/install"))
        assert h1(driver) == "Install"
        driver.get(f"{base}/guide/deploy")  # a clean URL, served as deploy.html
        assert h1(driver) == "Deploy"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def target_id(driver: webdriver.Chrome) -> str:
    """The element the URL's fragment points at (`:target`): its id, or the name of an `<a name>`."""
    return driver.execute_script(
        "const t = document.querySelector(':target'); return t ? (t.id || t.getAttribute('name')) : null;")


def test_a_docs_folder_written_for_github_is_followed_by_its_links(paas, tmp_path: Path) -> None:
    """Pushed to minipaas, served by its nginx with the docs CSP: in-page and cross-page links written for
    GitHub land on their headings and raw-HTML anchors; kept raw HTML works; none of its scripts ran."""
    from tests.helpers.host import APPS

    app = paas.new_app()
    paas.push(paas.checkout(app, APPS / "docs-github"))
    driver = chrome(tmp_path / "profile", "--host-resolver-rules=MAP *.paas.test 127.0.0.1")
    try:
        base = f"http://{app}.paas.test:{paas.port}"
        driver.get(f"{base}/guide/setup")
        driver.find_element(By.LINK_TEXT, "second install step").click()
        wait(driver).until(lambda d: target_id(d) == "install-1")
        assert driver.current_url.endswith("/guide/setup#install-1")
        driver.find_element(By.LINK_TEXT, "Files & folders").click()
        wait(driver).until(ec.url_to_be(f"{base}/guide/configuration.html#files--folders"))
        assert target_id(driver) == "files--folders"
        driver.find_element(By.LINK_TEXT, "the config file").click()  # to an <a id> in raw HTML
        wait(driver).until(lambda d: target_id(d) == "config-file")

        driver.get(f"{base}/")
        assert driver.find_element(By.CSS_SELECTOR, ".ds-article h1").get_attribute("align") == "center"
        driver.find_element(By.LINK_TEXT, "The old anchor").click()  # to an <a name>
        wait(driver).until(lambda d: target_id(d) == "legacy-anchor")
        driver.find_element(By.LINK_TEXT, "Why the name?").click()
        wait(driver).until(ec.url_to_be(f"{base}/faq.html#why-is-it-called-widgetry"))
        assert target_id(driver) == "why-is-it-called-widgetry"

        driver.get(f"{base}/")
        details = driver.find_element(By.TAG_NAME, "details")
        assert details.get_attribute("open") is None
        details.find_element(By.TAG_NAME, "summary").click()
        assert details.get_attribute("open") is not None
        assert driver.find_element(By.CSS_SELECTOR, "details pre").is_displayed()
        driver.find_element(By.LINK_TEXT, "Back to getting started").click()  # its onclick is gone
        wait(driver).until(lambda d: target_id(d) == "getting-started")
        logo = driver.find_element(By.CSS_SELECTOR, 'img[alt="Widgetry logo"]')
        assert driver.execute_script("return arguments[0].naturalWidth", logo) > 0  # the image loaded
        assert driver.title == f"Home – {app}"  # no script of the page ran
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
