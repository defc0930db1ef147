"""Issue 15's node failures (docs/cluster-design.md) and issue 20's faults in a cluster: an app of 6 web tasks over 3
nodes, pushed with `git push`. `cluster:drain` moves a node's tasks (health-checked and routed first) and only then
drains it, under keep-alive and closing load with 0 failed requests; `cluster:activate` takes it back. Then, each
during a push, with a poller through minipaas' nginx that must always get the old release or the new one: the
registry restarted (the push waits for it and goes live), the manager's engine restarted (the push is refused in
one line; the watcher restores the rest with no command), and last (it breaks the cluster) a node container killed
hard while the push health-checks its tasks, under load: the push checks the Swarm's replacements and goes live.

One cluster for the module (made once: about a minute). Real things only: dockerd node containers, a real Swarm and
registry made by `cluster:init`, real pushes, nginx and the watcher on this test host, wrk.
"""

from __future__ import annotations

import collections
import http.client
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster import (
    REPLICAS,
    commit_release,
    push_while,
    registry_manifest,
    routed_addresses,
    running_tasks,
    service_names,
    serving_tasks,
    settled,
)
from tests.helpers.cluster_nodes import Cluster, Node, docker, manager_host, wait_for
from tests.helpers.host import APPS, Paas, paas_host
from tests.helpers.load import LUA, no_failed_request, start_wrk, stop_wrk

pytestmark = pytest.mark.engine
RESCHEDULE_DEADLINE = 90.0  # a killed node's tasks running elsewhere and routed (measured: see the test's output)
SLOW_START = 5.0  # seconds the last test's release answers 503: its health checks are under way when node-3 dies


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[tuple[Paas, Cluster, str]]:
    """A 3-node cluster and an app of 6 web tasks spread 2/2/2, pushed with `git push`."""
    with paas_host(Path(tmp_path_factory.mktemp("failures")) / "work") as paas, manager_host(paas) as made:
        app = paas.new_app()
        paas.run("ps:scale", app, f"web={REPLICAS}")
        paas.run("settings:set", app, "drain-seconds", "2")
        paas.push(paas.checkout(app, APPS / "dockerfile"))
        live = _live(paas, made.nodes[0], app)
        assert sorted(collections.Counter(running_tasks(made, live).values()).values()) == [2, 2, 2]
        yield paas, made, app


def _live(paas: Paas, manager: Node, app: str) -> str:
    """The live web service, once the retired ones are gone."""
    return str(wait_for(lambda: (lambda names: names[0] if len(names) == 1 else None)(service_names(manager)),
                        f"one service of {app}", 60))


def _availability(manager: Node, hostname: str) -> str:
    out = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}")
    return next(line.split(" ", 1)[1] for line in out.splitlines() if line.split()[0] == hostname)


def _failed_in_log(paas: Paas, requests: int) -> collections.Counter[str]:
    """The requests nginx answered with an error (access.log, flushed every 2 s), by method and status."""
    log = paas.home / "logs" / "access.log"

    def lines() -> list[str] | None:
        found = log.read_text(errors="replace").splitlines() if log.exists() else []
        return found if len(found) >= requests else None

    found = wait_for(lines, "nginx's access log flushed", 30)
    assert isinstance(found, list)
    failed: collections.Counter[str] = collections.Counter()
    for line in found:
        request, _, rest = line.partition('"')[2].partition('" ')
        status = rest.split()[0] if rest.split() else ""
        if not status.startswith(("2", "3")):
            failed[f"{request.split()[0] if request else '?'} {status}"] += 1
    return failed


class Poller:
    """GETs of the app through minipaas' nginx, one after another, each on a new connection (a fresh pick from the
    route), from a thread of its own: every answer kept as (status, body), a socket error as (0, its words)."""

    def __init__(self, paas: Paas, app: str) -> None:
        self.paas, self.app = paas, app
        self.answers: collections.Counter[tuple[int, str]] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        wait_for(lambda: sum(self.answers.values()) >= 5, "the poller's first answers", 30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _poll(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.paas.port, timeout=30)
            try:
                conn.request("GET", "/", headers={"Host": f"{self.app}.paas.test"})
                response = conn.getresponse()
                self.answers[(response.status, response.read().decode(errors="replace"))] += 1
            except (OSError, http.client.HTTPException) as exc:
                self.answers[(0, f"{type(exc).__name__}: {exc}")] += 1
            finally:
                conn.close()
            time.sleep(0.02)


def _refusal(output: str) -> list[str]:
    """The lines a refused push printed with `!` before its last one (`push rejected; ...`)."""
    said = [line.split("remote:", 1)[1].strip() for line in output.splitlines()
            if line.startswith("remote: !")]
    assert said and said[-1] == "!     push rejected; the previous release keeps serving", output
    return said[:-1]


def test_drain_moves_a_nodes_tasks_first_under_load_then_activate(cluster: tuple[Paas, Cluster, str]) -> None:
    paas, made, app = cluster
    manager = made.nodes[0]
    refused = paas.run("cluster:drain", "node-9", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused
    assert refused.stderr.strip().splitlines() == [
        "error: the cluster has no node called 'node-9' (its nodes: node-1, node-2, node-3)"], refused.stderr
    assert {_availability(manager, f"node-{i}") for i in (1, 2, 3)} == {"Ready Active"}

    before = _live(paas, manager, app)
    keepalive = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the drain starts
        started = time.monotonic()
        drained = paas.run("cluster:drain", "node-2")
        seconds = time.monotonic() - started
        time.sleep(1)  # the load goes on after the node is drained
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    output = drained.stdout + drained.stderr
    assert "Moving " + app in output and "node-2 drained in" in output, output
    assert _availability(manager, "node-2") == "Ready Drain"
    live = _live(paas, manager, app)
    assert live != before
    running = running_tasks(made, live)
    assert sorted(collections.Counter(running.values()).items()) == [("node-1", 3), ("node-3", 3)], running
    assert manager.docker("node", "ps", "node-2", "--filter", "desired-state=running", "-q").split() == []
    assert routed_addresses(paas, app) == sorted(running)
    for counts in (ka, cl):
        no_failed_request(counts, more_than=200)

    activated = paas.run("cluster:activate", "node-2")
    assert "node-2 is active" in activated.stdout + activated.stderr
    assert _availability(manager, "node-2") == "Ready Active"
    print(f"\ndrain of node-2 (2 of 6 tasks) under load: {seconds:.1f}s; requests: keep-alive {ka['requests']}, "
          f"close {cl['requests']}, 0 failed")


def test_a_registry_restarted_during_a_push_is_waited_for_and_the_push_goes_live(
        cluster: tuple[Paas, Cluster, str]) -> None:
    """Twice: the registry stopped when the push reaches it and started again while the push waits for it; then hung
    (paused) the moment the image is in it and restarted 2 s later, while the nodes pull. Both pushes go live; the
    poller gets the old release or the new one, nothing else; the old service retires, nothing is left."""
    paas, made, app = cluster
    manager = made.nodes[0]
    checkout = paas.checkout(app, APPS / "dockerfile")
    registry = f"{paas.instance}.registry"
    on_manager = ("-H", manager.engine)
    old = paas.get(app).body
    assert paas.get(app).status == 200

    body = commit_release(checkout, "registry restarted during the push")
    with Poller(paas, app) as poller:
        docker(*on_manager, "stop", "-t", "1", registry)  # down when the push reaches it; back while it waits
        code, output = push_while(paas, checkout, {
            "pushing again once the registry answers": lambda: docker(*on_manager, "start", registry)})
    assert code == 0 and "the push to the registry broke off (" in output and "is live at" in output, output
    assert set(poller.answers) <= {(200, old), (200, body)} and poller.answers[(200, body)], poller.answers
    live = _live(paas, manager, app)
    wait_for(lambda: settled(paas, made, app, live), "the first push settled", 60)

    old, body = body, commit_release(checkout, "registry restarted while the nodes pull")

    def hang_then_restart() -> None:
        docker(*on_manager, "pause", registry)
        time.sleep(2)
        docker(*on_manager, "restart", "-t", "1", registry)

    with Poller(paas, app) as poller:
        code, output = push_while(paas, checkout, {"pushed in": hang_then_restart})
    assert code == 0 and "is live at" in output, output
    # The nodes' pulls failed while it hung (the Swarm: "No such image"), and were made again once it answered.
    assert "a node could not pull the image of" in output, output
    assert set(poller.answers) <= {(200, old), (200, body)} and poller.answers[(200, body)], poller.answers
    live = _live(paas, manager, app)
    wait_for(lambda: settled(paas, made, app, live), "the second push settled", 60)
    assert paas.get(app).body == body
    print(f"\nregistry restarted during two pushes: both live; poller: {dict(poller.answers.most_common())}")


def test_the_manager_s_engine_restarted_during_a_push_refuses_it_and_the_watcher_repairs(
        cluster: tuple[Paas, Cluster, str]) -> None:
    """The manager's dockerd restarted (SIGTERM, as a package upgrade does) once the push started its service: the
    push is refused in one line, the old release serves throughout from the other nodes, and the watcher sees the
    engine come back and restores (`ps:restore`, no command): the new service removed, the release recorded failed,
    the route the old release's running tasks again, those of the workers included although the Swarm no longer says
    their ports. The next push goes live, and its gc deletes the refused release's manifest from the registry."""
    paas, made, app = cluster
    manager = made.nodes[0]
    checkout = paas.checkout(app, APPS / "dockerfile")
    live = _live(paas, manager, app)
    old = paas.get(app).body
    restarted: list[float] = []
    commit_release(checkout, "the manager restarted during the push")
    with Poller(paas, app) as poller:
        code, output = push_while(paas, checkout, {
            "-----> Started the service": lambda: restarted.append(manager.restart_engine())})
        assert code != 0, output
        repaired = time.monotonic()
        wait_for(lambda: settled(paas, made, app, live), "the watcher restored the live release", 120)
        repaired = time.monotonic() - repaired
    number = int(re.search(r"\(release (\d+), ", output).group(1))  # type: ignore[union-attr]
    said = _refusal(output)
    assert len(said) == 1 and ("the Docker engine does not answer" in said[0]
                               or "the engine's Swarm does not answer" in said[0]), output
    assert set(poller.answers) == {(200, old)}, poller.answers
    assert "the engine is back; restoring every app" in (paas.home / "logs" / "watch.log").read_text()
    releases = paas.run("releases", app).stdout
    assert any(line.split()[:1] == [str(number)] and " failed " in line for line in releases.splitlines()), releases
    rows = paas.run("ps", app).stdout
    assert rows.count(" serving ") == REPLICAS, rows  # every task routed, at the address it had

    body = commit_release(checkout, "after the manager restarted")
    paas.push(checkout)
    assert paas.get(app).body == body
    live = _live(paas, manager, app)
    wait_for(lambda: settled(paas, made, app, live), "the next push settled", 60)
    repository = f"{paas.instance}/{app}"
    wait_for(lambda: registry_manifest(paas, manager, repository, str(number)).status_code == 404,
             f"the refused release {number}'s manifest deleted by the gc after the next push", 60)
    print(f"\nmanager's engine restarted during a push: answering again after {restarted[0]:.1f}s; push refused "
          f"({said[0].strip()}); restored by the watcher {repaired:.1f}s after the refusal; "
          f"poller: {dict(poller.answers)}")


def test_zz_a_node_lost_during_a_push_s_health_checks_under_load_the_push_goes_live(
        cluster: tuple[Paas, Cluster, str]) -> None:
    """Last: it kills a node for good. A release whose tasks answer 503 for their first seconds is pushed under
    keep-alive (GET/POST) and closing load; once its health checks start, node-3's container is killed. The checks of
    its tasks there cannot pass, and once the Swarm marks the node down they are lost, not failed: the push waits for
    the Swarm's replacements on node-1 and node-2, checks them and goes live. Meanwhile the old release serves (its
    tasks on node-3 died too: nginx hands GETs to the next task); after, the new release's 6 tasks run on node-1 and
    node-2, the route is exactly those, and the old service is gone."""
    paas, made, app = cluster
    manager, victim = made.nodes[0], made.nodes[2]
    checkout = paas.checkout(app, APPS / "dockerfile")
    before = _live(paas, manager, app)
    on_victim = [a for a, node in serving_tasks(made, before).items() if node == "node-3"]
    assert on_victim, serving_tasks(made, before)
    body = commit_release(checkout, "a node lost during the push", slow_start=SLOW_START)
    times: dict[str, float] = {}

    def kill() -> None:
        docker("kill", victim.name)
        times["killed"] = time.monotonic()
        wait_for(lambda: _availability(manager, "node-3").startswith("Down"), "node-3 Down", RESCHEDULE_DEADLINE)
        times["down"] = time.monotonic()

    keepalive = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the push starts
        code, output = push_while(paas, checkout, {"-----> Checking each task": kill})
        times["live"] = time.monotonic()
        live = _live(paas, manager, app)
        wait_for(lambda: settled(paas, made, app, live), "the new release's tasks alone, all routed",
                 RESCHEDULE_DEADLINE)
        times["settled"] = time.monotonic()
        time.sleep(1)  # the load goes on
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    assert code == 0 and "is live at" in output, output
    assert f"at {victim.address}:" in output and "its node went away; the Swarm starts that task elsewhere" in output, \
        output
    running = serving_tasks(made, live)
    assert live != before and len(running) == REPLICAS and set(running.values()) == {"node-1", "node-2"}, running
    assert not set(routed_addresses(paas, app)) & set(on_victim)
    assert paas.get(app).body == body
    # nginx hands a request that meets a dead task to the next one, unless it had sent a POST already (it cannot
    # know whether the app acted on it): those in flight on node-3 when it died are lost, at most one per keep-alive
    # connection (the closing load sends GETs only). 499: requests cut by wrk's own stop.
    logged = {what: n for what, n in _failed_in_log(paas, ka["requests"] + cl["requests"]).items()
              if not what.endswith(" 499")}
    killed = times["killed"]
    print(f"\nnode-3 killed during a push's health checks ({len(on_victim)} of {REPLICAS} old tasks there): Down "
          f"after {times['down'] - killed:.1f}s, the push live after {times['live'] - killed:.1f}s, the route exactly "
          f"the new release's 6 tasks after {times['settled'] - killed:.1f}s; requests: keep-alive {ka['requests']}, "
          f"close {cl['requests']}; failed: {logged or 'none'} (wrk: keep-alive {ka['non_2xx']} non-2xx, "
          f"{ka['socket_errors']} socket errors; close {cl['non_2xx']}, {cl['socket_errors']})")
    for counts in (ka, cl):
        assert counts["requests"] > 200, counts["output"]
        assert counts["socket_errors"] == 0, counts["output"]
    assert cl["non_2xx"] == 0, cl["output"]
    assert set(logged) <= {"POST 503"} and ka["non_2xx"] == logged.get("POST 503", 0) <= 16, (logged, ka["output"])
