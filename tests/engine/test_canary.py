"""Canary releases through real pushes and nginx: a release pushed with `-o canary=N` takes its share of new clients
beside the live one, keeps the clients it was given, is reached by its header and its own URL, and is promoted or
aborted with no failed request; a push replaces a running canary; `ps:restore` brings one back; the guard aborts a
canary that fails or is slow, by itself, and says so in `events`."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.canary import Load, get, release, statuses, wait_for
from tests.helpers.host import APPS, Paas, docker

pytestmark = pytest.mark.engine


def first_release(paas: Paas, prefix: str = "can", *, guarded: bool = False) -> tuple[str, Path]:
    """The app's first release. Unless `guarded`, the guard never judges its canaries (it needs ten million
    requests to): the tests of shares, scaling, promotion and abort are not about it, and on a busy machine a
    canary's just-started containers can answer slowly enough for it to abort them (its own test below)."""
    app = paas.new_app(prefix)
    paas.run("settings:set", app, "drain-seconds", "1")
    if not guarded:
        paas.run("settings:set", app, "canary-min-requests", "10000000")
    checkout = paas.checkout(app, APPS / "dockerfile")
    release(checkout, "v1")
    paas.push(checkout)
    return app, checkout


def app_containers(paas: Paas, app: str, release: int) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=minipaas={paas.home}", "--filter", f"label=minipaas.app={app}",
                  "--filter", f"label=minipaas.release={release}").split()


def running(paas: Paas, app: str, release: int) -> list[str]:
    return docker("ps", "-q", "--filter", f"label=minipaas={paas.home}", "--filter", f"label=minipaas.app={app}",
                  "--filter", f"label=minipaas.release={release}", "--filter", "label=minipaas.process=web").split()


def test_a_canary_takes_its_share_keeps_its_clients_and_is_promoted_with_no_failed_request(paas: Paas) -> None:
    app, checkout = first_release(paas)
    release(checkout, "v2")
    pushed = paas.push(checkout, extra=("-o", "canary=30"))
    output = pushed.stdout + pushed.stderr
    assert f"{app} release 2 is a canary: 30% of new clients; release 1 serves the rest" in output
    assert "Retiring" not in output
    assert statuses(paas, app) == {2: "canary", 1: "live"}

    # New clients (a new connection each, no cookie) split about 30/70; each is told its release in a cookie.
    seen = Counter(get(paas, app)[1] for _ in range(400))
    assert set(seen) == {"v1", "v2"} and 0.22 <= seen["v2"] / 400 <= 0.38, seen
    status, body, cookie = get(paas, app)
    assert status == 200 and cookie.startswith("mp_release=") and "HttpOnly" in cookie
    # A client with its cookie stays on its release; the header and the release's own URL reach the one named.
    mine = cookie.split(";")[0]
    assert {get(paas, app, {"Cookie": mine})[1] for _ in range(100)} == {body}
    assert {get(paas, app, {"X-Minipaas-Release": "1"})[1] for _ in range(20)} == {"v1"}
    assert {get(paas, app, {"X-Minipaas-Release": "2"})[1] for _ in range(20)} == {"v2"}
    assert paas.get(app, host=f"v2.{app}.paas.test").body.strip() == "v2"
    # Scaling scales both releases, each keeping its share, with no failed request; web=0 would leave one side
    # with nothing to serve: refused in one line.
    with Load(paas, app, keep_alive=False) as scaling:
        scaled = paas.run("ps:scale", app, "web=2").stdout
    assert scaling.failures == [] and set(scaling.answers) == {"v1", "v2"}
    assert "Canary release 2: web=2" in scaled and f"{app} runs web=2" in scaled
    assert len(running(paas, app, 1)) == 2 and len(running(paas, app, 2)) == 2
    seen = Counter(get(paas, app)[1] for _ in range(300))
    assert set(seen) == {"v1", "v2"} and 0.2 <= seen["v2"] / 300 <= 0.4, seen
    refused = paas.run("ps:scale", app, "web=0", check=False)
    assert refused.returncode != 0 and "is a canary at 30%: each of its releases needs a web process" in \
        refused.stderr + refused.stdout
    with Load(paas, app, keep_alive=True) as shrinking:
        paas.run("ps:scale", app, "web=1")
        wait_for(lambda: len(app_containers(paas, app, 1)) == 1 and len(app_containers(paas, app, 2)) == 1,
                 what="one container of each release left")
    assert shrinking.failures == []
    assert statuses(paas, app) == {2: "canary", 1: "live"}

    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        promoted = paas.run("releases:promote", app)
        assert f"{app} release 2 is live (promoted from a 30% canary)" in promoted.stdout
        wait_for(lambda: closing.answers["v2"] > 20 and kept.answers["v2"] > 0, what="v2 answering alone")
        since = sum(closing.answers.values())
        wait_for(lambda: sum(closing.answers.values()) > since + 50, what="more answers")
    assert kept.failures == [] and closing.failures == []
    assert {get(paas, app)[1] for _ in range(50)} == {"v2"}
    assert statuses(paas, app) == {2: "live", 1: "superseded"}
    # Release 2 went live when promoted, not when it started as a canary: the `deploy` event then (issue 25)
    audit = [e["command"] for e in json.loads(paas.run("events", app, "--json").stdout)]
    assert audit.count(f"deploy {app} 2") == 1 and audit.count(f"deploy {app} 1") == 1, audit
    wait_for(lambda: not app_containers(paas, app, 1), what="release 1's containers to retire")


def test_a_push_replaces_a_running_canary_and_an_abort_sends_everyone_back_with_no_failed_request(
        paas: Paas) -> None:
    app, checkout = first_release(paas)
    release(checkout, "v2")
    paas.push(checkout, extra=("-o", "canary=50"))
    release(checkout, "v3")
    pushed = paas.push(checkout, extra=("-o", "canary=50"))
    assert "canary release 2 replaced by a new release (build); release 1 serves all traffic" in pushed.stderr
    assert statuses(paas, app) == {3: "canary", 2: "failed", 1: "live"}
    assert {get(paas, app)[1] for _ in range(100)} == {"v1", "v3"}
    wait_for(lambda: not app_containers(paas, app, 2), what="release 2's containers to go")

    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        aborted = paas.run("releases:abort", app)
        assert f"{app}: canary release 3 aborted by" in aborted.stdout
        since = closing.answers["v1"]
        wait_for(lambda: closing.answers["v1"] > since + 50, what="v1 answering")
    assert kept.failures == [] and closing.failures == []
    assert {get(paas, app)[1] for _ in range(50)} == {"v1"}
    assert statuses(paas, app)[3] == "failed"
    wait_for(lambda: not app_containers(paas, app, 3), what="release 3's containers to retire")
    refused = paas.run("releases:promote", app, check=False)
    assert refused.returncode != 0 and f"{app} has no canary release running" in refused.stderr + refused.stdout


def test_restore_brings_a_canary_back_beside_its_stable_release(paas: Paas) -> None:
    app, checkout = first_release(paas)
    release(checkout, "v2")
    paas.push(checkout, extra=("-o", "canary=50"))
    docker("stop", "-t", "1", *app_containers(paas, app, 1), *app_containers(paas, app, 2))
    restored = paas.run("ps:restore")
    assert f"{app}: canary release 2 back at 50%" in restored.stdout
    assert get(paas, app, {"X-Minipaas-Release": "1"})[1] == "v1"
    assert get(paas, app, {"X-Minipaas-Release": "2"})[1] == "v2"
    assert {get(paas, app)[1] for _ in range(100)} == {"v1", "v2"}
    assert statuses(paas, app) == {2: "canary", 1: "live"}


def drive(paas: Paas, app: str, until, timeout: float = 90) -> Counter[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """New clients (a new connection each, no cookie) until `until()` holds: what each was answered."""
    seen: Counter[tuple[int, str]] = Counter()
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; answers so far: {seen}"
        for _ in range(20):
            status, body, _ = get(paas, app)
            seen[(status, body)] += 1
    return seen


def test_the_guard_aborts_a_failing_or_slow_canary_and_promotes_a_healthy_one_step_by_step(paas: Paas) -> None:
    app, checkout = first_release(paas, guarded=True)
    for setting, value in (("canary-steps", "30,100"), ("canary-interval", "10s"), ("canary-min-requests", "40")):
        paas.run("settings:set", app, setting, value)

    # One request in 5 answered 500: aborted by itself once it served 40, and no client of release 1 saw a failure.
    release(checkout, "v2", fail_every=5)
    assert "release 2 is a canary: 30% of new clients" in paas.push(checkout).stderr
    seen = drive(paas, app, lambda: statuses(paas, app)[2] == "failed")
    assert {body for (status, body) in seen if status != 200} == {"v2"}, seen
    assert seen[(200, "v1")] > 0
    info = paas.run("releases:info", app, "2").stdout
    assert "canary aborted by the guard: 5xx share" in info and "above the stable release's" in info
    events = paas.run("events", app).stdout
    assert f"canary:abort {app} 2" in events and "5xx share" in events

    # Three times as slow: aborted the same way, on its p95.
    release(checkout, "v3", delay_ms=60)
    paas.push(checkout)
    drive(paas, app, lambda: statuses(paas, app)[3] == "failed")
    assert "canary aborted by the guard: p95" in paas.run("releases:info", app, "3").stdout

    # Healthy: 30 % for an interval, then promoted by itself; release 1 retires.
    release(checkout, "v4")
    paas.push(checkout)
    assert "canary: release 4 takes 30% of new clients beside release 1, step 1 of 2" in paas.run("ps", app).stdout
    drive(paas, app, lambda: statuses(paas, app)[4] == "live", timeout=120)
    assert statuses(paas, app)[1] == "superseded"
    assert {get(paas, app)[1] for _ in range(30)} == {"v4"}
    assert f"canary:promote {app} 4" in paas.run("events", app).stdout
