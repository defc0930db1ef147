"""The dashboard in a real headless Chromium (Selenium), through minipaas' own nginx, on one host with one app.

One paas, one real sshd, one deployed app with a review app, shared by every case (CI time): `ps:restore` starts
the dashboard as install.sh does; keys are added with `ssh-keys:add` and each login link is minted over real ssh
(`dashboard:login`). Chromium resolves `*.paas.test` to loopback and reaches the dashboard at
`dashboard.paas.test:<the private nginx's port>`. The rollback runs last: it changes what the app serves.

With MINIPAAS_SCREENSHOTS=1 the main pages' screenshots are written to docs/ (README shows them).
"""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.host import ROOT, Paas, commit, free_port, git, paas_host
from tests.helpers.sshd import Sshd, serve_ssh, sshd_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="needs the selenium package (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.engine


@dataclass
class Dash:
    paas: Paas
    sshd: Sshd
    app: str
    review: str
    base: str  # http://dashboard.paas.test:PORT
    profiles: Path

    def link(self, key: str) -> str:
        minted = self.sshd.ssh(key, "dashboard:login")
        assert minted.returncode == 0, minted.stderr
        link = minted.stdout.strip()
        assert link.startswith(f"{self.base}/login/"), link
        return link

    def events(self) -> list[dict[str, object]]:
        return json.loads(self.paas.run("events", "--json").stdout)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[Dash]:
    work = tmp_path_factory.mktemp("dashboard")
    https_port = free_port()
    with paas_host(work / "work", MINIPAAS_HTTPS_PORT=str(https_port)) as paas, sshd_server(work / "sshd") as sshd:
        paas.https_port = https_port
        serve_ssh(paas, sshd)
        for name, role in (("alice", "admin"), ("dave", "deployer")):
            paas.run("ssh-keys:add", name, "--role", role, input=sshd.key(name).with_suffix(".pub").read_text())
        app, checkout = paas.deploy(prefix="dash")  # release 1: "Hello from minipaas"
        paas.run("ssh-keys:grant", "dave", app)
        paas.new_app("hidden")  # an app dave is not granted
        git(checkout, "checkout", "-q", "-b", "feature/Login")
        commit(checkout, "the login branch")
        paas.push(checkout, "feature/Login")
        git(checkout, "checkout", "-q", "master")
        paas.run("config:set", app, "GREETING=Bonjour")  # release 2
        paas.run("config:set", "--secret", app, "API_TOKEN=tok-s3cret-value")  # release 3
        restored = paas.run("ps:restore")
        assert "dashboard: started" in restored.stdout, restored.stdout
        socket_path = paas.home / "nginx" / "dashboard" / "dashboard.sock"
        wait_for(socket_path.exists, "the dashboard's socket", 30)
        yield Dash(paas, sshd, app, f"{app}--feature-login", f"http://dashboard.paas.test:{paas.port}",
                   work / "profiles")


def chrome(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP *.paas.test 127.0.0.1, MAP paas.test 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(180)  # a rollback answers when it is done
    return driver


@pytest.fixture
def browser(dash: Dash) -> Iterator[webdriver.Chrome]:
    """A fresh browser (no cookie of another case); its console must end with no CSP violation or script error."""
    dash.profiles.mkdir(exist_ok=True)
    driver = chrome(dash.profiles / f"p{len(list(dash.profiles.iterdir()))}")
    try:
        yield driver
        # Of the dashboard's pages (not the app's, whose favicon is its own business), apart from the refusals
        # the cases provoke.
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and dash.base in e["message"]
                  and not re.search(r"status of 40[134]", e["message"])]
        assert severe == [], "\n".join(e["message"] for e in severe)
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> None:
    if os.environ.get("MINIPAAS_SCREENSHOTS") == "1":
        driver.save_screenshot(str(ROOT / "docs" / name))


def settled(driver: webdriver.Chrome, seconds: float) -> WebDriverWait:
    """A wait that polls again when an element it found went with a navigation (the page a form's POST answers)."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def heading(driver: webdriver.Chrome) -> str:
    """The page's h1; "" while a navigation replaces the page (the element found is gone before its text is read:
    a wait polls again)."""
    try:
        return driver.find_element(By.TAG_NAME, "h1").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_log_in_through_a_minted_link_see_the_apps_and_follow_a_review_app(dash: Dash,
                                                                          browser: webdriver.Chrome) -> None:
    browser.get(dash.link("alice"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-app="{dash.app}"]')
    assert "serving" in row.text and "app" in row.text
    review = browser.find_element(By.CSS_SELECTOR, f'tr[data-app="{dash.review}"]')
    assert "feature/Login" in review.text
    url = review.find_element(By.CSS_SELECTOR, "a.url")
    assert url.get_attribute("href") == f"http://feature-login.{dash.app}.paas.test:{dash.paas.port}/"
    # Readable at 1280 px: the apps table fits its box (no sideways scroll); on a phone's width neither the page
    # nor the table scrolls sideways (a card per row), and a focused link shows its ring.
    fits = "const e = document.querySelector(arguments[0]); return e.scrollWidth <= e.clientWidth;"
    assert browser.execute_script(fits, "main .scroll"), "the apps table overflows at 1280 px"
    shot(browser, "dashboard-apps.png")
    browser.set_window_size(390, 844)
    try:
        settled(browser, 10).until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        assert browser.execute_script(fits, "html") and browser.execute_script(fits, "main .scroll")
        browser.find_element(By.ID, "q").send_keys(Keys.TAB)  # by keyboard, from the filter to its button
        ring = "const a = document.activeElement; return [a.textContent, getComputedStyle(a).outlineStyle];"
        assert browser.execute_script(ring) == ["Filter", "solid"]
    finally:
        browser.set_window_size(1280, 900)
    # The branch's own page, and from there the branch's deploy itself.
    review.find_element(By.CSS_SELECTOR, "a.applink").click()
    settled(browser, 10).until(lambda d: heading(d) == dash.review)
    assert "Review app of" in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "main a.url").click()
    settled(browser, 30).until(lambda d: "from minipaas" in d.find_element(By.TAG_NAME, "body").text)
    # The app's page: releases, config names, and the admin's explicit click for values.
    browser.get(f"{dash.base}/apps/{dash.app}")
    releases = browser.find_elements(By.CSS_SELECTOR, "table.releases tbody tr")
    assert [r.get_attribute("data-release") for r in releases] == ["3", "2", "1"]
    assert "API_TOKEN" in browser.page_source and "tok-s3cret-value" not in browser.page_source
    shot(browser, "dashboard-app.png")
    # On a phone's width its releases and processes are cards too: neither the page nor a table scrolls sideways.
    browser.set_window_size(390, 844)
    try:
        settled(browser, 10).until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        boxes = "return [...document.querySelectorAll('main .scroll')].map((e) => e.scrollWidth <= e.clientWidth);"
        assert browser.execute_script(fits, "html") and browser.execute_script(boxes) == [True, True]
        browser.execute_script("document.querySelector('table.releases').parentElement.previousElementSibling.scrollIntoView();")
        shot(browser, "dashboard-app-phone.png")
    finally:
        browser.set_window_size(1280, 900)
    browser.find_element(By.CSS_SELECTOR, 'tr[data-release="1"] a.release').click()
    settled(browser, 10).until(lambda d: heading(d).endswith("release 1"))
    assert "npm ci" in browser.find_element(By.CSS_SELECTOR, "pre.log").text  # the build's log
    browser.back()
    browser.find_element(By.CSS_SELECTOR, "a.show-values").click()
    settled(browser, 10).until(lambda d: "tok-s3cret-value" in d.page_source)
    # The host: disk per app, base images and who uses them, what gc would free, the audit log.
    browser.find_element(By.LINK_TEXT, "Host").click()
    settled(browser, 60).until(lambda d: heading(d) == "Host")
    assert dash.app in browser.find_element(By.TAG_NAME, "main").text and "minipaas/node:" in browser.page_source
    assert "<code>dashboard:login</code>" in browser.page_source  # the audit log: the login asked for over ssh
    shot(browser, "dashboard-host.png")


def test_a_deployer_sees_only_its_granted_apps_and_no_config_value(dash: Dash, browser: webdriver.Chrome) -> None:
    browser.get(dash.link("dave"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    shown = {e.get_attribute("data-app") for e in browser.find_elements(By.CSS_SELECTOR, "tr[data-app]")}
    assert shown == {dash.app, dash.review}  # not the hidden app
    browser.get(f"{dash.base}/apps/{dash.app}")
    assert "API_TOKEN" in browser.page_source and "GREETING" in browser.page_source
    assert "tok-s3cret-value" not in browser.page_source and "Bonjour" not in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "a.show-values, button.rollback") == []
    browser.get(f"{dash.base}/apps/{dash.app}?values=1")
    assert heading(browser) == "403" and "tok-s3cret-value" not in browser.page_source
    hidden = [a for a in json.loads(dash.paas.run("apps:list", "--json").stdout) if a["name"].startswith("hidden")]
    browser.get(f"{dash.base}/apps/{hidden[0]['name']}")
    assert heading(browser) == "404"
    # Over ssh, the deployer's own sessions: listed, then ended everywhere.
    listed = dash.sshd.ssh("dave", "dashboard:sessions")
    assert listed.returncode == 0 and "dave" in listed.stdout and "alice" not in listed.stdout
    ended = dash.sshd.ssh("dave", "dashboard:logout-all")
    assert ended.returncode == 0 and "Ended 1 dashboard session of dave" in ended.stdout, ended.stdout + ended.stderr
    browser.get(f"{dash.base}/")
    assert heading(browser) == "401"
    refused = dash.sshd.ssh("dave", "dashboard:login", "--key", "alice")  # a login is for the key that asks
    assert refused.returncode == 1 and "for the key that asks" in refused.stderr


def test_a_used_expired_or_forged_login_link_is_refused(dash: Dash, browser: webdriver.Chrome) -> None:
    used = dash.link("alice")
    browser.get(used)
    settled(browser, 10).until(ec.title_contains("Apps"))
    browser.delete_all_cookies()  # a second browser, as it were, opening the same link
    browser.get(used)
    assert heading(browser) == "403" and "used already" in browser.page_source
    expired = dash.link("alice")
    with sqlite3.connect(dash.paas.home / "minipaas.db") as db:  # five minutes later, as far as the link knows
        db.execute("UPDATE dashboard_links SET expires_at = expires_at - 301 WHERE used_at IS NULL")
    browser.get(expired)
    assert heading(browser) == "403" and "expired" in browser.page_source
    forged = used[:-6] + ("AAAAAA" if not used.endswith("AAAAAA") else "BBBBBB")
    browser.get(forged)
    assert heading(browser) == "403" and "not a login link" in browser.page_source
    browser.get(f"{dash.base}/")
    assert heading(browser) == "401"  # none of them logged the browser in


def test_a_removed_keys_session_is_refused(dash: Dash, browser: webdriver.Chrome) -> None:
    dash.paas.run("ssh-keys:add", "erin", "--role", "admin",
                  input=dash.sshd.key("erin").with_suffix(".pub").read_text())
    browser.get(dash.link("erin"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    dash.paas.run("ssh-keys:remove", "erin")
    browser.get(f"{dash.base}/apps/{dash.app}")
    assert heading(browser) == "401" and "dashboard:login" in browser.page_source
    browser.get(f"{dash.base}/")
    assert heading(browser) == "401"


def test_a_cross_site_form_post_is_refused(dash: Dash, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(dash.link("alice"))  # a logged-in admin ...
    settled(browser, 10).until(ec.title_contains("Apps"))
    # ... visits another site, whose form posts to the dashboard's restart.
    (tmp_path / "evil.html").write_text(
        f'<!doctype html><form method="post" action="{dash.base}/apps/{dash.app}/restart">'
        '<input name="csrf" value="guessed"><button id="go">win a prize</button></form>')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    def restarts() -> int:
        return len([e for e in dash.events() if "restart" in str(e["command"])])

    before = restarts()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/evil.html")
        browser.find_element(By.ID, "go").click()
        settled(browser, 10).until(lambda d: d.current_url.endswith("/restart"))
        assert heading(browser) in ("401", "403")
    finally:
        server.shutdown()
        server.server_close()
    assert restarts() == before
    live = [r for r in json.loads(dash.paas.run("releases", dash.app, "--json").stdout) if r["status"] == "live"]
    assert live[0]["number"] == 3 and live[0]["kind"] == "config"  # nothing restarted


def test_follow_an_apps_logs_while_it_logs(dash: Dash, browser: webdriver.Chrome) -> None:
    browser.get(dash.link("alice"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    browser.get(f"{dash.base}/apps/{dash.app}/logs")
    settled(browser, 10).until(lambda d: d.find_element(By.ID, "log-state").text == "following")
    container = next(r["name"] for r in json.loads(dash.paas.run("ps", dash.app, "--json").stdout)
                     if r["process"] == "web" and r["state"] == "running")
    marker = f"dashboard-live-{time.time_ns()}"
    # The app's own process prints a line (its stdout is PID 1's): the browser shows it without a reload.
    printed = subprocess.run(["docker", "exec", container, "sh", "-c", f"echo {marker} > /proc/1/fd/1"],
                             capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr + printed.stdout
    settled(browser, 10).until(lambda d: marker in d.find_element(By.ID, "log").text)
    # The stream survives a reconnect: the dashboard killed, a line printed while it is down, the dashboard back
    # (ps:restore); the browser goes on after its last line: the new line once, the old one not again.
    pid = int((dash.paas.home / "nginx" / "run" / "dashboard.pid").read_text())
    os.kill(pid, 9)
    settled(browser, 10).until(lambda d: "reconnecting" in d.find_element(By.ID, "log-state").text)
    missed = f"dashboard-missed-{time.time_ns()}"
    printed = subprocess.run(["docker", "exec", container, "sh", "-c", f"echo {missed} > /proc/1/fd/1"],
                             capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr + printed.stdout
    assert "dashboard: started" in dash.paas.run("ps:restore").stdout
    settled(browser, 30).until(lambda d: missed in d.find_element(By.ID, "log").text)
    text = browser.find_element(By.ID, "log").text
    assert text.count(marker) == 1 and text.count(missed) == 1, text[-2000:]
    # What the browser said meanwhile: the cut stream and nginx's 503s while the dashboard was down, nothing else.
    said = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all(re.search(r"503|ERR_INCOMPLETE_CHUNKED|MIME type", m) for m in said), said


def test_stop_and_start_a_review_app_as_an_admin(dash: Dash, browser: webdriver.Chrome) -> None:
    host = f"feature-login.{dash.app}.paas.test"
    assert dash.paas.get("", host=host).status == 200
    browser.get(dash.link("alice"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    browser.get(f"{dash.base}/apps/{dash.review}")
    browser.find_element(By.CSS_SELECTOR, "button.stop").click()
    settled(browser, 60).until(lambda d: "Stopped." in d.page_source or heading(d).isdigit())
    assert "(stopped)" in browser.find_element(By.TAG_NAME, "main").text
    assert dash.paas.get("", host=host).status == 503
    browser.find_element(By.CSS_SELECTOR, "button.start").click()
    settled(browser, 60).until(lambda d: "Started." in d.page_source or heading(d).isdigit())
    assert dash.paas.get("", host=host).status == 200
    assert dash.paas.get(dash.app).status == 200  # the app itself went on serving


def test_watch_a_pushs_lines_appear_while_the_push_runs(dash: Dash, browser: webdriver.Chrome) -> None:
    browser.get(dash.link("dave"))  # a deployer granted the app sees its pushes
    settled(browser, 10).until(ec.title_contains("Apps"))
    checkout = dash.paas.work / f"{dash.app}-src"
    # A release step that takes a while (a migration, say): the push runs long enough to be watched running.
    (checkout / "Procfile").write_text("web: node server.js\nrelease: sleep 6\n")
    commit(checkout, "watched push")
    push_log = dash.paas.home / "logs" / "pushes" / f"{dash.app}.log"
    before = push_log.read_text()  # the review app's push, in the fixture

    def building() -> bool:
        text = push_log.read_text()
        return text != before and f"Building {dash.app} " in text

    result: list[subprocess.CompletedProcess[str]] = []
    pusher = threading.Thread(target=lambda: result.append(dash.paas.push(checkout)))
    pusher.start()
    try:
        # Opened once the push has begun (late: its first lines come from the log's start).
        wait_for(building, "the push to build", 120)
        browser.get(f"{dash.base}/apps/{dash.app}/push")
        log = browser.find_element(By.ID, "log")
        seen_running = False
        deadline = time.monotonic() + 300
        while "push finished" not in log.text and time.monotonic() < deadline:
            seen_running = seen_running or (pusher.is_alive() and f"push to {dash.app}" in log.text
                                            and browser.find_element(By.ID, "log-state").text == "following")
            time.sleep(0.1)
        assert seen_running, (f"the page never followed the push while it ran: "
                              f"{browser.find_element(By.ID, 'log-state').text!r}\n{log.text}")
        settled(browser, 10).until(lambda d: d.find_element(By.ID, "log-state").text == "finished")
    finally:
        pusher.join(timeout=600)
    assert result and result[0].returncode == 0
    text = log.text
    assert "push finished: deployed" in text and text.index(f"push to {dash.app}") < text.index("push finished")
    # The same lines the pusher saw (git prefixes them with `remote:`).
    for line in result[0].stderr.splitlines():
        said = line.removeprefix("remote:").strip()
        if said.startswith("----->"):
            assert said in text


def test_roll_back_as_an_admin_and_the_old_release_is_served(dash: Dash, browser: webdriver.Chrome) -> None:
    assert dash.paas.get(dash.app).body.startswith("Bonjour from minipaas")
    browser.get(dash.link("alice"))
    settled(browser, 10).until(ec.title_contains("Apps"))
    browser.get(f"{dash.base}/apps/{dash.app}")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-release="1"] button.rollback').click()
    settled(browser, 180).until(lambda d: "Rolled back." in d.page_source or heading(d).isdigit())
    assert "Rolled back." in browser.page_source, browser.find_element(By.TAG_NAME, "main").text
    newest = max(r["number"] for r in json.loads(dash.paas.run("releases", dash.app, "--json").stdout))
    assert browser.find_element(By.ID, "live-release").text == str(newest)
    assert dash.paas.get(dash.app).body.startswith("Hello from minipaas")
    done = [e for e in dash.events() if str(e["command"]).startswith("dashboard: releases:rollback")]
    assert done and done[0]["user"] == "alice" and done[0]["outcome"] == "ok"


def test_report_shows_the_dashboard_and_ps_restore_brings_it_back(dash: Dash) -> None:
    pid_file = dash.paas.home / "nginx" / "run" / "dashboard.pid"
    pid = int(pid_file.read_text())
    assert f"dashboard: running (pid {pid})" in dash.paas.run("report").stdout
    os.kill(pid, 9)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
             "the dashboard to die", 10)
    assert dash.paas.get("", host="dashboard.paas.test").status == 503  # nginx says so plainly
    assert "dashboard: not running" in dash.paas.run("report").stdout
    assert "dashboard: started" in dash.paas.run("ps:restore").stdout
    wait_for(lambda: dash.paas.get("", host="dashboard.paas.test").status == 401, "the dashboard to answer", 30)
    assert int(pid_file.read_text()) != pid


def https_get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    """A request to the dashboard over HTTPS (its self-signed certificate not checked: the test made it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # The name in TLS (SNI) too, as a browser sends it: nginx picks the dashboard's certificate by it.
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                                    server_hostname="dashboard.paas.test")
    try:
        conn.request("GET", path, headers={"Host": f"dashboard.paas.test:{port}"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def test_the_dashboard_over_https_with_a_certificate_of_its_own(dash: Dash) -> None:
    """Last: certs:generate @dashboard switches the dashboard's vhost to HTTPS (then certs:remove, back)."""
    port = dash.paas.https_port
    made = dash.paas.run("certs:generate", "@dashboard")
    assert "dashboard.paas.test" in made.stdout
    try:
        plain = dash.paas.get("", host="dashboard.paas.test")
        assert plain.status == 301 and plain.headers["location"].startswith(f"https://dashboard.paas.test:{port}/")
        link = dash.sshd.ssh("alice", "dashboard:login").stdout.strip()
        assert link.startswith(f"https://dashboard.paas.test:{port}/login/"), link
        status, headers, _ = https_get(port, link.split(str(port), 1)[1])
        cookie = headers["set-cookie"]
        assert status == 200 and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert headers["strict-transport-security"].startswith("max-age=")
        assert "@dashboard" in dash.paas.run("certs", "@dashboard").stdout
    finally:
        dash.paas.run("certs:remove", "@dashboard")
    assert dash.paas.get("", host="dashboard.paas.test").status == 401  # plain HTTP again
