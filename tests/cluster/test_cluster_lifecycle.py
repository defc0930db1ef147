"""Issue 15, items 5 and 6 of docs/cluster-design.md's list, on one cluster of one node (the manager: the cheapest setup
that `cluster:leave` accepts): an app deployed on one host before `cluster:init` moves to services with its next
push; `gc` deletes the manifests of the releases it drops from the cluster's registry and has the registry free
their blobs (its storage shrinks, the live release's blobs stay); then `cluster:leave` under load turns the app
back into a plain container on the manager with 0 failed requests, and a later push deploys on one host.

Real things only: a dockerd node container (tests/helpers/cluster_nodes.py), a real Swarm and registry made by
`cluster:init`, real pushes, nginx and wrk on this test host.

Plain containers on the manager sit on its bridge networks, inside the node container: the test host (nginx, the
health check) reaches them through a route to the app networks' pool (`MINIPAAS_SUBNETS`, a /24 this test picks
and no route of this host overlaps) via the node, which forwards it (a DOCKER-USER rule in the node). On a real
manager, minipaas' host is the engine's host and reaches its bridges directly: the route stands in for that.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import requests

from tests.helpers.cluster import registry_address_and_ca, registry_manifest, service_names
from tests.helpers.cluster_nodes import Cluster, Node, init_cluster, manager_nodes, registry_account, wait_for
from tests.helpers.host import APPS, Paas, commit, paas_host
from tests.helpers.load import LUA, no_failed_request, start_wrk, stop_wrk

pytestmark = pytest.mark.engine


def _free_pool() -> str:
    """A /24 of 10.214-250.x.0 that no route of this host overlaps (the host's own app networks are in
    10.213.0.0/16, Swarm's overlays in 10.0.0.0/8's first /24s)."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True,
                                       text=True, check=True).stdout)
    taken = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r.get("dst") not in (None, "default")
             and r["dst"][0].isdigit()]
    for _ in range(100):
        pool = ipaddress.ip_network(f"10.{random.randint(214, 250)}.{random.randint(0, 255)}.0/24")
        if not any(pool.overlaps(t) for t in taken):
            return str(pool)
    raise AssertionError("no free /24 for the app networks")


@contextlib.contextmanager
def _route(pool: str, node: Node) -> Iterator[None]:
    """This host reaches the node's bridges of `pool` through the node (removed on the way out)."""
    _forwarding(node, pool)
    subprocess.run(["ip", "route", "add", pool, "via", node.address], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "route", "del", pool, "via", node.address], capture_output=True)


def _forwarding(node: Node, pool: str) -> None:
    """The node forwards this host's traffic to its bridges of `pool` (whatever dockerd's FORWARD policy)."""
    node.sh(f"iptables -I DOCKER-USER -d {pool} -j ACCEPT")


def _refusing(node: Node, pool: str, on: bool) -> None:
    """The node refuses (or no longer refuses) this host's connections to its bridges of `pool`."""
    node.sh(f"iptables {'-I' if on else '-D'} DOCKER-USER -d {pool} -p tcp -j REJECT --reject-with tcp-reset")


class Setup(NamedTuple):
    paas: Paas
    cluster: Cluster
    app: str
    pool: str


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[Setup]:
    """A minipaas host whose engine is a node container; an app deployed there on one host (release 1, a plain
    container), then `cluster:init`."""
    pool = _free_pool()
    with paas_host(tmp_path_factory.mktemp("lifecycle") / "work", MINIPAAS_SUBNETS=pool) as paas, \
            manager_nodes(paas, 1) as cluster, _route(pool, cluster.nodes[0]):
        app = paas.new_app()
        paas.run("settings:set", app, "drain-seconds", "1")
        paas.push(paas.checkout(app, APPS / "dockerfile"))
        assert paas.get(app).body == "from my own Dockerfile\n"
        init_cluster(paas, cluster)
        yield Setup(paas, cluster, app, pool)


def _plain(manager: Node, app: str) -> list[str]:
    """The app's plain containers on the manager (not Swarm tasks), by name."""
    out = manager.docker("ps", "--filter", f"label=minipaas.app={app}", "--format",
                         '{{.Names}} {{.Label "com.docker.swarm.task.id"}}')
    return sorted(line.split()[0] for line in out.splitlines() if len(line.split()) == 1)


def _push_release(paas: Paas, checkout: Path, text: str) -> None:
    """A commit whose server answers `text`, pushed."""
    server = checkout / "server.js"
    server.write_text(re.sub(r'res\.end\("[^"]*\\n"\)', f'res.end("{text}\\\\n")', server.read_text()))
    commit(checkout, text)
    paas.push(checkout)


def _blobs_present(paas: Paas, manager: Node, repository: str, tag: str) -> int:
    """How many of the tag's blobs (config and layers) the registry still has; asserts each is there."""
    base, ca = registry_address_and_ca(paas, manager)
    manifest = registry_manifest(paas, manager, repository, tag)
    assert manifest.status_code == 200, manifest.text
    body = manifest.json()
    digests = [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]
    for digest in digests:
        head = requests.head(f"{base}/v2/{repository}/blobs/{digest}", verify=ca, auth=registry_account(paas),
                             timeout=10)
        assert head.status_code == 200, (digest, head.status_code)
    return len(digests)


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def test_first_cluster_push_of_a_one_host_app_then_gc_frees_the_registry(
        one_node: Setup) -> None:
    paas, cluster, app, _ = one_node
    manager = cluster.nodes[0]
    checkout = paas.work / f"{app}-src"
    assert _plain(manager, app), "release 1 runs as a plain container (deployed before cluster:init)"

    # Releases 2, 3, 4 as services; release 1's plain container retires with the first of them.
    for number in (2, 3, 4):
        _push_release(paas, checkout, f"release {number}")
        assert paas.get(app).body == f"release {number}\n"
    live = f"{paas.instance}-{app}-web-4"
    wait_for(lambda: service_names(manager) == [live] and not _plain(manager, app),
             "only release 4's service left (release 1's container and the older services retired)", 60)

    repository = paas.repository(app)
    assert registry_manifest(paas, manager, repository, "2").status_code == 200
    storage = paas.home / "cluster" / "registry"
    before = _du(storage)
    paas.run("settings:set", app, "keep-releases", "2")
    started = time.monotonic()
    out = paas.run("gc")
    seconds = time.monotonic() - started
    output = out.stdout + out.stderr
    after = _du(storage)

    assert f"manifest {repository}:2 in the cluster's registry" in output, output
    assert "unreferenced blobs in the cluster's registry" in output, output
    assert after < before, (before, after, output)
    assert registry_manifest(paas, manager, repository, "2").status_code == 404
    assert registry_manifest(paas, manager, repository, "3").status_code == 200  # kept: rollback-able
    blobs = _blobs_present(paas, manager, repository, "4")
    assert paas.get(app).body == "release 4\n"
    # The registry is writable again: the next push goes through it.
    _push_release(paas, checkout, "release 5")
    assert paas.get(app).body == "release 5\n"
    print(f"\ngc in {seconds:.1f}s: registry storage {before} → {after} bytes ({before - after} freed) by dropping "
          "release 2; "
          f"the live release's {blobs} blobs all there")


def test_cluster_leave_under_load_keeps_the_app_serving_then_a_push_deploys_on_one_host(
        one_node: Setup) -> None:
    """Last: it ends the cluster."""
    paas, cluster, app, pool = one_node
    manager = cluster.nodes[0]
    checkout = paas.work / f"{app}-src"
    live = json.loads(paas.run("releases", app, "--json").stdout)
    number = max(r["number"] for r in live if r["status"] == "live")
    wait_for(lambda: service_names(manager) == [f"{paas.instance}-{app}-web-{number}"], "one live service", 60)
    body = paas.get(app).body
    live_service = f"{paas.instance}-{app}-web-{number}"

    # The app cannot come up as plain containers (this host no longer reaches the manager's bridges: the health
    # check times out): the leave is refused in one line, the cluster and the app's service as they were.
    paas.run("settings:set", app, "healthcheck-timeout", "3")
    _refusing(manager, pool, True)
    try:
        refused = paas.run("cluster:leave", check=False)
    finally:
        _refusing(manager, pool, False)
        paas.run("settings:set", app, "healthcheck-timeout", "60")
    message = refused.stderr.strip()
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused
    assert message.splitlines()[-1].startswith(f"error: cluster:leave refused: {app} did not start as plain "
                                               "containers"), message
    assert f"the cluster stays, {app} still runs as services" in message, message
    assert manager.docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() == "active"
    assert service_names(manager) == [live_service] and _plain(manager, app) == []
    assert manager.docker("ps", "-q", "--filter", "label=minipaas.role=registry").strip()
    assert paas.get(app).body == body
    failed = json.loads(paas.run("releases", app, "--json").stdout)
    assert max(r["number"] for r in failed) == number + 1 and \
        next(r for r in failed if r["number"] == number + 1)["status"] == "failed"

    keepalive = start_wrk(paas, app, "-t2", "-c8", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the leave starts
        started = time.monotonic()
        out = paas.run("cluster:leave")
        seconds = time.monotonic() - started
        assert paas.get(app).body == body
        time.sleep(1)  # the load goes on after the Swarm is gone
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    for counts in (ka, cl):
        no_failed_request(counts, more_than=100)
    assert "This host runs plain containers again" in out.stdout + out.stderr, out
    assert manager.docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() == "inactive"
    assert _plain(manager, app) == [paas.container(f"{app}.web.{number + 2}")]
    assert manager.docker("ps", "-aq", "--filter", "label=minipaas.role=registry").strip() == ""
    assert not (paas.home / "cluster").exists()

    _push_release(paas, checkout, "after the cluster")
    assert paas.get(app).body == "after the cluster\n"
    wait_for(lambda: _plain(manager, app) == [paas.container(f"{app}.web.{number + 3}")],
             "the one-host release's container alone", 60)
    print(f"\ncluster:leave under load: {seconds:.1f}s; requests: keep-alive {ka['requests']}, "
          f"close {cl['requests']}, 0 failed")
