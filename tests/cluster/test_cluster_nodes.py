"""Issue 15, docs/cluster-design.md's item 4: `cluster:add ssh://root@HOST` and `cluster:remove NODE`.

One module-scoped cluster: node-1 is the manager (minipaas' engine through DOCKER_HOST, `cluster:init`), node-2 a
host with Docker and sshd (root logs in with a key this test makes), node-3 a host with sshd whose Docker engine
does not run. `cluster:add` goes over real ssh (paramiko to sshd); the added node pulls from the registry. Bad
input: one line, exit 1, nothing left behind (no CA on the host, the Swarm's node list unchanged). Traffic goes
only to loopback and to the node containers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cluster import one_line_error, swarm_state
from tests.helpers.cluster_nodes import Cluster, Node, cluster_nodes, registry_account, start_node, wait_for
from tests.helpers.host import Paas, free_port, paas_host

pytestmark = pytest.mark.engine


@dataclass
class Setup:
    paas: Paas
    cluster: Cluster
    manager: Node
    host: Node  # Docker and sshd
    bare: Node  # sshd, no Docker engine running
    key: Path
    registry: str

    def add(self, url: str, *extra: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.paas.run("cluster:add", url, "-i", str(key or self.key), *extra, check=False)

    def node_ids(self) -> list[str]:
        return sorted(self.manager.docker("node", "ls", "-q").split())


def _sshd_answers(node: Node) -> bool:
    try:
        with socket.create_connection((node.address, 22), timeout=2) as conn:
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _keypair(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[Setup]:
    keys = tmp_path_factory.mktemp("keys")
    key = _keypair(keys, "root")
    public = key.with_suffix(".pub").read_text().strip()
    certs = Path(tempfile.mkdtemp(prefix="minipaas-certs-", dir="/var/tmp"))
    try:
        with paas_host(tmp_path_factory.mktemp("paas") / "work") as paas, \
                cluster_nodes(2, manager_mounts=((str(paas.home), str(paas.home)), (str(certs), "/etc/docker/certs.d")),
                              cpus=0.8, ssh_key=public) as cluster:
            manager, host = cluster.nodes
            bare = start_node(cluster.run, cluster.network, 3, ["-e", f"NODE_SSH_KEY={public}",
                                                                 "-e", "NODE_NO_ENGINE=1"])
            paas.env.update(DOCKER_HOST=manager.engine, MINIPAAS_DOCKER_CERTS=str(certs))
            paas.run("cluster:init", "--advertise-addr", manager.address)
            for node in (host, bare):
                wait_for(lambda node=node: _sshd_answers(node), f"sshd on {node.name}", 30)
            yield Setup(paas=paas, cluster=cluster, manager=manager, host=host, bare=bare, key=key,
                        registry=f"{manager.address}:5000")
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def _certs_dirs(node: Node) -> list[str]:
    return node.sh("ls -A /etc/docker/certs.d 2>/dev/null || true").split()


def test_add_refuses_bad_input_in_one_line_and_leaves_nothing(setup: Setup, tmp_path: Path) -> None:
    before = setup.node_ids()
    assert len(before) == 1

    for url in ("root@10.0.0.5", "http://root@10.0.0.5", "ssh://root@10.0.0.5/path", "ssh://root@10.0.0.5:99999",
                "ssh://root@10.0.0.5;touch /tmp/x", "ssh://root:secret@10.0.0.5", "ssh://"):
        one_line_error(setup.add(url), "cluster:add takes ssh://root@HOST[:PORT]")
    one_line_error(setup.add("ssh://admin@10.0.0.5"), "logs in as root", "'admin'")

    # Not a manager: minipaas' engine is node-2's, in no Swarm.
    result = subprocess.run([*setup.paas.command(), "cluster:add", f"ssh://root@{setup.host.address}",
                             "-i", str(setup.key)], env={**setup.paas.env, "DOCKER_HOST": setup.host.engine},
                            text=True, capture_output=True, timeout=120)
    one_line_error(result, "not in a cluster")

    # Unreachable: a loopback port nothing listens on; a listener that never speaks ssh (the timeout).
    one_line_error(setup.add(f"ssh://root@127.0.0.1:{free_port()}"), "cannot reach", "connection refused")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody answers
        started = time.monotonic()
        result = setup.add(f"ssh://root@127.0.0.1:{silent.getsockname()[1]}", "--timeout", "1")
        waited = time.monotonic() - started
    one_line_error(result, "cannot reach", "no ssh answer within 1s")

    # A key the host does not accept.
    one_line_error(setup.add(f"ssh://root@{setup.host.address}", key=_keypair(tmp_path, "stranger")),
                   "refused the key(s)")

    # A host whose Docker engine does not run (the CLI is there, its daemon is not).
    one_line_error(setup.add(f"ssh://root@{setup.bare.address}"), f"Docker does not answer on {setup.bare.address}",
                   "Cannot connect to the Docker daemon")

    # A host whose key is not the one remembered when minipaas logged in above (accept-new: refused).
    known = setup.paas.home / "cluster" / "known_hosts"
    remembered = known.read_text()
    kind = next(line.split()[1] for line in remembered.splitlines() if line.split()[0] == setup.bare.address)
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(other), "-t",
                    {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(kind, "ecdsa")], check=True)
    known.write_text(f"{setup.bare.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    try:
        one_line_error(setup.add(f"ssh://root@{setup.bare.address}"),
                        f"the host key of {setup.bare.address} has CHANGED")
    finally:
        known.write_text(remembered)

    # A host without the docker command; a host whose engine is in a Swarm of its own.
    setup.bare.sh("mv /usr/bin/docker /usr/bin/docker.away")
    try:
        one_line_error(setup.add(f"ssh://root@{setup.bare.address}"), "has no Docker (`docker` not found there)")
    finally:
        setup.bare.sh("mv /usr/bin/docker.away /usr/bin/docker")
    setup.host.docker("swarm", "init", "--advertise-addr", setup.host.address)
    try:
        one_line_error(setup.add(f"ssh://root@{setup.host.address}"), "already in another Swarm (active)",
                        "`docker swarm leave` there first")
    finally:
        setup.host.docker("swarm", "leave", "--force")

    # The join itself fails (node-2 cannot reach the manager's port 2377): the CA written and the join are
    # undone on the host.
    block = f"OUTPUT -d {setup.manager.address} -p tcp --dport 2377 -j REJECT --reject-with tcp-reset"
    setup.host.sh(f"iptables -I {block}")
    try:
        started = time.monotonic()
        result = setup.add(f"ssh://root@{setup.host.address}")
        join_seconds = time.monotonic() - started
    finally:
        setup.host.sh(f"iptables -D {block}")
    one_line_error(result, f"docker swarm join failed on {setup.host.address}")
    assert "undoing: the join, the registry's CA, the firewall's rules" in result.stdout, result.stdout
    assert "Firewall: its tasks answer nginx on the manager only" in result.stdout, result.stdout

    assert setup.node_ids() == before
    for node in (setup.host, setup.bare):
        assert _certs_dirs(node) == [], node.name
        assert node.minipaas_rules() == [], node.name
        assert node.sh("docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true").strip() in (
            "inactive", ""), node.name
    print(f"\nthe silent host refused after {waited:.1f}s (--timeout 1); the failed join undone after "
          f"{join_seconds:.1f}s: {result.stderr.strip()}")


def test_add_over_ssh_joins_a_ready_worker_that_pulls_from_the_registry(setup: Setup) -> None:
    started = time.monotonic()
    result = setup.add(f"ssh://root@{setup.host.address}")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result
    assert "node-2 is Ready in the cluster" in result.stdout, result.stdout
    assert f"Trusting the registry: /etc/docker/certs.d/{setup.registry}/ca.crt" in result.stdout, result.stdout
    listed = setup.manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}")
    assert sorted(listed.splitlines()) == ["node-1 Ready Active", "node-2 Ready Active"], listed
    assert swarm_state(setup.host) == "active"
    ca = setup.host.sh(f"cat /etc/docker/certs.d/{setup.registry}/ca.crt")
    assert ca == (setup.paas.home / "cluster" / "ca.crt").read_text()
    assert setup.host.address in (setup.paas.home / "cluster" / "known_hosts").read_text()

    # Its firewall (issue 19, item 13): its tasks' ports answer only where nginx comes from (this test host), its
    # containers reach neither the manager nor the Swarm; and the manager's containers reach nothing of it.
    assert setup.host.lets_task_ports_answer(setup.cluster.gateway), setup.host.minipaas_rules()
    assert setup.host.refuses_tenants_to(setup.manager.address), setup.host.minipaas_rules()
    assert setup.manager.refuses_tenants_to(setup.host.address), setup.manager.minipaas_rules()

    # The new node holds no credentials of its own: its engine alone pulls nothing from the registry. A service's
    # tasks pull there all the same, with the login the Swarm hands them: the disk job's task ran on it.
    disks = {n["hostname"]: n["disk"] for n in json.loads(setup.paas.run("cluster:nodes", "--json").stdout)}
    assert disks["node-2"] and disks["node-2"]["size"] > 0, disks
    job_image = setup.manager.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                                     f"{setup.registry}/minipaas/registry").split()
    assert job_image, "the disk job's image is in the registry"
    refused = setup.host.docker("pull", job_image[0], check=False, stderr=True)
    assert "no basic auth credentials" in refused, refused
    account = registry_account(setup.paas)
    assert not any(account[1] in line for line in setup.host.sh(
        "cat /root/.docker/config.json /etc/docker/daemon.json 2>/dev/null || true").splitlines())

    # Adding it again: one line, nothing changes.
    before = setup.node_ids()
    one_line_error(setup.add(f"ssh://root@{setup.host.address}"), "already a node of this cluster (node-2, ready)")
    assert setup.node_ids() == before
    print(f"\ncluster:add over ssh to Ready: {seconds:.1f}s")


def test_remove_refuses_then_removes_a_drained_node_and_one_that_left(setup: Setup) -> None:
    manager, host = setup.manager, setup.host
    before = setup.node_ids()
    assert len(before) == 2

    one_line_error(setup.paas.run("cluster:remove", "no-such-node", check=False), "no node called 'no-such-node'")
    one_line_error(setup.paas.run("cluster:remove", "node-1", check=False),
                   "node-1 is this host, the manager minipaas runs on and its last manager")
    one_line_error(setup.paas.run("cluster:remove", "node-2", check=False), "`minipaas cluster:drain node-2` first")
    assert setup.node_ids() == before

    # Drained (cluster:drain is another change's; the engine's own command here): it leaves over ssh, goes.
    manager.docker("node", "update", "--availability", "drain", "node-2")
    # A drained node takes no task, so no disk job either: `?`, and the manager's disk all the same.
    disks = {n["hostname"]: n["disk"] for n in json.loads(setup.paas.run("cluster:nodes", "--json").stdout)}
    assert disks["node-2"] is None and disks["node-1"]["size"] > disks["node-1"]["free"] > 0, disks
    started = time.monotonic()
    result = setup.paas.run("cluster:remove", "node-2")
    seconds = time.monotonic() - started
    assert "node-2 is no longer in the cluster" in result.stdout, result.stdout
    assert setup.node_ids() == [manager.docker("info", "--format", "{{.Swarm.NodeID}}").strip()]
    assert swarm_state(host) == "inactive"
    assert _certs_dirs(host) == []
    assert host.minipaas_rules() == []  # no rule left behind
    assert not manager.refuses_tenants_to(host.address), manager.minipaas_rules()

    # A node joined by hand (join-command's lines) and drained, still up: minipaas cannot make it leave.
    lines = setup.paas.run("cluster:join-command").stdout
    subprocess.run(["docker", "exec", "-i", host.name, "sh", "-e"], input=lines, text=True, check=True,
                   capture_output=True)
    wait_for(lambda: "node-2 Ready" in manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}"),
             "node-2 joined again and Ready", 60)
    manager.docker("node", "update", "--availability", "drain", "node-2")
    one_line_error(setup.paas.run("cluster:remove", "node-2", check=False),
                   "node-2 is drained but still up", "docker swarm leave")
    assert len(setup.node_ids()) == 2

    # Once it left by itself (down), cluster:remove takes it out of the list.
    assert host.lets_task_ports_answer(setup.cluster.gateway)  # join-command's lines set its firewall
    host.docker("swarm", "leave")
    wait_for(lambda: "node-2 Down" in manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}"),
             "node-2 is down", 60)
    out = setup.paas.run("cluster:remove", "node-2").stdout
    assert len(setup.node_ids()) == 1
    assert "node-2 was not reached: its firewall rules (iptables chains MINIPAAS-CLUSTER, MINIPAAS-TENANTS) stay " \
        "there" in out, out
    assert not manager.refuses_tenants_to(host.address), manager.minipaas_rules()
    print(f"\ncluster:remove of a drained node over ssh: {seconds:.1f}s")
