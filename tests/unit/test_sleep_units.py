"""Sleeping apps' pure parts and state (no engine, no nginx): the idle settings' forms, which apps may sleep and
after how long, when an app counts as idle, how often the watcher looks, nginx's last-request answer, the sleeps
table. Through nginx: tests/unit/test_balancer_lua.py; end to end: tests/engine/test_sleep.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from minipaas.errors import InvalidInput
from minipaas.routing import routes
from minipaas.running import sleeping
from minipaas.state import apps, durations, releaselog, sleeps, store
from minipaas.state.host import Host
from minipaas.state.releaselog import Kind, Serving
from tests.helpers.stores import store_host


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    h = store_host(tmp_path, monkeypatch, "shop", "shop--a", "docs", "idle", parents={"shop--a": "shop"})
    for name in ("shop", "shop--a", "docs"):
        number = releaselog.record_pending(h, name, kind=Kind.BUILD, sha="abc", image="i", buildpack="b", env={})
        releaselog.update(h, name, number, serving=Serving.STATIC if name == "docs" else Serving.CONTAINER)
        with store.transaction(h.db) as db:
            releaselog.make_live(db, name, number)
    return h


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 0), ("3s", 3), ("1", 1), ("30m", 1800), ("2h", 7200), ("1d", 86_400), ("30d", 30 * 86_400)])
def test_the_idle_settings_take_durations_from_a_second_to_30_days_or_0(host: Host, value: str, seconds: int) -> None:
    assert durations.idle_seconds(value) == seconds
    apps.set_setting(host, "shop", "idle", value)
    assert apps.get_setting(host, "shop", "idle") == value


@pytest.mark.parametrize("value", ["", "0s", "31d", "-1", "5 m", "1w", "m", "never"])
def test_the_idle_settings_refuse_other_values_in_one_line(host: Host, value: str) -> None:
    for key in ("idle", "review-apps-idle"):
        with pytest.raises(InvalidInput) as refused:
            apps.set_setting(host, "shop", key, value)
        assert "\n" not in refused.value.message and key in refused.value.message


def test_which_apps_may_sleep_a_review_app_by_its_parents_review_apps_idle_a_site_never(host: Host) -> None:
    # The defaults: review apps after 30 minutes, other apps never; a static site, or an app without a release, never.
    assert apps.idle_limits(host) == {"shop--a": 1800}
    apps.set_setting(host, "shop", "review-apps-idle", "0")
    apps.set_setting(host, "shop", "idle", "1h")
    apps.set_setting(host, "docs", "idle", "5m")
    assert apps.idle_limits(host) == {"shop": 3600}  # a review app does not follow its parent's `idle`
    apps.set_setting(host, "shop", "review-apps-idle", "10s")
    apps.set_setting(host, "shop--a", "review-apps-idle", "1d")  # the parent's alone counts (PARENT_ONLY)
    assert apps.idle_limits(host) == {"shop": 3600, "shop--a": 10}
    apps.set_stopped(host, "shop", True)  # ps:stop: nothing to sleep
    assert apps.idle_limits(host) == {"shop--a": 10}


def test_an_app_is_idle_after_its_time_without_a_request_nor_a_wake_or_deploy() -> None:
    assert sleeping.idle_for(100.0, 30, last_request=70.0, awake_since=10.0)
    assert not sleeping.idle_for(100.0, 30, last_request=71.0, awake_since=10.0)
    assert not sleeping.idle_for(100.0, 30, last_request=10.0, awake_since=80.0)  # woken (or deployed) lately
    assert sleeping.idle_for(100.0, 30, last_request=None, awake_since=60.0)  # never asked since nginx started
    assert sleeping.idle_for(100.0, 30, last_request=None, awake_since=None)


def test_the_watcher_looks_at_a_third_of_the_shortest_idle_time_within_bounds() -> None:
    assert sleeping.check_interval({}) == 10.0
    assert sleeping.check_interval({"a": 3, "b": 1800}) == 1.0
    assert sleeping.check_interval({"a": 1}) == 0.5
    assert sleeping.check_interval({"a": 1800}) == 10.0


def test_nginx_last_requests_are_read_from_its_lines() -> None:
    text = "now 1700000100.250\nshop 1700000090.000\nshop--a 1699990000.5\nbroken line here\nx notanumber\n"
    assert routes.parse_last_requests(text) == (1700000100.25, {"shop": 1700000090.0, "shop--a": 1699990000.5})
    assert routes.parse_last_requests("") == (0.0, {})


def test_the_sleeps_table_keeps_since_when_the_last_wake_and_why_it_failed(host: Host) -> None:
    assert sleeps.of(host, "shop") is None
    sleeps.slept(host, "shop")
    sleeps.wake_failed(host, "shop", "the image of release 1 is gone")
    found = sleeps.of(host, "shop")
    assert found is not None and found.woke_at is None and found.wake_error == "the image of release 1 is gone"
    sleeps.woke(host, "shop")
    found = sleeps.of(host, "shop")
    assert found is not None and found.woke_at is not None and found.wake_error == ""
    assert set(sleeps.woke_at(host)) == {"shop"}
    sleeps.slept(host, "shop")  # asleep again: no wake since
    assert sleeps.woke_at(host) == {}
    apps.delete(host, "shop")
    assert sleeps.of(host, "shop") is None
