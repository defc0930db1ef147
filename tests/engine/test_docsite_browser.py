"""Docs pushed to minipaas and read in a real headless Chromium through its nginx (the engine tier;
tests/unit/test_docsite_browser.py reads a rendered site served from a folder)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.browser import chrome, h1, wait  # first: skips this module without chromium or selenium

# isort: split
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec


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

