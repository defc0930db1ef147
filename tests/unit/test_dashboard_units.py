"""The dashboard without an engine: Starlette's TestClient against a home of its own, its keys, apps and releases
as SQLite rows. Login links (one use, 5 minutes, forged), sessions of a removed or replaced key, what a deployer
sees, CSRF and cross-site POSTs, the security headers on every response, bad input as a plain 4xx page, and the
`dashboard:*` commands. Fast tier: no engine, no nginx (ps and disk are replaced by nothing)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("starlette", reason="needs starlette (pip install -e '.[test]')")
pytest.importorskip("httpx", reason="needs httpx for Starlette's TestClient")

from starlette.testclient import TestClient

from minipaas.access import sessions
from minipaas.dashboard import actions, web
from minipaas.state import store
from minipaas.state.settings import load
from tests.helpers.dashboard import BASE, Home, client, fingerprint, logged_in


def test_a_link_logs_in_once_and_sets_a_strict_httponly_cookie(home: Home) -> None:
    admin = home.key("alice", "admin")
    c = client(home)
    assert c.get("/").status_code == 401  # no session: not logged in
    token = sessions.mint_link(home.host, admin)
    page = c.get(f"/login/{token}")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under HTTPS it is Secure:
    apps = c.get("/")
    assert apps.status_code == 200 and "shop" in apps.text and "feature/x" in apps.text and "blog" in apps.text
    assert client(home).get(f"/login/{token}").status_code == 403  # used already
    again = client(home).get(f"/login/{sessions.mint_link(home.host, admin)}", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in again.headers["set-cookie"]
    # Only the token's hash is stored.
    stored = [row[0] for row in home.host.db.execute("SELECT token_hash FROM dashboard_links")]
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored


def test_an_expired_or_forged_link_is_refused_with_a_plain_page(home: Home) -> None:
    admin = home.key("alice", "admin")
    old = sessions.mint_link(home.host, admin, now=store.now() - sessions.LINK_SECONDS - 1)
    c = client(home)
    expired = c.get(f"/login/{old}")
    assert expired.status_code == 403 and "expired" in expired.text and "Traceback" not in expired.text
    assert "set-cookie" not in expired.headers
    forged = c.get("/login/" + "A" * 43)
    assert forged.status_code == 403 and "not a login link" in forged.text
    assert c.get("/login/short").status_code == 403
    fresh = sessions.mint_link(home.host, admin)
    assert c.get(f"/login/{fresh}").status_code == 200  # the honest link still works


def test_removing_or_replacing_the_key_ends_its_sessions_at_once(home: Home) -> None:
    bob = home.key("bob", "admin")
    c, _csrf = logged_in(home, bob)
    assert c.get("/").status_code == 200
    with store.transaction(home.host.db) as db:
        db.execute("UPDATE ssh_keys SET fingerprint = ? WHERE name = 'bob'", (fingerprint("another"),))
    replaced = c.get("/")
    assert replaced.status_code == 401 and "replaced" in replaced.text
    carol = home.key("carol", "admin")
    c2, _ = logged_in(home, carol)
    with store.transaction(home.host.db) as db:
        db.execute("DELETE FROM ssh_keys WHERE name = 'carol'")
    assert c2.get("/").status_code == 401
    assert c2.get("/apps/shop").status_code == 401


def test_a_deployer_sees_its_granted_apps_only_and_no_config_value(home: Home) -> None:
    dave = home.key("dave", "deployer", "shop")
    c, _ = logged_in(home, dave)
    apps = c.get("/").text
    assert "shop" in apps and "feature/x" in apps and "blog" not in apps
    page = c.get("/apps/shop")
    assert page.status_code == 200 and "DATABASE_URL" in page.text and "s3cret" not in page.text
    assert "Show values" not in page.text and "Roll back" not in page.text
    assert c.get("/apps/shop?values=1").status_code == 403
    assert c.get("/apps/shop--feature-x").status_code == 200  # a grant covers the app's review apps
    hidden = c.get("/apps/blog")
    assert hidden.status_code == 404  # not said to exist
    assert c.get("/host").status_code == 403
    # Revoking the grant hides the app on the next request.
    with store.transaction(home.host.db) as db:
        db.execute("DELETE FROM key_grants WHERE name = 'dave'")
    assert c.get("/apps/shop").status_code == 404 and "shop" not in c.get("/").text.split("<main>")[1]


def test_an_admin_sees_config_values_only_on_request(home: Home) -> None:
    c, _ = logged_in(home, home.key("alice", "admin"))
    page = c.get("/apps/shop")
    assert "DATABASE_URL" in page.text and "s3cret" not in page.text and "Show values" in page.text
    assert "postgres://s3cret" in c.get("/apps/shop?values=1").text


def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(home: Home,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    alice = home.key("alice", "admin")
    c, csrf = logged_in(home, alice)
    before = home.host.db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert c.post("/apps/shop/restart", data={}).status_code == 403
    assert c.post("/apps/shop/restart", data={"csrf": "x" * 43}).status_code == 403
    cross = c.post("/apps/shop/restart", data={"csrf": csrf}, headers={"Origin": "http://evil.test"})
    assert cross.status_code == 403 and "another site" in cross.text
    assert c.post("/apps/shop/restart", data={"csrf": csrf},
                  headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client(home).post("/apps/shop/restart", data={"csrf": csrf}).status_code == 401  # no cookie
    assert home.host.db.execute("SELECT count(*) FROM events").fetchone()[0] == before  # nothing was run
    # The honest form passes the checks and runs the ssh command's own CLI (here a stand-in: no engine), named after
    # the key, and the audit log has it, marked as the dashboard's.
    ran: list[tuple[list[str], str]] = []

    def execute(argv: list[str], *, home: str, user: str) -> subprocess.CompletedProcess[str]:
        ran.append((argv, user))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(actions, "execute", execute)
    honest = c.post("/apps/shop/rollback", data={"csrf": csrf, "release": "1"}, headers={"Origin": BASE})
    assert honest.status_code == 303 and honest.headers["location"] == "/apps/shop?done=rollback", honest.text
    assert ran == [(["releases:rollback", "shop", "1"], "alice")]
    event = home.host.db.execute("SELECT user, app, command, outcome FROM events ORDER BY id DESC").fetchone()
    assert tuple(event) == ("alice", "shop", "dashboard: releases:rollback shop 1", "ok")
    assert "Rolled back." in c.get(honest.headers["location"]).text


def test_a_same_origin_post_on_another_port_passes(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """nginx passes the Host the browser sent, port and all (`$http_host`): a form's Origin matches it."""
    monkeypatch.setattr(actions, "execute", lambda argv, **_: subprocess.CompletedProcess(argv, 0, "", ""))
    alice = home.key("alice", "admin")
    c = TestClient(web.create_app(home.host.settings), base_url=BASE + ":8080", follow_redirects=False)
    c.get(f"/login/{sessions.mint_link(home.host, alice)}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
    assert csrf is not None
    headers = {"Origin": BASE + ":8080", "Sec-Fetch-Site": "same-origin"}
    assert c.post("/apps/shop/restart", data={"csrf": csrf.group(1)}, headers=headers).status_code == 303
    assert c.post("/apps/shop/restart", data={"csrf": csrf.group(1)},
                  headers={**headers, "Origin": BASE}).status_code == 403  # another port is another origin


def test_server_sent_events_are_one_line_each() -> None:
    from minipaas.dashboard import live
    from minipaas.errors import NotFound
    from minipaas.running import logcursor

    def stamped() -> Iterator[tuple[str, int | None, bytes]]:
        yield "web-1", 1, b"first"
        yield "web-1", 2, b"second\r"
        yield "web-1", 3, b"<script>x</script>"
        raise NotFound("gone")

    events = b"".join(live.stamped_sse(stamped(), logcursor.Cursor())).decode()
    assert events == ("retry: 2000\n\nid: t0,web-1:1.1\ndata: first\n\nid: t0,web-1:2.1\ndata: second\n\n"
                      "id: t0,web-1:3.1\ndata: <script>x</script>\n\nevent: problem\ndata: gone\n\n")


@pytest.mark.parametrize(("action", "form", "argv"), [
    ("restart", {}, ["ps:restart", "shop--feature-x"]),
    ("stop", {}, ["ps:stop", "shop--feature-x"]),
    ("start", {}, ["ps:start", "shop--feature-x"]),
    ("scale", {"process": "web", "count": "2"}, ["ps:scale", "shop--feature-x", "web=2"]),
    ("rollback", {"release": "1"}, ["releases:rollback", "shop--feature-x", "1"]),
])
def test_each_action_is_its_ssh_command(home: Home, monkeypatch: pytest.MonkeyPatch, action: str,
                                        form: dict[str, str], argv: list[str]) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(actions, "execute",
                        lambda argv, **_: ran.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""))
    c, csrf = logged_in(home, home.key("alice", "admin"))
    done = c.post(f"/apps/shop--feature-x/{action}", data={"csrf": csrf, **form})
    assert done.status_code == 303 and ran == [argv]
    event = home.host.db.execute("SELECT command, outcome FROM events ORDER BY id DESC").fetchone()
    assert tuple(event) == (f"dashboard: {' '.join(argv)}", "ok")


@pytest.mark.parametrize(("action", "form"), [
    ("scale", {"process": "web; rm -rf /", "count": "2"}),
    ("scale", {"process": "web", "count": "-1"}),
    ("rollback", {"release": "1 --force"}),
    ("rollback", {"release": "0"}),
])
def test_an_actions_bad_values_are_refused_before_anything_runs(home: Home, monkeypatch: pytest.MonkeyPatch,
                                                                 action: str, form: dict[str, str]) -> None:
    monkeypatch.setattr(actions, "execute", lambda *a, **k: pytest.fail("an action ran"))
    c, csrf = logged_in(home, home.key("alice", "admin"))
    assert c.post(f"/apps/shop/{action}", data={"csrf": csrf, **form}).status_code == 400


def test_a_deployer_may_not_act(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "execute", lambda *a, **k: pytest.fail("a deployer's action ran"))
    c, csrf = logged_in(home, home.key("dave", "deployer", "shop"))
    refused = c.post("/apps/shop/restart", data={"csrf": csrf})
    assert refused.status_code == 403 and "deployer" in refused.text
    outcome = home.host.db.execute("SELECT outcome FROM events ORDER BY id DESC").fetchone()[0]
    assert outcome.startswith("refused")


@pytest.mark.parametrize("path", ["/apps/shop", "/", "/login/" + "A" * 43, "/static/dashboard.css", "/nope",
                                  "/apps/%ff", "/?q=" + "a" * 5000])
def test_every_response_carries_the_security_headers(home: Home, path: str) -> None:
    response = client(home).get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize(("path", "status"), [
    ("/apps/%ff%fe", 400),  # not UTF-8
    ("/?q=%ff", 400),
    ("/?q=" + "a" * 5000, 414),
    ("/" + "a" * 3000, 414),
    ("/apps/a%00b", 400),
    ("/apps/..%2f..%2fetc", 404),
    ("/apps/nosuchapp", 404),
    ("/apps/UPPER", 404),
    ("/nothing/here", 404),
])
def test_bad_input_gets_a_plain_4xx_page(home: Home, path: str, status: int) -> None:
    c, _ = logged_in(home, home.key("alice", "admin"))
    response = c.get(path)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and response.headers["content-type"].startswith("text/html")


def test_a_huge_body_is_refused(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "execute", lambda *a, **k: pytest.fail("an action ran"))
    c, csrf = logged_in(home, home.key("alice", "admin"))
    response = c.post("/apps/shop/scale", data={"csrf": csrf, "process": "web", "count": "1", "pad": "x" * 70000})
    assert response.status_code == 413


def test_pages_hold_no_inline_script(home: Home) -> None:
    c, _ = logged_in(home, home.key("alice", "admin"))
    for path in ("/", "/apps/shop", "/apps/shop?values=1"):
        text = c.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == [] and " on" not in re.sub(r">[^<]*<", "><", text)
        assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/dashboard.js" defer>']


def test_the_filter_narrows_the_apps(home: Home) -> None:
    c, _ = logged_in(home, home.key("alice", "admin"))
    text = c.get("/?q=feature").text.split("</form>", 2)[2]
    assert "shop" in text and "blog" not in text
    assert "No app matches" in c.get("/?q=zzz").text


def test_the_host_page_is_an_admins(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("minipaas.build.stacks.listing", lambda home: [
        {"image": "minipaas/node:22.1.0", "version": "22.1.0", "also": [], "size": 200 << 20, "apps": ["shop"],
         "other_apps": 0}])
    monkeypatch.setattr("minipaas.running.gc.collect",
                        lambda host, *, dry_run, progress, only=None: progress("would remove minipaas/shop:1"))
    from minipaas.access import events

    events.finish(home.host, events.start(home.host, user="bob", fingerprint="", app="shop",
                                          command="ps:restart shop"), "ok")
    c, _ = logged_in(home, home.key("alice", "admin"))
    text = c.get("/host").text
    assert "minipaas/node:22.1.0" in text and "would remove minipaas/shop:1" in text
    assert "<code>ps:restart shop</code>" in text
    deployer, _ = logged_in(home, home.key("dave", "deployer", "shop"))
    assert deployer.get("/host").status_code == 403


def test_the_host_page_lists_services_and_their_backups(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("minipaas.build.stacks.listing", lambda home: [])
    monkeypatch.setattr("minipaas.running.gc.collect", lambda host, *, dry_run, progress, only=None: None)
    from minipaas.addons import backups
    from minipaas.state import services

    with store.transaction(home.host.db) as db:
        for kind, name in (("postgres", "shopdb"), ("redis", "cache")):
            db.execute("INSERT INTO services (kind, name, version, password, created_at) VALUES (?, ?, '16', 'pw', ?)",
                       (kind, name, store.now()))
    kept = backups.folder(home.host, services.require(home.host, "postgres", "shopdb"))
    (kept / "20261201T020000Z.dump").write_bytes(b"x" * 12_000)
    (kept / "20261202T020000Z.dump").write_bytes(b"x" * 3_000)
    (kept / "20261202T020000Z.dump.sha256").write_text("not a backup itself\n")
    c, _ = logged_in(home, home.key("alice", "admin"))
    text = c.get("/host").text
    rows = re.findall(r'<tr data-service="([^"]+)">(.*?)</tr>', text)
    assert [r[0] for r in rows] == ["postgres:shopdb", "postgres:shopdb", "redis:cache"]
    # Newest first, as `postgres:backups` lists them: file, size, time; the checksum file is not a backup.
    assert "<code>20261202T020000Z.dump</code></td><td>3 kB</td><td>2026-12-02 02:00 UTC" in rows[0][1]
    assert "<code>20261201T020000Z.dump</code></td><td>12 kB</td><td>2026-12-01 02:00 UTC" in rows[1][1]
    assert "sha256" not in text and "no backup (<code>redis:backup cache</code>" in rows[2][1]


def test_logout_ends_the_session(home: Home) -> None:
    c, csrf = logged_in(home, home.key("alice", "admin"))
    assert c.post("/logout", data={"csrf": csrf}).status_code == 303
    assert c.get("/").status_code == 401


def run_cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minipaas", *args], env=home.env, capture_output=True, text=True,
                          timeout=60)


def test_dashboard_commands_on_the_host(home: Home) -> None:
    home.key("alice", "admin")
    refused = run_cli(home, "dashboard:login")
    assert refused.returncode == 1 and "--key NAME" in refused.stderr
    minted = run_cli(home, "dashboard:login", "--key", "alice")
    assert minted.returncode == 0, minted.stderr
    link = minted.stdout.strip()
    assert re.fullmatch(r"http://dashboard\.paas\.test/login/[A-Za-z0-9_-]{43}", link), link
    c = client(home)
    assert c.get(link.removeprefix("http://dashboard.paas.test")).status_code == 200
    listed = run_cli(home, "dashboard:sessions")
    assert listed.returncode == 0 and "alice" in listed.stdout
    ended = run_cli(home, "dashboard:logout-all", "--key", "alice")
    assert ended.returncode == 0 and "Ended 1 dashboard session" in ended.stdout
    assert c.get("/").status_code == 401
    assert run_cli(home, "dashboard:login", "--key", "nobody").returncode == 1


def test_dashboard_domain_setting(home: Home) -> None:
    assert load({**home.env, "MINIPAAS_DASHBOARD_DOMAIN": "ops.example.com"}).dashboard_host == "ops.example.com"
    assert load(home.env).dashboard_host == "dashboard.paas.test"
    with pytest.raises(Exception, match="MINIPAAS_DASHBOARD_DOMAIN"):
        load({**home.env, "MINIPAAS_DASHBOARD_DOMAIN": "bad domain!"})


def test_a_pushs_log_streams_from_any_offset_and_ends_with_the_push(home: Home) -> None:
    from minipaas.dashboard import live
    from minipaas.deploy import pushlog
    from minipaas.progress import Lines

    settings = home.host.settings
    assert pushlog.read_from(settings, "shop", 0) is None
    say = Lines(open(os.devnull, "w"))  # noqa: SIM115 (the pusher's side, not under test)
    log = pushlog.start(settings, "shop")
    say.copy_to(log)
    say("-----> Building shop")
    say("       npm ci")
    c, _ = logged_in(home, home.key("alice", "admin"))
    refresh = '<noscript><meta http-equiv="refresh" content="5"></noscript>'
    assert refresh in c.get("/apps/shop/push").text  # a running push's page, without JavaScript, reloads
    events = live.push_events(settings, "shop", 0)
    got = [next(events) for _ in range(4)]  # retry, the start line, the two lines said
    assert got[2].startswith(b"id: ") and got[2].endswith(b"data: -----> Building shop\n\n")
    offset = int(got[3].split(b"\n")[0].removeprefix(b"id: "))
    say.copy_to(None)
    pushlog.finish(log, True)
    rest = b"".join(events)
    assert rest.endswith(b"data: =====> push finished: deployed\n\nevent: end\ndata: finished\n\n")
    # A reconnect with Last-Event-ID goes on from there, through the HTTP route too.
    again = c.get("/apps/shop/push/stream", headers={"Last-Event-ID": str(offset)}).text
    assert "npm ci" not in again and "push finished: deployed" in again
    page = c.get("/apps/shop/push").text
    assert "Building shop" in page and 'id="log-state" role="status">finished' in page and refresh not in page
    # A new push starts the log anew: a reader past its end is told so and reads it from its start.
    pushlog.finish(pushlog.start(settings, "shop"), False)
    anew = b"".join(live.push_events(settings, "shop", offset + 1000))
    assert b"event: reset" in anew and anew.endswith(b"rejected\n\nevent: end\ndata: finished\n\n")
    deployer, _ = logged_in(home, home.key("dave", "deployer", "blog"))
    assert deployer.get("/apps/shop/push").status_code == 404


def test_a_releases_page_shows_its_build_log(home: Home) -> None:
    with store.transaction(home.host.db) as db:
        db.execute("UPDATE releases SET build_log = '-----> npm ci\n<b>added 3 packages</b>' "
                   "WHERE app = 'shop' AND number = 2")
    c, _ = logged_in(home, home.key("dave", "deployer", "shop"))
    page = c.get("/apps/shop/releases/2")
    assert page.status_code == 200 and "-----&gt; npm ci" in page.text
    assert "&lt;b&gt;added 3 packages&lt;/b&gt;" in page.text  # the log is text, escaped
    assert 'href="/apps/shop/releases/2"' in c.get("/apps/shop").text
    # `²` and `٣` are digits to str.isdigit(), not to int(): a plain 404, not a failed page.
    for bad in ("/apps/shop/releases/9", "/apps/shop/releases/x1", "/apps/shop/releases/" + "9" * 30,
                "/apps/blog/releases/1", "/apps/shop/releases/%C2%B2", "/apps/shop/releases/%D9%A3"):
        assert c.get(bad).status_code == 404, bad


def test_a_chunked_body_past_the_limit_is_refused(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "execute", lambda *a, **k: pytest.fail("an action ran"))
    c, csrf = logged_in(home, home.key("alice", "admin"))

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield f"csrf={csrf}&process=web&count=1&pad=".encode()
        for _ in range(20):
            yield b"x" * 8192

    response = c.post("/apps/shop/scale", content=chunks(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413 and "too large" in response.text


def test_an_app_page_shows_its_canary_and_what_the_guard_did(home: Home) -> None:
    """A running canary's share and step, and the guard's last verdicts with their figures (events)."""
    from minipaas.access import events
    from minipaas.state import canaries

    with store.transaction(home.host.db) as db:
        db.execute("INSERT INTO releases (app, number, kind, sha, image, buildpack, status, pusher, created_at, tests) "
                   "VALUES ('shop', 3, 'build', '3abcdef', '', 'node', 'building', 'alice', ?, 'passed')",
                   (store.now(),))
    canaries.record(home.host, "shop", release=3, stable=2, steps=(10, 50, 100), by="alice")
    events.record(home.host, app="shop", command="canary:step shop 3 50%",
                  outcome="release 3: 0.0% 5xx, p95 12 ms over 240 requests")
    events.record(home.host, app="blog", command="canary:abort blog 7", outcome="5xx 20.1% > 1.3%")
    c, _ = logged_in(home, home.key("dave", "deployer", "shop"))
    page = c.get("/apps/shop").text
    assert "<h2>Canary</h2>" in page
    assert "release 3 takes 10% of new clients beside release 2, step 1 of 3" in page
    assert "canary:step shop 3 50%" in page and "p95 12 ms over 240 requests" in page
    assert "canary:abort blog 7" not in page  # another app's
    assert "<h2>Canary</h2>" not in c.get("/apps/shop--feature-x").text  # none there
