"""Canary releases without an engine: which push starts one and at what share (options, settings), the settings'
forms, the records of a canary's start, promotion and abort (SQLite only, migration 14), the guard's verdicts
on figures, and the route a cluster's task watcher keeps for a canary's two services. The same paths run through
real pushes and nginx in test_canary.py (and test_cluster_canary.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minipaas.deploy import canary, canaryguard, hook
from minipaas.deploy.canaryguard import Figures
from minipaas.errors import InvalidInput
from minipaas.routing import routes
from minipaas.routing.routes import Version
from minipaas.running import taskwatch
from minipaas.state import apps, canaries, releaselog, store
from minipaas.state.host import Host
from tests.helpers.stores import store_host


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return store_host(tmp_path, monkeypatch, "shop")


def test_a_push_is_a_canary_when_asked_or_when_the_app_says_so(host: Host) -> None:
    assert canary.plan(host, "shop", None) is None  # the default: all traffic at once
    assert canary.plan(host, "shop", 10) == canary.Plan(steps=(10,))
    apps.set_setting(host, "shop", "canary", "20")
    assert canary.plan(host, "shop", None) == canary.Plan(steps=(20,))
    assert canary.plan(host, "shop", 0) is None  # `-o canary=0`: not this one
    apps.set_setting(host, "shop", "canary-steps", "10,50,100")
    assert canary.plan(host, "shop", None) == canary.Plan(steps=(20, 50, 100))  # the steps above its start
    apps.set_setting(host, "shop", "canary", "0")
    assert canary.plan(host, "shop", None) == canary.Plan(steps=(10, 50, 100))
    assert canary.plan(host, "shop", 60) == canary.Plan(steps=(60, 100))


@pytest.mark.parametrize("value", ["100", "-1", "ten", "5%", "", "٣"])
def test_a_canary_push_option_that_is_not_a_percentage_is_one_line(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^push option canary=.*a percentage from 0 \(no canary\) to 99"):
        hook._canary_option(f"canary={value}")


def test_push_options_carry_the_canary_share_and_keep_the_others() -> None:
    options = hook._options(["canary=15", "skip-tests"], "admin", frozenset(), "shop")
    assert (options.canary, options.skip_tests) == (15, True)
    assert hook._options([], "admin", frozenset(), "shop").canary is None


@pytest.mark.parametrize(("setting", "good", "bad"), [
    ("canary", ["0", "1", "99"], ["100", "-5", "1.5", "x"]),
    ("canary-steps", ["", "10", "10,50,100", "5, 25, 100"], ["50,10", "0,50", "10,10", "10,101", "a", "10,,20"]),
    ("canary-interval", ["10s", "90", "2m", "1h", "24h"], ["9s", "25h", "2 m", "1d", "m", ""]),
    ("canary-min-requests", ["1", "200"], ["0", "-1", "many"]),
])
def test_the_canary_settings_take_their_forms_and_refuse_others_in_one_line(
        host: Host, setting: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        apps.set_setting(host, "shop", setting, value)
        assert apps.get_setting(host, "shop", setting) == value
    for value in bad:
        with pytest.raises(InvalidInput) as refused:
            apps.set_setting(host, "shop", setting, value)
        assert "\n" not in refused.value.message


def _release(host: Host, status: str = "pending") -> int:
    number = releaselog.record_pending(host, "shop", kind="build", sha="a" * 40, image="img", buildpack="node",
                                       env={})
    if status != "pending":
        releaselog.update(host, "shop", number, status=status)
    return number


def test_a_canary_is_recorded_beside_the_live_release_then_promoted(host: Host) -> None:
    stable = _release(host, "live")
    new = _release(host)
    recorded = canaries.record(host, "shop", release=new, stable=stable, steps=(10, 50, 100), by="ann")
    assert (recorded.weight, recorded.step, recorded.automatic) == (10, 0, True)
    assert releaselog.get(host, "shop", new).status == "canary"
    assert releaselog.live(host, "shop").number == stable  # the stable release stays the live one
    canaries.advance(host, "shop", step=1, weight=50)
    assert canaries.of(host, "shop").weight == 50
    canaries.promoted(host, "shop", new, retiring=["c1"], drain=10)
    assert canaries.of(host, "shop") is None
    assert releaselog.live(host, "shop").number == new
    assert releaselog.get(host, "shop", stable).status == "superseded"
    assert releaselog.retiring(host, "shop") == {"c1"}


def test_an_aborted_canary_is_a_failed_release_and_the_live_one_stays(host: Host) -> None:
    stable = _release(host, "live")
    new = _release(host)
    assert not canaries.record(host, "shop", release=new, stable=stable, steps=(25,), by="ann").automatic
    canaries.aborted(host, "shop", new, message="canary aborted by ann", retiring=["c2"], drain=5)
    assert canaries.of(host, "shop") is None
    assert (releaselog.get(host, "shop", new).status, releaselog.get(host, "shop", new).message) == \
        ("failed", "canary aborted by ann")
    assert releaselog.live(host, "shop").number == stable
    assert releaselog.retiring(host, "shop") == {"c2"}


def test_a_destroyed_app_leaves_no_canary_row(host: Host) -> None:
    canaries.record(host, "shop", release=_release(host), stable=_release(host, "live"), steps=(10,), by="ann")
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM apps WHERE name = 'shop'")
    assert canaries.every(host) == []


STEADY = Figures(requests=1000, errors=2, p95=0.040)


def judge(canary_figures: Figures, *, elapsed: float = 150, step: int = 0, steps: tuple[int, ...] = (10, 50, 100),
          stable: Figures = STEADY) -> canaryguard.Verdict:
    return canaryguard.judge(steps=steps, step=step, elapsed=elapsed, interval=120, min_requests=200, stable=stable,
                             canary=canary_figures)


def test_the_guard_moves_a_healthy_canary_on_after_its_interval_and_promotes_it_at_100() -> None:
    healthy = Figures(requests=250, errors=0, p95=0.045)
    assert judge(healthy, elapsed=60).action == "wait"
    assert (judge(healthy).action, judge(healthy).weight) == ("advance", 50)
    assert (judge(healthy, step=1).action, judge(healthy, step=1).weight) == ("promote", 100)
    assert judge(healthy, steps=(10,)).action == "wait"  # a manual canary waits for releases:promote


def test_the_guard_waits_for_enough_requests_to_each_release() -> None:
    few = Figures(requests=150, errors=0, p95=0.040)
    verdict = judge(few)
    assert verdict.action == "wait" and "needs 50 more requests" in verdict.reason
    assert judge(Figures(250, 0, 0.04), stable=Figures(100, 0, 0.04)).action == "wait"


def test_the_guard_aborts_on_errors_beyond_the_stable_share_plus_one_point_with_the_figures() -> None:
    assert judge(Figures(requests=300, errors=3, p95=0.040)).action == "advance"  # 1.0 % vs 0.2 %: within 1 point
    verdict = judge(Figures(requests=300, errors=60, p95=0.040), elapsed=10)  # 20 %: at once, before the interval
    assert verdict.action == "abort"
    assert "5xx share 20.0% above the stable release's 0.2% + 1 point" in verdict.reason
    assert "canary 300 requests, 20.0% 5xx, p95 40 ms; stable 1000 requests, 0.2% 5xx" in verdict.reason
    assert judge(Figures(requests=100, errors=60, p95=0.040)).action == "wait"  # too few to judge yet


def test_the_guard_aborts_a_slow_canary_but_not_a_millisecond_of_noise() -> None:
    verdict = judge(Figures(requests=300, errors=0, p95=0.120))
    assert verdict.action == "abort" and "p95 120 ms above 1.5x the stable release's 40 ms" in verdict.reason
    fast = Figures(requests=1000, errors=0, p95=0.002)
    assert judge(Figures(requests=300, errors=0, p95=0.004), stable=fast).action == "advance"  # 2x, but 2 ms


@pytest.mark.parametrize(("sans", "valid"), [
    (("shop.example.com", "*.shop.example.com"), True),
    (("v12.shop.example.com",), True),
    (("V12.Shop.Example.com",), True),  # names compare without case
    (("shop.example.com",), False),
    (("*.example.com",), False),  # a wildcard covers one label only
    (("*.v12.shop.example.com",), False),
    ((), False),
])
def test_a_release_url_is_named_by_a_certificate_for_it_or_a_wildcard_one_label_above(
        sans: tuple[str, ...], valid: bool) -> None:
    """For an HTTPS app, a canary's push says whether the app's certificate is valid for the release's own URL."""
    import datetime

    from minipaas.routing import certs

    now = datetime.datetime.now(datetime.UTC)
    info = certs.CertInfo(subject="CN=x", issuer="CN=x", sans=sans, not_before=now, not_after=now, self_signed=True)
    assert certs.valid_for(info, "v12.shop.example.com") is valid


# -- a cluster's canary: the route the task watcher keeps for two releases' services (running/taskwatch.py) --------

STABLE = {"10.0.0.5:30001": "t1", "10.0.0.6:30002": "t2"}  # release 7's web service's running tasks
CANARY = {"10.0.0.5:30003": "t3"}  # release 8's


def _lines(versions: list[Version]) -> str:
    return routes.render_entry([(v.release, v.weight, sorted(v.targets)) for v in versions])


def test_the_watcher_keeps_two_services_tasks_as_two_weighted_versions() -> None:
    routed = set(STABLE) | set(CANARY)
    wanted = taskwatch.wanted_versions([(7, 80, STABLE), (8, 20, CANARY)], routed, set())
    assert _lines(wanted) == "7=80 10.0.0.5:30001 10.0.0.6:30002 8=20 10.0.0.5:30003"
    assert taskwatch.describe(wanted) == "7=80 (2 tasks) 8=20 (1 task)"


def test_a_replaced_canary_task_joins_the_canary_version_once_healthy_never_the_stable_one() -> None:
    routed = set(STABLE) | set(CANARY)
    moved = {"10.0.0.6:30009": "t4"}  # the canary's task replaced: another node, another port
    # Not healthy yet: the canary leaves the route for now, the stable release takes all new clients.
    waiting = taskwatch.wanted_versions([(7, 80, STABLE), (8, 20, moved)], routed, set())
    assert _lines(waiting) == "7=100 10.0.0.5:30001 10.0.0.6:30002"
    # Healthy: back in its own version at its own weight (the canary's record), not merged into release 7's.
    back = taskwatch.wanted_versions([(7, 80, STABLE), (8, 20, moved)], set(STABLE), set(moved))
    assert _lines(back) == "7=80 10.0.0.5:30001 10.0.0.6:30002 8=20 10.0.0.6:30009"


def test_a_task_routed_in_the_wrong_version_goes_back_to_its_own_and_unchanged_routes_are_left_alone() -> None:
    merged = [Version(7, 100, {**STABLE, **CANARY})]  # what the watcher before issue 22's cluster canaries wrote
    wanted = taskwatch.wanted_versions([(7, 80, STABLE), (8, 20, CANARY)], set(STABLE) | set(CANARY), set())
    assert not taskwatch.same_route(wanted, merged)
    assert _lines(wanted) == "7=80 10.0.0.5:30001 10.0.0.6:30002 8=20 10.0.0.5:30003"
    assert taskwatch.same_route(wanted, [Version(8, 20, {a: "" for a in CANARY}), Version(7, 80, dict(STABLE))])
    assert not taskwatch.same_route(wanted, [Version(7, 70, dict(STABLE)), Version(8, 30, dict(CANARY))])


def test_with_no_canary_the_watcher_keeps_one_version_and_none_when_no_task_runs() -> None:
    assert _lines(taskwatch.wanted_versions([(7, 100, STABLE)], set(STABLE), set())) == \
        "7=100 10.0.0.5:30001 10.0.0.6:30002"
    assert taskwatch.wanted_versions([(7, 80, {}), (8, 20, {})], set(STABLE), set()) == []
    assert taskwatch.describe([]) == "none"
