"""Notifications' pure parts (issue 25): parsing a notification, matching events, redacting URLs, the bodies sent;
and the outbox as the audit log fills it (SQLite in a home of its own; nothing is sent here: the engine tests'
receiver, tests/engine/test_notify.py)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minipaas.access import access, events, notify
from minipaas.access.access import PermissionDenied, Principal
from minipaas.adapters.engine import swarm
from minipaas.errors import InvalidInput
from minipaas.running import diskfree, notifywatch, taskwatch
from minipaas.state import notifications
from minipaas.state.names import check_notification
from tests.helpers.dashboard import Home
from tests.helpers.faults import wait_for
from tests.helpers.host import assert_one_line_refusal
from tests.helpers.receiver import receiver

SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"


def note(name: str = "ops", *, app: str = "", events: tuple[str, ...] = notify.EVENTS,
         kind: str = "webhook") -> notifications.Notification:
    return notifications.Notification(name=name, kind=kind, url="https://example.com/hook?token=s3cret", app=app,
                                      events=events)


def event(**changes: object) -> notify.Event:
    fields: dict[str, object] = {"event": "deploy", "app": "shop", "release": 7, "message": "release 7 is live",
                                 "at": 1_765_152_000.0, "host": "paas.example.com"}
    fields.update(changes)
    return notify.Event(**fields)  # type: ignore[arg-type]


# -- parsing ----------------------------------------------------------------------------------

def test_events_parse_in_their_order_and_default_to_all() -> None:
    assert notify.parse_events(None) == notify.EVENTS
    assert notify.parse_events("crash, deploy") == ("deploy", "crash")
    assert notify.parse_events("cron-failed") == ("cron-failed",)


@pytest.mark.parametrize("given", ["deploys", "deploy,oops", ",", "", "DEPLOY", "deploy\ncrash\x1b[2J"])
def test_an_unknown_event_is_one_line(given: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        notify.parse_events(given)
    assert_one_line_refusal(refused.value)
    assert "unknown event" in refused.value.message


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_kinds(kind: str) -> None:
    assert notify.parse_kind(kind) == kind


@pytest.mark.parametrize("kind", ["email", "Slack", "", "webhook\n"])
def test_an_unknown_kind_is_one_line(kind: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        notify.parse_kind(kind)
    assert_one_line_refusal(refused.value)


@pytest.mark.parametrize("url", [SLACK, "https://example.com", "https://u:p@example.com:8443/x?t=1",
                                 "http://127.0.0.1:8080/hook", "http://localhost/x", "http://[::1]:9/x",
                                 "http://127.3.2.1/"])
def test_urls_allowed(url: str) -> None:
    assert notify.check_url(url) == url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/shadow", "gopher://127.0.0.1/", "example.com",
                                 "https://", "http://example.com/hook", "http://10.0.0.5/hook",
                                 "http://127.0.0.1.example.com/", "https://example.com:99999/", "https://a b/",
                                 "https://example.com/\nx", "https://example.com/" + "x" * 3000,
                                 "javascript:alert(1)"])
def test_urls_refused_in_one_line_without_their_secret(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        notify.check_url(url)
    assert_one_line_refusal(refused.value)
    assert "hook" not in refused.value.message and "xxxx" not in refused.value.message


def test_names_are_checked_as_app_names() -> None:
    assert check_notification("ops-team") == "ops-team"
    for bad in ("Ops", "-ops", "ops-", "a" * 64, "ops/../x", ""):
        with pytest.raises(InvalidInput) as refused:
            check_notification(bad)
        assert_one_line_refusal(refused.value)


# -- redaction --------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    (SLACK, "https://hooks.slack.com/…"),
    ("https://example.com", "https://example.com"),
    ("https://example.com/", "https://example.com"),
    ("https://example.com?token=abc", "https://example.com/…"),
    ("https://example.com/#abc", "https://example.com/…"),
    ("https://user:pass@example.com:8443/a", "https://…@example.com:8443/…"),
    ("https://token@example.com", "https://…@example.com"),
    ("http://[::1]:8080/x", "http://[::1]:8080/…"),
    ("not a url", "<unparsable URL>"),
    ("https://example.com:99999/x", "<unparsable URL>"),
])
def test_redacted_shows_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert notify.redacted(url) == shown


# -- matching ---------------------------------------------------------------------------------

def test_matching_by_event_and_app() -> None:
    every = note()
    shop_deploys = note(app="shop", events=("deploy", "deploy-failed"))
    assert notify.matches(every, "crash", "blog")
    assert notify.matches(shop_deploys, "deploy", "shop")
    assert notify.matches(shop_deploys, "deploy", "shop--feature-x")  # its review apps'
    assert not notify.matches(shop_deploys, "deploy", "shopping")
    assert not notify.matches(shop_deploys, "deploy", "blog")
    assert not notify.matches(shop_deploys, "crash", "shop")
    assert notify.matches(note(app="shop", events=("node-down",)), "node-down", "")  # the host's own event


# -- bodies -----------------------------------------------------------------------------------

def test_webhook_body() -> None:
    body = json.loads(notify.body("webhook", event()))
    assert body == {"event": "deploy", "app": "shop", "release": 7, "message": "release 7 is live",
                    "at": "2025-12-08T00:00:00Z", "host": "paas.example.com",
                    "summary": "[paas.example.com] deploy: shop release 7: release 7 is live"}


def test_slack_body_is_one_readable_line() -> None:
    assert json.loads(notify.body("slack", event(event="crash", release=None, message="abc123: die (exit code 1)"))) \
        == {"text": "[paas.example.com] crash: shop: abc123: die (exit code 1)"}
    assert json.loads(notify.body("slack", event(event="node-down", app="", release=None, message="node2"))) \
        == {"text": "[paas.example.com] node-down: paas.example.com: node2"}


# -- the outbox, as the audit log fills it ---------------------------------------------------------

def test_host_events_fill_the_outbox_of_the_notifications_that_want_them(home: Home) -> None:
    notifications.add(home.host, note("all"))
    notifications.add(home.host, note("shop-deploys", app="shop", events=("deploy",), kind="slack"))
    events.record(home.host, app="shop", command="deploy shop 3", outcome="release 3 is live", release=3)
    events.record(home.host, app="blog", command="crash blog abc", outcome="die")
    events.record(home.host, app="blog", command="config:set blog", outcome="ok")  # no notification's event
    waiting = [(p.notification, p.event, p.app, p.release) for p in notifications.due(home.host)]
    assert waiting == [("all", "deploy", "shop", 3), ("shop-deploys", "deploy", "shop", 3),
                       ("all", "crash", "blog", None)]
    # the audit log has them too
    assert [e["command"] for e in events.listing(home.host)][:3] == ["config:set blog", "crash blog abc",
                                                                    "deploy shop 3"]


def test_a_command_over_ssh_is_never_taken_for_an_event(home: Home) -> None:
    notifications.add(home.host, note("all"))
    events.finish(home.host, events.start(home.host, user="eve", fingerprint="SHA256:x", app="shop",
                                          command="deploy shop 99"), "refused: unknown command")
    assert notifications.due(home.host) == []


def test_failures_retry_then_drop_and_removal_empties_the_outbox(home: Home) -> None:
    notifications.add(home.host, note("all"))
    notifications.add(home.host, note("other"))
    events.record(home.host, app="shop", command="deploy shop 3", outcome="live", release=3)
    first = next(p for p in notifications.due(home.host) if p.notification == "all")
    notifications.failed(home.host, first, "all", "HTTP 500 Internal Server Error", retry_at=first.at + 3600)
    assert [p.notification for p in notifications.due(home.host)] == ["other"]  # not due again yet
    assert notifications.waiting(home.host, "all") == 1
    shown = notifications.get(home.host, "all")
    assert shown.failure == "HTTP 500 Internal Server Error" and shown.failed_at is not None
    notifications.failed(home.host, first, "all", "no answer within 5 s", retry_at=None)
    assert notifications.waiting(home.host, "all") == 0
    assert notifications.get(home.host, "all").failure == "no answer within 5 s"
    notifications.remove(home.host, "other")
    assert notifications.due(home.host) == []


# -- the events the watcher finds: a disk that runs low, a node that goes down --------------------------

def test_a_disk_is_low_once_each_time_it_crosses_the_line() -> None:
    gib = 1024**3
    home, engine_root = Path("/home"), Path("/var/lib/docker")
    was: set[Path] = set()
    assert diskfree.newly_low(was, {home: (100 * gib, 50 * gib), engine_root: (100 * gib, 11 * gib)}) == []
    assert diskfree.newly_low(was, {home: (100 * gib, 9 * gib), engine_root: (100 * gib, 11 * gib)}) == [home]
    assert diskfree.newly_low(was, {home: (100 * gib, 8 * gib), engine_root: (100 * gib, 11 * gib)}) == []
    assert diskfree.newly_low(was, {home: (100 * gib, 30 * gib), engine_root: (100 * gib, 11 * gib)}) == []
    assert diskfree.newly_low(was, {home: (100 * gib, 9 * gib), engine_root: (8 * gib, 1 * gib)}) \
        == [home, engine_root]  # again, and a small disk under 2 GiB free
    assert diskfree.human(1536 * 1024**2) == "1.5G" and diskfree.human(512) == "512B"


def node(id: str, status: str) -> swarm.NodeInfo:
    return swarm.NodeInfo(id=id, hostname=f"host-{id}", role="worker", status=status, availability="active",
                          address="10.0.0.2", leader=False, engine="20.10")


def test_a_node_is_down_once_when_it_goes_down() -> None:
    states: dict[str, str] = {}
    assert taskwatch.newly_down(states, [node("a", "ready"), node("b", "down")]) == []  # down before the watcher
    assert [n.id for n in taskwatch.newly_down(states, [node("a", "down"), node("b", "down")])] == ["a"]
    assert taskwatch.newly_down(states, [node("a", "down"), node("b", "ready")]) == []
    assert [n.id for n in taskwatch.newly_down(states, [node("a", "ready"), node("b", "down")])] == ["b"]


def test_notifications_are_an_admins() -> None:
    deployer = Principal(name="dev", role="deployer", fingerprint="SHA256:x", apps=frozenset({"shop"}))
    for command in ("notify:add", "notify:list", "notify:remove", "notify:test"):
        with pytest.raises(PermissionDenied):
            access.check(deployer, command, None)
        access.check(Principal(name="root", role="admin", fingerprint="SHA256:y", apps=frozenset()), command, None)


def test_a_redirect_is_a_failure_not_followed() -> None:
    """A receiver on loopback that redirects elsewhere: the failure is its status, and nothing else is asked."""
    asked: list[str] = []

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked.append(self.path)
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self.do_POST()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        why = notifywatch.send("webhook", f"http://127.0.0.1:{server.server_address[1]}/hook?token=x", event())
    finally:
        server.shutdown()
        server.server_close()
    assert why == "HTTP 302 Found" and asked == ["/hook?token=x"]


def test_a_receiver_that_never_answers_holds_up_only_its_own_events(home: Home,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One notification's receiver takes the connection and never answers; another's events go out meanwhile, and
    the silent one's failure is kept once its timeout has passed (1 s here, 5 s in use)."""
    monkeypatch.setattr(notifywatch, "TIMEOUT", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are taken (the backlog), never answered
    try:
        with receiver() as fast:
            notifications.add(home.host, notifications.Notification(
                name="silent", kind="webhook", url=f"http://127.0.0.1:{silent.getsockname()[1]}/x", app="",
                events=notify.EVENTS))
            notifications.add(home.host, notifications.Notification(
                name="fast", kind="slack", url=fast.url("/fast"), app="", events=notify.EVENTS))
            events.record(home.host, app="shop", command="cron-failed shop report", outcome="exit code 1")
            events.record(home.host, app="shop", command="deploy shop 4", outcome="live", release=4)
            busy = notifywatch._Busy()
            notifywatch.one_round(home.host, busy)
            assert wait_for(lambda: len(fast.at("/fast")) == 2, 10)
            assert notifications.get(home.host, "silent").failed_at is None  # still waiting for its first answer
            assert [b["text"] for b in fast.at("/fast")] == ["[paas.test] cron-failed: shop: exit code 1",
                                                             "[paas.test] deploy: shop release 4: live"]
            assert busy.names == {"silent"}
            notifywatch.one_round(home.host, busy)  # its thread still waits: no second one
            assert wait_for(lambda: not busy.names, notifywatch.TIMEOUT * 3)
            failed = notifications.get(home.host, "silent")
            assert failed.failure == "no answer within 1 s"
            assert notifications.waiting(home.host, "silent") == 2  # both to be tried again
    finally:
        silent.close()
