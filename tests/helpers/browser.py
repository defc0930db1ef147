"""Debian's headless Chromium driven by Selenium, for the tests that read pages in a real browser.

Importing this module skips the importing test module when chromium, chromium-driver or selenium are missing
(in CI, MINIPAAS_CI=1, that skip is a failure). Selenium is pointed at both binaries so it never tries to
download a browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="needs the selenium package (pip install selenium)")

from selenium import webdriver  # noqa: E402 (after the skip)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


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


def wait(driver: webdriver.Chrome) -> WebDriverWait:
    return WebDriverWait(driver, 10)


def h1(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".ds-article h1").text

