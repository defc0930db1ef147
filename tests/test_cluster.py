"""Issue 15, groundwork: Docker engines in containers as Swarm nodes, the registry with minipaas' CA, and the
cluster:* commands. Real dockerd nodes, a real Swarm, a real registry (tests/cluster_nodes.py); traffic only to
the nodes and the network this test made.

Not tested here because this machine cannot: the routing mesh and service VIPs (no IPVS), encrypted overlays
(no ESP). The design needs neither (docs/cluster.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import Cluster, cluster_nodes, wait_for

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[Cluster]:
    with cluster_nodes(3) as cluster:
        yield cluster


def _ready_nodes(manager_docker) -> list[str]:  # type: ignore[no-untyped-def]
    out = manager_docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}")
    return sorted(line.split()[0] for line in out.splitlines() if line.split()[1:] == ["Ready", "Active"])


def test_three_nodes_form_a_swarm(three_nodes: Cluster) -> None:
    manager, *workers = three_nodes.nodes
    started = time.monotonic()
    manager.docker("swarm", "init", "--advertise-addr", manager.address, "--dispatcher-heartbeat", "1s")
    init_seconds = time.monotonic() - started
    token = manager.docker("swarm", "join-token", "-q", "worker").strip()
    assert token.startswith("SWMTKN-1-"), token
    for worker in workers:
        worker.docker("swarm", "join", "--token", token, f"{manager.address}:2377")
    ready = wait_for(lambda: len(_ready_nodes(manager.docker)) == 3 and _ready_nodes(manager.docker),
                     "3 nodes Ready and Active", 60)
    assert ready == ["node-1", "node-2", "node-3"]
    assert init_seconds < 10, f"swarm init took {init_seconds:.1f}s"
    info = json.loads(workers[0].docker("info", "--format", "{{json .Swarm}}"))
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is False


def test_registry_with_minipaas_ca_serves_the_manager_and_a_worker(three_nodes: Cluster, tmp_path: Path) -> None:
    """Debian's docker-registry with TLS from minipaas' CA: the manager builds and pushes, a worker pulls (it
    trusts the CA through certs.d), and a node without the CA is refused."""
    from minipaas.cluster import pki

    manager, worker, stranger = three_nodes.nodes
    files = pki.Files(tmp_path / "cluster")
    ca = pki.ensure_ca(files, "test")
    pki.ensure_server(files, manager.address)
    assert pki.server_names(files) == [manager.address]
    assert oct(files.ca_key.stat().st_mode & 0o777) == "0o600"
    registry = f"{manager.address}:5000"
    manager.sh("mkdir -p /etc/registry /srv/registry")
    for path in (files.server_cert, files.server_key):
        subprocess.run(["docker", "cp", str(path), f"{manager.name}:/etc/registry/{path.name}"], check=True)
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n"
                      "  delete:\n    enabled: true\nhttp:\n  addr: :5000\n  tls:\n"
                      "    certificate: /etc/registry/registry.crt\n    key: /etc/registry/registry.key\n")
    subprocess.run(["docker", "cp", str(config), f"{manager.name}:/etc/registry/config.yml"], check=True)
    subprocess.run(["docker", "exec", "-d", manager.name, "sh", "-c",
                    "exec docker-registry serve /etc/registry/config.yml >/tmp/registry.log 2>&1"], check=True)
    for node in (manager, worker):
        node.sh(f"mkdir -p /etc/docker/certs.d/{registry}")
        subprocess.run(["docker", "exec", "-i", node.name, "sh", "-c", f"cat > /etc/docker/certs.d/{registry}/ca.crt"],
                       input=ca, check=True)
    wait_for(lambda: "listening on" in manager.sh("cat /tmp/registry.log", check=False), "the registry listens", 30)
    # An image made on the manager: a file on an empty image (no pull from anywhere).
    manager.sh("mkdir -p /ctx && echo release-7 > /ctx/marker && printf 'FROM scratch\\nCOPY marker /marker\\n'"
               " > /ctx/Dockerfile")
    tag = f"{registry}/t/app:7"
    manager.docker("build", "-q", "-t", tag, "/ctx")
    manager.docker("push", tag)
    worker.docker("pull", tag)
    assert worker.docker("image", "inspect", "-f", "{{.Id}}", tag).strip() == \
        manager.docker("image", "inspect", "-f", "{{.Id}}", tag).strip()
    refused = subprocess.run(["docker", "exec", stranger.name, "docker", "pull", tag], capture_output=True, text=True)
    assert refused.returncode != 0 and "certificate" in refused.stderr, refused.stderr
