"""Issue 22 on a Swarm: a canary's switch routes the stable release's web service's tasks and the canary's as two
weighted versions. Through real nginx: both answer (header pin, release URL), new clients split by the weight, the
task watcher keeps a replaced canary task in the canary's version, `ps:scale` scales both services up and down under
load (down in place: the tasks the Swarm stops leave the route first), `ps:restore` after the manager's engine
restarted keeps the canary, abort and promote under load fail no request and remove the services they retire, and
the guard aborts a canary that answers 500s by itself.

Real things only: two dockerd node containers (tests/helpers/cluster_nodes.py), a real Swarm and registry made by
`cluster:init`, real pushes, nginx on this test host, the real task watcher (`minipaas watch`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.helpers.canary import Load, get, release, statuses, wait_for
from tests.helpers.cluster_nodes import Cluster, Node
from tests.helpers.cluster_nodes import manager_host as cluster_host
from tests.helpers.host import APPS, Paas

pytestmark = pytest.mark.engine
CLIENTS = 400


@pytest.fixture
def two_nodes(paas: Paas) -> Iterator[tuple[Paas, Cluster]]:
    """A Swarm of 2 nodes whose first is the minipaas host's engine (cluster_nodes.manager_host)."""
    with cluster_host(paas, count=2) as cluster:
        yield paas, cluster


def _services(manager: Node) -> list[str]:
    return sorted(manager.docker("service", "ls", "--format", "{{.Name}}").split())


def _versions(paas: Paas, app: str) -> dict[int, tuple[int, frozenset[str]]]:
    """The app's route as minipaas last set it: release → (weight, addresses)."""
    from minipaas.routing import routes
    from minipaas.state.settings import load

    return {v.release: (v.weight, frozenset(v.targets)) for v in routes.versions(load(paas.env), app)}


def _nginx(paas: Paas, app: str) -> dict[int, tuple[int, frozenset[str]]]:
    """The same, as nginx holds it in shared memory."""
    from minipaas.routing import routes
    from minipaas.state.settings import load

    return {r: (w, frozenset(a)) for r, w, a in routes.nginx_versions(load(paas.env), app)}


def _pinned(paas: Paas, app: str, number: int) -> set[str]:
    return {get(paas, app, {"X-Minipaas-Release": str(number)})[1] for _ in range(10)}


def _running_tasks(manager: Node, service: str) -> int:
    states = manager.docker("service", "ps", "--format", "{{.CurrentState}}", service).splitlines()
    return sum(1 for state in states if state.startswith("Running"))


def _share(paas: Paas, app: str, body: str) -> float:
    """The share of CLIENTS new clients (a connection each, no cookie) answered `body`; every answer a 200."""
    seen = Counter(get(paas, app)[:2] for _ in range(CLIENTS))
    assert {status for status, _ in seen} == {200}, seen
    return seen[(200, body)] / CLIENTS


def test_a_canary_on_a_swarm_routes_two_services_tasks_by_weight_and_is_aborted_then_promoted_under_load(
        two_nodes: tuple[Paas, Cluster]) -> None:
    paas, cluster = two_nodes
    manager = cluster.nodes[0]
    app = paas.new_app("swc")
    paas.run("ps:scale", app, "web=2")
    paas.run("settings:set", app, "drain-seconds", "1")
    # Not about the guard (tests/engine/test_canary.py has its test): it never judges these canaries, so that the
    # just-started tasks of a busy machine's nodes cannot get one aborted before the test aborts it.
    paas.run("settings:set", app, "canary-min-requests", "10000000")
    checkout = paas.checkout(app, APPS / "dockerfile")
    release(checkout, "v1")
    paas.push(checkout)
    web = [f"{paas.instance}-{app}-web-{n}" for n in range(5)]  # web[N]: release N's web service

    # The canary: its own service beside release 1's, both routed, 80/20.
    release(checkout, "v2")
    output = paas.push(checkout, extra=("-o", "canary=20")).stderr
    assert f"{app} release 2 is a canary: 20% of new clients; release 1 serves the rest" in output, output
    assert "Retiring" not in output
    assert statuses(paas, app) == {2: "canary", 1: "live"}
    assert _services(manager) == [web[1], web[2]]
    route = _versions(paas, app)
    assert sorted(route) == [1, 2] and route[1][0] == 80 and route[2][0] == 20, route
    assert len(route[1][1]) == 2 and len(route[2][1]) == 2 and not route[1][1] & route[2][1], route
    assert _nginx(paas, app) == route
    assert _pinned(paas, app, 1) == {"v1"} and _pinned(paas, app, 2) == {"v2"}
    assert paas.get(app, host=f"v2.{app}.paas.test").body.strip() == "v2"
    assert paas.get(app, host=f"v1.{app}.paas.test").body.strip() == "v1"
    first_share = _share(paas, app, "v2")
    assert 0.13 <= first_share <= 0.27, first_share
    for command in (("ps", app), ("releases", app), ("report",)):
        ran = paas.run(*command)
        shown = ran.stdout + ran.stderr
        assert "canary: release 2 takes 20% of new clients beside release 1" in shown, (command, shown)
        assert "this step: release 2 " in shown and "; release 1 " in shown, (command, shown)

    # The task watcher: the canary's tasks replaced (new ports) come back into the canary's version, never into
    # release 1's; release 1's version is left as it was.
    manager.docker("service", "update", "--force", "--detach", web[2])
    wait_for(lambda: (lambda r: sorted(r) == [1, 2] and r[1] == route[1] and r[2][0] == 20 and len(r[2][1]) == 2
                      and not r[2][1] & route[2][1])(_versions(paas, app)),
             timeout=120, what="the canary's new tasks routed in the canary's version")
    moved = _versions(paas, app)
    assert _nginx(paas, app) == moved
    assert _pinned(paas, app, 2) == {"v2"} and _pinned(paas, app, 1) == {"v1"}

    # ps:scale scales both services, each keeping its share: up, then down in place under keep-alive and closing
    # load (the tasks the Swarm picks to stop leave the route before their stop signal), 0 failed.
    with Load(paas, app, keep_alive=False) as scaling:
        scaled = paas.run("ps:scale", app, "web=3").stdout
    assert scaling.failures == [] and set(scaling.answers) == {"v1", "v2"}, (scaling.failures, scaling.answers)
    assert "Canary release 2: web=3" in scaled and f"{app} runs web=3" in scaled, scaled
    route = _versions(paas, app)
    assert {r: (w, len(a)) for r, (w, a) in route.items()} == {1: (80, 3), 2: (20, 3)}, route
    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        began = time.monotonic()
        shrunk = paas.run("ps:scale", app, "web=2").stdout
        scale_down_seconds = time.monotonic() - began
    assert kept.failures == [] and closing.failures == [], (kept.failures[:5], closing.failures[:5])
    assert set(closing.answers) == {"v1", "v2"}, closing.answers
    at_scale_down = sum(kept.answers.values()), sum(closing.answers.values())
    for service in (web[1], web[2]):
        assert f"Scaled {service} to 2 tasks: the Swarm stops 1 (marked after" in shrunk, shrunk
    assert "Canary release 2: web=2" in shrunk and f"{app} runs web=2" in shrunk, shrunk
    windows = [float(line.split("out of the route after ")[1].rstrip("s")) for line in shrunk.splitlines()
               if "out of the route after " in line]
    assert len(windows) == 2 and "the stopped tasks gone " in shrunk, shrunk
    gone = shrunk.split("the stopped tasks gone ")[1].split("s later")[0]
    marked = [line.split("(marked after ")[1].split("s)")[0] for line in shrunk.splitlines()
              if "(marked after " in line]
    after = _versions(paas, app)
    assert {r: (w, len(a)) for r, (w, a) in after.items()} == {1: (80, 2), 2: (20, 2)}, after
    assert after[1][1] < route[1][1] and after[2][1] < route[2][1], (route, after)  # the stopped ones left
    assert _nginx(paas, app) == after
    assert _running_tasks(manager, web[1]) == 2 and _running_tasks(manager, web[2]) == 2
    shrunk_share = _share(paas, app, "v2")
    assert 0.13 <= shrunk_share <= 0.27, shrunk_share
    assert statuses(paas, app) == {2: "canary", 1: "live"}

    # The manager's engine restarted (its tasks stopped, started again on other ports): ps:restore brings both
    # releases back, the canary at its share.
    manager.restart_engine()
    restored = paas.run("ps:restore").stdout
    assert f"{app}: canary release 2 back at 20%" in restored, restored
    wait_for(lambda: sorted(_versions(paas, app)) == [1, 2], timeout=60, what="both versions routed")
    assert {r: w for r, (w, _) in _versions(paas, app).items()} == {1: 80, 2: 20}
    assert _pinned(paas, app, 1) == {"v1"} and _pinned(paas, app, 2) == {"v2"}
    assert statuses(paas, app) == {2: "canary", 1: "live"}

    # Abort under keep-alive and closing load: every client back to release 1, none failed; the canary's service
    # goes after the drain delay.
    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        aborted = paas.run("releases:abort", app).stdout
        assert f"{app}: canary release 2 aborted by" in aborted, aborted
        since = closing.answers["v1"]
        wait_for(lambda: closing.answers["v1"] > since + 50, what="v1 answering")
    assert kept.failures == [] and closing.failures == [], (kept.failures[:5], closing.failures[:5])
    at_abort = sum(kept.answers.values()), sum(closing.answers.values())
    assert sorted(_versions(paas, app)) == [1]
    assert {get(paas, app)[1] for _ in range(50)} == {"v1"}
    wait_for(lambda: _services(manager) == [web[1]], timeout=60, what="the canary's service removed")
    assert statuses(paas, app)[2] == "failed"

    # The guard, by itself (the watcher's): a canary answering 1 request in 5 with a 500 is aborted under load once
    # it served 40; `events` says why with the figures, its service goes, and no client saw another failure.
    paas.run("settings:set", app, "canary-min-requests", "40")
    began = time.monotonic()
    release(checkout, "v3", fail_every=5)
    assert f"{app} release 3 is a canary: 20%" in paas.push(checkout, extra=("-o", "canary=20")).stderr
    assert _services(manager) == [web[1], web[3]]
    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        under_load = time.monotonic()
        wait_for(lambda: statuses(paas, app)[3] == "failed", timeout=90, what="the guard's abort")
        guard_seconds = time.monotonic() - under_load
        since = closing.answers["v1"]
        wait_for(lambda: closing.answers["v1"] > since + 50, what="v1 answering after the abort")
    failed = kept.failures + closing.failures
    assert failed and set(failed) == {"HTTP 500: v3"}, Counter(failed)
    assert set(kept.answers) | set(closing.answers) <= {"v1", "v3"}
    guarded = sum(kept.answers.values()) + sum(closing.answers.values()) + len(failed), len(failed)
    events = paas.run("events", app).stdout
    assert f"canary:abort {app} 3" in events and "5xx share" in events and "above the stable release's" in events
    assert "requests, " in events and "% 5xx, p95 " in events, events
    assert "canary aborted by the guard: 5xx share" in paas.run("releases:info", app, "3").stdout
    assert sorted(_versions(paas, app)) == [1] and {get(paas, app)[1] for _ in range(30)} == {"v1"}
    wait_for(lambda: _services(manager) == [web[1]], timeout=60, what="the guarded canary's service removed")
    paas.run("settings:set", app, "canary-min-requests", "10000000")
    guard_phase = time.monotonic() - began

    # Another canary, promoted under load: release 1's service retires, none failed.
    release(checkout, "v4")
    paas.push(checkout, extra=("-o", "canary=20"))
    assert _services(manager) == [web[1], web[4]]
    with Load(paas, app, keep_alive=True) as kept, Load(paas, app, keep_alive=False) as closing:
        promoted = paas.run("releases:promote", app).stdout
        assert f"{app} release 4 is live (promoted from a 20% canary)" in promoted, promoted
        wait_for(lambda: _services(manager) == [web[4]], timeout=60, what="release 1's service retired")
        since = sum(closing.answers.values())
        wait_for(lambda: sum(closing.answers.values()) > since + 50, what="more answers after the retirement")
    assert kept.failures == [] and closing.failures == [], (kept.failures[:5], closing.failures[:5])
    assert closing.answers["v4"] > 0 and kept.answers["v4"] > 0
    assert sorted(_versions(paas, app)) == [4] and len(_versions(paas, app)[4][1]) == 2
    assert {get(paas, app)[1] for _ in range(50)} == {"v4"}
    assert statuses(paas, app)[4] == "live" and statuses(paas, app)[1] == "superseded"
    promoted_requests = sum(kept.answers.values()), sum(closing.answers.values())
    print(f"\nswarm canary at 20%: {first_share:.1%} of {CLIENTS} new clients on it; the watcher routed its replaced "
          f"tasks in its version; scaled 3 -> 2 in place in {scale_down_seconds:.1f}s: marked {marked} s, out of "
          f"the route {windows} s after the scale, gone {gone} s later, then {shrunk_share:.1%} on it; requests "
          f"(keep-alive, close), 0 failed: scale-down {at_scale_down}, abort {at_abort}, promote {promoted_requests}; "
          f"the guard aborted a canary answering 1 in 5 with 500 {guard_seconds:.1f}s into the load (requests, 500s: "
          f"{guarded}, no other failure; that step {guard_phase:.0f}s with its push)")
