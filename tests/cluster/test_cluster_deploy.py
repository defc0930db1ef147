"""Issue 15, item 1 (docs/cluster-design.md): a `git push` to a cluster's manager rolls the release out as a Swarm
service (6 tasks over 3 nodes), health-checked per task, routed by minipaas' own nginx to `node:port`; a second
push, under keep-alive and closing load, switches to the new release's service without a failed request and
retires the old one after the drain delay; a third, broken one is refused and removed, the second still serving.

Real things only: three dockerd node containers (tests/helpers/cluster_nodes.py), a real Swarm and registry made by
`cluster:init`, real pushes, nginx on this test host. Traffic goes only to loopback and to the node containers.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest

from tests.helpers.cluster import routed_addresses, service_names
from tests.helpers.cluster_nodes import Cluster, Node, wait_for
from tests.helpers.cluster_nodes import manager_host as cluster_host
from tests.helpers.host import APPS, Paas, commit
from tests.helpers.load import LUA, no_failed_request, start_wrk, stop_wrk

pytestmark = pytest.mark.engine
REPLICAS = 6


@pytest.fixture
def manager_host(paas: Paas) -> Iterator[tuple[Paas, Cluster]]:
    """A cluster of 3 nodes whose first node is the minipaas host's engine (cluster_nodes.manager_host)."""
    with cluster_host(paas) as cluster:
        yield paas, cluster


def _tasks(manager: Node, service: str) -> list[str]:
    """The nodes running the service's tasks, one entry per running task."""
    out = manager.docker("service", "ps", service, "--filter", "desired-state=running",
                         "--format", "{{.Node}} {{.CurrentState}}", check=False)
    return sorted(line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["Running"])


def test_push_rolls_out_six_tasks_over_three_nodes_and_a_second_push_switches_under_load(
        manager_host: tuple[Paas, Cluster]) -> None:
    paas, cluster = manager_host
    manager = cluster.nodes[0]
    app = paas.new_app()
    paas.run("ps:scale", app, f"web={REPLICAS}")
    paas.run("settings:set", app, "drain-seconds", "2")
    checkout = paas.checkout(app, APPS / "dockerfile")

    started = time.monotonic()
    output = paas.push(checkout).stderr
    first_seconds = time.monotonic() - started
    steps = [line.split("remote:", 1)[-1].strip() for line in output.splitlines()
             if any(word in line for word in ("pushed in", "running after", "tasks healthy"))]
    first = f"{paas.instance}-{app}-web-1"
    assert f"Started the service {first} ({REPLICAS} tasks)" in output, output
    assert f"{REPLICAS} tasks healthy" in output, output
    assert service_names(manager) == [first]
    nodes = _tasks(manager, first)
    assert sorted(collections.Counter(nodes).values()) == [2, 2, 2], nodes
    node_addresses = {node.address for node in cluster.nodes}
    routed = routed_addresses(paas, app)
    assert len(routed) == REPLICAS and {a.rsplit(":", 1)[0] for a in routed} == node_addresses, routed
    response = paas.get(app)
    assert (response.status, response.body) == (200, "from my own Dockerfile\n")

    # A second push under load: keep-alive and closing connections through nginx, none may fail.
    server = checkout / "server.js"
    server.write_text(server.read_text().replace("own Dockerfile", "own Dockerfile, release 2"))
    commit(checkout, "release 2")
    keepalive = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the push starts
        started = time.monotonic()
        paas.push(checkout)
        second_seconds = time.monotonic() - started
        second = f"{paas.instance}-{app}-web-2"
        assert paas.get(app).body == "from my own Dockerfile, release 2\n"
        wait_for(lambda: service_names(manager) == [second], f"{first} retired after the drain delay", 60)
        time.sleep(1)  # the load goes on after the retirement
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    assert sorted(collections.Counter(_tasks(manager, second)).values()) == [2, 2, 2]
    assert not set(routed_addresses(paas, app)) & set(routed)
    for counts in (ka, cl):
        no_failed_request(counts, more_than=200)

    # A release whose process exits at once: the push is refused in one line, its service goes, release 2 serves.
    server.write_text("process.exit(3);\n")
    commit(checkout, "broken")
    refused = paas.push(checkout, expect_ok=False).stderr
    # Refused while its tasks start, or (seen running for a moment before the process exits) at their check.
    assert (f"a task of {paas.instance}-{app}-web-3 failed before running" in refused
            or (f"{paas.instance}-{app}-web-3 at " in refused and "stopped before answering" in refused)), refused
    assert "non-zero exit (3)" in refused, refused
    assert service_names(manager) == [second]
    assert paas.get(app).body == "from my own Dockerfile, release 2\n"
    reason = next(line for line in refused.splitlines() if "non-zero exit (3)" in line)
    print(f"\nfirst push's steps: {'; '.join(steps)}; the broken push: {reason.strip()}")
    print(f"push to live, 6 tasks over 3 nodes: first {first_seconds:.1f}s, second (under load) "
          f"{second_seconds:.1f}s; requests: keep-alive {ka['requests']}, close {cl['requests']}, 0 failed")


def _task_ids(manager: Node, service: str) -> set[str]:
    return set(manager.docker("service", "ps", service, "--filter", "desired-state=running", "-q",
                              check=False).split())


def test_ps_scale_stop_and_start_act_on_the_services(manager_host: tuple[Paas, Cluster]) -> None:
    """docs/cluster-design.md, item 3: `ps:scale` up adds tasks to the live service (the running ones untouched), down
    is a rollout at the new count; under load, 0 failed requests. `ps:stop` scales the services to 0 and
    unroutes; `ps:start` scales back and routes the new tasks."""
    paas, cluster = manager_host
    manager = cluster.nodes[0]
    app = paas.new_app()
    paas.run("ps:scale", app, "web=2")
    paas.run("settings:set", app, "drain-seconds", "1")
    paas.push(paas.checkout(app, APPS / "dockerfile"))
    first, second = f"{paas.instance}-{app}-web-1", f"{paas.instance}-{app}-web-2"
    before, old_tasks = routed_addresses(paas, app), _task_ids(manager, first)
    assert len(before) == 2 and len(old_tasks) == 2, (before, old_tasks)

    keepalive = start_wrk(paas, app, "-t2", "-c8", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the scale starts
        up = paas.run("ps:scale", app, "web=4")
        assert "Scaling " + first + " to 4 tasks" in up.stdout + up.stderr, up
        assert service_names(manager) == [first]  # no new release: the same service, 2 more tasks
        assert old_tasks < _task_ids(manager, first) and len(_task_ids(manager, first)) == 4
        grown = routed_addresses(paas, app)
        assert len(grown) == 4 and set(before) < set(grown), (before, grown)

        down = paas.run("ps:scale", app, "web=3")
        assert "Rolling release 1 out again at web=3" in down.stdout + down.stderr, down
        wait_for(lambda: service_names(manager) == [second], f"{first} retired after the drain delay", 60)
        assert len(_task_ids(manager, second)) == 3
        assert len(routed_addresses(paas, app)) == 3 and not set(routed_addresses(paas, app)) & set(grown)
        time.sleep(1)  # the load goes on after the retirement
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    for counts in (ka, cl):
        no_failed_request(counts, more_than=100)

    paas.run("ps:stop", app)
    assert routed_addresses(paas, app) == []
    assert _task_ids(manager, second) == set() and service_names(manager) == [second]
    assert paas.get(app).status == 503
    # No process of the app ran as a plain container on the manager: every container of the app is a task.
    plain = [line for line in manager.docker("ps", "-a", "--filter", f"label=minipaas.app={app}", "--format",
                                             '{{.Names}} {{.Label "com.docker.swarm.task.id"}}').splitlines()
             if len(line.split()) < 2]
    assert plain == [], plain

    started = paas.run("ps:start", app)
    assert f"Scaled {second} to 3 tasks" in started.stdout + started.stderr, started
    assert len(_task_ids(manager, second)) == 3
    routed = routed_addresses(paas, app)
    assert len(routed) == 3 and {a.rsplit(":", 1)[0] for a in routed} <= {n.address for n in cluster.nodes}
    assert paas.get(app).body == "from my own Dockerfile\n"
    print(f"\nps:scale 2→4 kept the 2 running tasks and routed 4; 4→3 rolled out; requests under load: "
          f"keep-alive {ka['requests']}, close {cl['requests']}, 0 failed")
