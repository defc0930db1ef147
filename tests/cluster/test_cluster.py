"""Issue 15, groundwork: Docker engines in containers as Swarm nodes, the registry with minipaas' CA, and the
cluster:* commands. Real dockerd nodes, a real Swarm, a real registry (tests/helpers/cluster_nodes.py); traffic only to
the nodes and the network this test made.

Not tested here because this machine cannot: the routing mesh and service VIPs (no IPVS), encrypted overlays
(no ESP). The design needs neither (docs/cluster-design.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.cluster import one_line_error, swarm_state
from tests.helpers.cluster_nodes import Cluster, cluster_nodes, registry_account, wait_for

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def three_nodes(engine_ready: None) -> Iterator[Cluster]:
    """(Module-scoped: set up before the marked tests' own engine check, so it asks for the engine itself and skips
    without one.)"""
    with cluster_nodes(3) as cluster:
        yield cluster


def _ready_nodes(manager_docker) -> list[str]:  # type: ignore[no-untyped-def]
    out = manager_docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}")
    return sorted(line.split()[0] for line in out.splitlines() if line.split()[1:] == ["Ready", "Active"])


def test_three_nodes_form_a_swarm(three_nodes: Cluster) -> None:
    manager, *workers = three_nodes.nodes
    manager.docker("swarm", "init", "--advertise-addr", manager.address, "--dispatcher-heartbeat", "1s")
    token = manager.docker("swarm", "join-token", "-q", "worker").strip()
    assert token.startswith("SWMTKN-1-"), token
    for worker in workers:
        worker.docker("swarm", "join", "--token", token, f"{manager.address}:2377")
    ready = wait_for(lambda: len(_ready_nodes(manager.docker)) == 3 and _ready_nodes(manager.docker),
                     "3 nodes Ready and Active", 60)
    assert ready == ["node-1", "node-2", "node-3"]
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


# -- the cluster:* commands, minipaas driving a node container's engine as its own ---------------------------
#
# The manager is a node container; minipaas (on this test host) reaches its engine with DOCKER_HOST. What a real
# manager shares with minipaas for free, being the same machine, is bind-mounted into the node at the same paths:
# the home (the registry's storage and certificate) and the engine's certs.d (MINIPAAS_DOCKER_CERTS).


def _nodes(paas) -> dict[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    """cluster:nodes by hostname, without asking for disks (a job on every node): for polling."""
    return {n["hostname"]: n for n in json.loads(paas.run("cluster:nodes", "--json", "--no-disk").stdout)}


@pytest.fixture
def two_nodes(paas) -> Iterator[tuple[Cluster, Path]]:  # type: ignore[no-untyped-def]
    """Two node containers, the manager sharing the host's home, and the folder the registry's CA goes to."""
    certs = Path(tempfile.mkdtemp(prefix="minipaas-certs-", dir="/var/tmp"))
    try:
        with cluster_nodes(2, manager_mounts=((str(paas.home), str(paas.home)), (str(certs), "/etc/docker/certs.d")),
                           cpus=0.8) as cluster:
            yield cluster, certs
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def test_cluster_init_join_nodes_leave(paas, two_nodes: tuple[Cluster, Path]) -> None:  # type: ignore[no-untyped-def]
    cluster, certs = two_nodes
    manager, worker = cluster.nodes
    paas.env.update(DOCKER_HOST=manager.engine, MINIPAAS_DOCKER_CERTS=str(certs))
    cluster_dir = paas.home / "cluster"

    # Bad input: one line each, and nothing changes.
    one_line_error(paas.run("cluster:nodes", check=False), "not in a cluster")
    one_line_error(paas.run("cluster:join-command", check=False), "not in a cluster")
    one_line_error(paas.run("cluster:init", "--advertise-addr", "no-such-host", check=False), "IP address")
    # An address that is not the manager's: the Swarm takes it (hosts behind NAT advertise such addresses), the
    # registry cannot listen on it; cluster:init undoes the Swarm.
    one_line_error(paas.run("cluster:init", "--advertise-addr", "192.0.2.77", check=False),
                    "192.0.2.77:5000", "cannot assign requested address")
    assert swarm_state(manager) == "inactive"
    assert not cluster_dir.exists()

    result = paas.run("cluster:init", "--advertise-addr", manager.address)
    registry = f"{manager.address}:5000"
    assert f"its registry is {registry}" in result.stdout, result.stdout
    assert swarm_state(manager) == "active"
    assert (certs / registry / "ca.crt").read_bytes() == (cluster_dir / "ca.crt").read_bytes()
    assert oct((cluster_dir / "ca.key").stat().st_mode & 0o777) == "0o600"
    registry_id = manager.docker("ps", "-q", "--filter", "label=minipaas.role=registry").strip()
    assert registry_id

    # A second init: one line, the same Swarm, the same registry container.
    node_id = manager.docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    one_line_error(paas.run("cluster:init", check=False), "already a manager")
    assert manager.docker("info", "--format", "{{.Swarm.NodeID}}").strip() == node_id
    assert manager.docker("ps", "-q", "--filter", "label=minipaas.role=registry").strip() == registry_id

    # The registry takes only the cluster's account (issue 19, item 13), kept root-only on the manager.
    account = registry_account(paas)
    assert oct((cluster_dir / "registry-auth.json").stat().st_mode & 0o777) == "0o600"
    assert (cluster_dir / "registry-auth.json").stat().st_uid == 0
    assert (cluster_dir / "htpasswd").read_text().startswith(f"{account[0]}:$2b$")
    assert account[1] not in (cluster_dir / "htpasswd").read_text()
    _registry_takes_only(registry, cluster_dir / "ca.crt", account)
    # The manager's firewall: its tasks' ports answer only where nginx comes from (this test host), its containers
    # reach no node.
    assert manager.lets_task_ports_answer(cluster.gateway), manager.minipaas_rules()
    assert manager.refuses_tenants_to(manager.address), manager.minipaas_rules()

    # The manager pushes into the registry, logged in (anonymous: refused); its storage is the home's.
    manager.sh("mkdir -p /ctx && echo one > /ctx/marker && printf 'FROM scratch\\nCOPY marker /marker\\n'"
               " > /ctx/Dockerfile")
    tag = f"{registry}/t/app:1"
    manager.docker("build", "-q", "-t", tag, "/ctx")
    refused = manager.docker("push", tag, check=False, stderr=True)
    assert "no basic auth credentials" in refused, refused
    manager.docker("login", "-u", account[0], "--password-stdin", registry, input=account[1].encode())
    manager.docker("push", tag)
    assert (cluster_dir / "registry" / "docker" / "registry" / "v2" / "repositories" / "t" / "app").is_dir()

    # A second host joins with exactly the lines join-command prints (the CA, its firewall, then the token); it holds
    # no credentials: its engine alone pulls nothing; a service's tasks pull there with the login the Swarm hands
    # them (the disk job below).
    lines = paas.run("cluster:join-command").stdout
    assert "docker swarm join --token SWMTKN-1-" in lines and f"certs.d/{registry}/ca.crt" in lines
    assert account[1] not in lines
    subprocess.run(["docker", "exec", "-i", worker.name, "sh", "-e"], input=lines, text=True, check=True,
                   capture_output=True)
    wait_for(lambda: len(_nodes(paas)) == 2, "the worker is listed", 60)
    assert _nodes(paas)["node-1"]["leader"] and _nodes(paas)["node-1"]["role"] == "manager"
    assert wait_for(lambda: _nodes(paas)["node-2"]["status"] == "ready", "the worker is ready", 60)
    assert worker.lets_task_ports_answer(cluster.gateway), worker.minipaas_rules()
    assert worker.refuses_tenants_to(manager.address) and not worker.refuses_tenants_to(worker.address)
    refused = worker.docker("pull", tag, check=False, stderr=True)
    assert "no basic auth credentials" in refused, refused

    # Each node's disk, as a job on every node saw it: the disk that holds the node's engine data.
    started = time.monotonic()
    listed = {n["hostname"]: n for n in json.loads(paas.run("cluster:nodes", "--json").stdout)}
    first = time.monotonic() - started
    for hostname, node in (("node-1", manager), ("node-2", worker)):
        size, free = (int(v) for v in node.sh("df -P -B1 /var/lib/docker | awk 'NR==2 {print $2, $4}'").split())
        disk = listed[hostname]["disk"]
        assert disk["size"] == size and abs(disk["free"] - free) < 2**30, (disk, size, free)
    started = time.monotonic()
    table = paas.run("cluster:nodes").stdout.splitlines()
    print(f"\ncluster:nodes with disks: {first:.1f}s the first time (each node pulls), then "
          f"{time.monotonic() - started:.1f}s")
    assert table[0].split() == ["NODE", "STATUS", "AVAILABILITY", "ROLE", "ADDRESS", "TASKS", "DISK", "ENGINE"]
    assert all(" free of " in line for line in table[1:]), table
    assert not manager.docker("service", "ls", "-q").strip()  # the job's service is gone
    # No registry to push the job's image to: the nodes are listed all the same, the reason on stderr.
    manager.docker("stop", registry_id)
    try:
        result = paas.run("cluster:nodes", check=False)
        assert result.returncode == 0 and f"warning: no disk figures: cannot log in to the registry {registry}" \
            in result.stderr, result
        assert [line.split()[6] for line in result.stdout.splitlines()[1:]] == ["?", "?"], result.stdout
    finally:
        manager.docker("start", registry_id)
    assert not manager.docker("service", "ls", "-q").strip()
    # The cluster commands since the worker joined named it in the manager's firewall.
    assert manager.refuses_tenants_to(worker.address), manager.minipaas_rules()

    _upgrade_of_a_cluster_made_before_credentials(paas, cluster, registry)

    # Leaving with another node in: refused, nothing changes.
    one_line_error(paas.run("cluster:leave", check=False), "other node(s) (node-2)")
    assert swarm_state(manager) == "active" and (certs / registry / "ca.crt").exists()

    worker.docker("swarm", "leave")
    wait_for(lambda: _nodes(paas)["node-2"]["status"] == "down", "the worker is down", 60)
    manager.docker("node", "rm", "node-2")
    paas.run("cluster:leave")
    assert swarm_state(manager) == "inactive"
    assert not manager.docker("ps", "-aq", "--filter", "label=minipaas.role=registry").strip()
    assert not (certs / registry).exists() and not cluster_dir.exists()
    assert manager.minipaas_rules() == []


def _registry_takes_only(registry: str, ca: Path, account: tuple[str, str]) -> None:
    """Anonymous: 401 for the catalog and the API's base; the account: 200."""
    for path in ("/v2/", "/v2/_catalog"):
        anonymous = requests.get(f"https://{registry}{path}", verify=str(ca), timeout=10)
        assert anonymous.status_code == 401, (path, anonymous.status_code, anonymous.text)
        assert requests.get(f"https://{registry}{path}", verify=str(ca), auth=account, timeout=10).status_code == 200
    wrong = requests.get(f"https://{registry}/v2/_catalog", verify=str(ca), auth=(account[0], "x" + account[1]),
                         timeout=10)
    assert wrong.status_code == 401


def _upgrade_of_a_cluster_made_before_credentials(paas, cluster: Cluster, registry: str) -> None:  # type: ignore[no-untyped-def]
    """A cluster as minipaas made them before issue 19's item 13: a registry that takes anyone, no account, no
    firewall. The next cluster command upgrades it: a new account, the registry restarted with it, the running
    services given the login (a task of one pulls on a node without its image), the manager's firewall, a line for
    the node joined by hand."""
    manager, worker = cluster.nodes
    cluster_dir = paas.home / "cluster"
    config = cluster_dir / "registry.yml"
    old = config.read_text().split("auth:\n")[0]
    with open(config, "r+") as handle:  # in place: the registry's container has this very file mounted
        handle.write(old)
        handle.truncate()
    manager.docker("restart", manager.docker("ps", "-q", "--filter", "label=minipaas.role=registry").strip())
    before = registry_account(paas)
    for name in ("registry-auth.json", "firewall.json"):
        (cluster_dir / name).unlink()
    _flush(manager)
    ca = str(cluster_dir / "ca.crt")
    assert wait_for(lambda: _status(f"https://{registry}/v2/_catalog", ca) == 200, "the old registry answers", 30)
    # A service as such a cluster ran them: its image by tag, created without a login; no task of it yet, and the
    # node it is to run on has not got the image.
    image = f"{registry}/minipaas/registry:2.8"  # the disk job's, in the registry
    manager.docker("service", "create", "--detach", "--name", "old-service", "--replicas", "0", "--no-resolve-image",
                   "--label", f"minipaas.service={paas.home}", "--constraint", "node.hostname==node-2",
                   "--entrypoint", "sleep", image, "100000")
    worker.docker("image", "rm", "-f", image, check=False)
    assert not worker.docker("image", "ls", "-q", image).strip()

    out = paas.run("cluster:nodes", "--no-disk").stdout
    assert "Upgrading this cluster: its registry takes credentials, its nodes get firewall rules" in out, out
    assert "node-2 was joined by hand: run there the iptables lines of `minipaas cluster:join-command`" in out, out
    account = registry_account(paas)
    assert account != before
    _registry_takes_only(registry, cluster_dir / "ca.crt", account)
    assert manager.refuses_tenants_to(worker.address), manager.minipaas_rules()
    assert "Upgrading" not in paas.run("cluster:nodes", "--no-disk").stdout  # once
    # The old service got the login: its first task pulls the image on node-2, and runs.
    manager.docker("service", "scale", "--detach", "old-service=1")
    wait_for(lambda: manager.docker("service", "ps", "old-service", "--format", "{{.Node}} {{.CurrentState}}")
             .startswith("node-2 Running"), "the old service's task running on node-2", 90)
    manager.docker("service", "rm", "old-service")

    # A manager that rebooted: the kernel's rules gone, the registry started again by the engine. The next cluster
    # command sets the rules again.
    _flush(manager)
    manager.docker("restart", manager.docker("ps", "-q", "--filter", "label=minipaas.role=registry").strip())
    paas.run("cluster:nodes", "--no-disk")
    assert manager.lets_task_ports_answer(cluster.gateway) and manager.refuses_tenants_to(worker.address)


def _flush(node) -> None:  # type: ignore[no-untyped-def]
    node.sh("iptables -D DOCKER-USER -j MINIPAAS-CLUSTER; iptables -D INPUT -j MINIPAAS-CLUSTER; "
            "iptables -F MINIPAAS-CLUSTER; iptables -F MINIPAAS-TENANTS; "
            "iptables -X MINIPAAS-CLUSTER; iptables -X MINIPAAS-TENANTS")
    assert node.minipaas_rules() == []


def _status(url: str, ca: str) -> int:
    try:
        return requests.get(url, verify=ca, timeout=5).status_code
    except requests.RequestException:
        return 0

