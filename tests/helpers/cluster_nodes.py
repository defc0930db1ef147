"""Docker engines as cluster nodes, in containers on this one machine (tests only; issue 15).

`node_image()` makes the node image once per run (cached by its recipe across runs): the host's cached Debian
root filesystem (minipaas/build/rootfs.py) imported, plus Debian's docker.io, iptables, ca-certificates and
docker-registry installed by a Dockerfile on it (~16 s the first time). `cluster_nodes(n)` starts n nodes on a
bridge network of their own, each with /var/lib/docker on a named volume, and waits for each dockerd with a
deadline; on the way out (failure included) the containers, volumes and network labelled with the run's id go.

This host withholds CAP_SYS_RESOURCE, so `--privileged` fails: the flags below are the ones issue 15 found to
work, and the node's start script remounts /sys and the cgroup v1 folders read-write before dockerd. Each
dockerd also listens on tcp:2375 without TLS, reachable only on the test's own network: that is how the test
host (and minipaas, through DOCKER_HOST) talks to a node's engine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.helpers.host import Paas

LABEL = "minipaas-test.cluster"  # its value: the run's id (containers, volumes, network)
IMAGE_REPOSITORY = "minipaas-test/cluster-node"
ROOT_REPOSITORY = "minipaas-test/cluster-root"
ENGINE_PORT = 2375
START_DEADLINE = 60.0
BASE_IMAGE = "minipaas/node:26"  # tests/apps/dockerfile's FROM, made on this host by the session's engine_ready

START_SCRIPT = """\
#!/bin/sh
# A Docker engine in a container without --privileged: /sys and the cgroup v1 folders come read-only.
set -e
if [ -n "$NODE_SSH_KEY" ]; then  # cluster:add's tests: root logs in over ssh with this key, host keys made here
    mkdir -p /root/.ssh /run/sshd
    printf '%s\n' "$NODE_SSH_KEY" > /root/.ssh/authorized_keys
    ssh-keygen -A
    [ -z "$NODE_NO_ENGINE" ] || exec /usr/sbin/sshd -D -e  # a host without a running Docker engine
    /usr/sbin/sshd
fi
mount -o remount,rw /sys
for folder in /sys/fs/cgroup/*/; do
    mount -o remount,bind,rw "$folder" 2>/dev/null || true
done
# dockerd is not PID 1: SIGTERM to it (what `systemctl restart docker` sends) stops it and this loop starts it again,
# in the same network namespace and with the same volumes, as a package upgrade restarts a real host's engine.
# SIGTERM to the container (`docker stop`) stops dockerd and ends the loop.
stopping=
trap 'stopping=1; kill -TERM "$engine" 2>/dev/null || true' TERM INT
while [ -z "$stopping" ]; do
    dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2375 --tls=false "$@" &
    engine=$!
    wait "$engine" || true  # returns early when the trap ran: then wait for dockerd itself
    wait "$engine" 2>/dev/null || true
    [ -n "$stopping" ] || sleep 0.5
done
"""

DOCKERFILE = """\
FROM {root}
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
    docker.io iptables ca-certificates docker-registry openssh-server \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /etc/ssh/ssh_host_*
COPY start-node /usr/local/sbin/start-node
LABEL minipaas-test=cluster-node
CMD ["/usr/local/sbin/start-node"]
"""

NODE_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "--tmpfs", "/run", "--tmpfs", "/tmp",
    "--memory", "768m",
)


def docker(*args: str, input: bytes | None = None, timeout: float = 300, check: bool = True,
           env: dict[str, str] | None = None, stderr: bool = False) -> str:
    """The docker CLI's output (`stderr`: its error output after it)."""
    result = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace').strip()}")
    return (result.stdout + (result.stderr if stderr else b"")).decode(errors="replace")


def _rootfs() -> Path:
    from minipaas.build import rootfs

    return rootfs.base(Path(os.environ.get("MINIPAAS_HOST_CACHE", "/var/cache/minipaas")), lambda _line: None)


@functools.cache
def node_image() -> str:
    """The node image's tag, made unless an image of the same recipe (root filesystem, Dockerfile, start
    script) is there already."""
    tarball = _rootfs()
    stat = tarball.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}\n{DOCKERFILE}\n{START_SCRIPT}".encode()).hexdigest()
    tag = f"{IMAGE_REPOSITORY}:{digest[:12]}"
    if docker("images", "-q", tag).strip():
        return tag
    root = f"{ROOT_REPOSITORY}:{digest[:12]}"
    docker("import", "-c", 'CMD ["/bin/bash"]', "-c", "LABEL minipaas-test=cluster-root", str(tarball), root)
    with tempfile.TemporaryDirectory(prefix="cluster-node-") as context:
        Path(context, "Dockerfile").write_text(DOCKERFILE.format(root=root))
        script = Path(context, "start-node")
        script.write_text(START_SCRIPT)
        script.chmod(0o755)
        docker("build", "-q", "-t", tag, context, timeout=900)
    docker("rmi", root, check=False)
    return tag


@dataclass
class Node:
    name: str
    address: str  # on the test's network

    @property
    def engine(self) -> str:
        """Its engine, as DOCKER_HOST."""
        return f"tcp://{self.address}:{ENGINE_PORT}"

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 300,
               check: bool = True, stderr: bool = False) -> str:
        """The docker CLI inside the node, against its own engine."""
        return docker("exec", *(["-i"] if input is not None else []), self.name, "docker", *args, input=input,
                      timeout=timeout, check=check, stderr=stderr)

    def sh(self, script: str, *, check: bool = True) -> str:
        return docker("exec", self.name, "sh", "-c", script, check=check)

    def minipaas_rules(self) -> list[str]:
        """The node's iptables rules that name minipaas' chains (the firewall of issue 19's item 13)."""
        return [line for line in self.sh("iptables-save -t filter 2>/dev/null || true").splitlines()
                if "MINIPAAS" in line]

    def refuses_tenants_to(self, address: str) -> bool:
        """Whether the node's firewall refuses its containers any connection to `address`."""
        return any(line.startswith("-A MINIPAAS-TENANTS") and f"--ctorigdst {address} " in f"{line} "
                   and "-j REJECT" in line for line in self.minipaas_rules())

    def lets_task_ports_answer(self, address: str) -> bool:
        """Whether the node's firewall lets `address` (and only it) open its tasks' published ports."""
        rules = self.minipaas_rules()
        return (any(line.startswith(f"-A MINIPAAS-CLUSTER -s {address}/32 -p tcp") and "--ctorigdstport" in line
                    and line.endswith("-j RETURN") for line in rules)
                and any(line.startswith("-A MINIPAAS-CLUSTER -p tcp") and "--ctstate DNAT --ctorigdstport" in line
                        and line.endswith("-j DROP") for line in rules)
                and "-A DOCKER-USER -j MINIPAAS-CLUSTER" in rules and "-A INPUT -j MINIPAAS-CLUSTER" in rules)

    def restart_engine(self, deadline: float = 120.0) -> float:
        """The node's dockerd sent SIGTERM (what `systemctl restart docker` does first: it stops the node's
        containers and exits) and started again by the start script's loop; returns the seconds until the new one
        answers."""
        old = self.sh("cat /var/run/docker.pid").strip()
        started = time.monotonic()
        self.sh(f"kill -TERM {old}")
        wait_for(lambda: self.sh("cat /var/run/docker.pid 2>/dev/null || true").strip() not in ("", old)
                 and self.answers(), f"the engine of {self.name} answers again", deadline, poll=0.1)
        return time.monotonic() - started

    def answers(self) -> bool:
        conn = http.client.HTTPConnection(self.address, ENGINE_PORT, timeout=2)
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


@dataclass
class Cluster:
    run: str
    network: str
    nodes: list[Node]

    @property
    def gateway(self) -> str:
        """This test host's address on the nodes' network: where nginx and the health checks come from."""
        return docker("network", "inspect", self.network, "--format", "{{(index .IPAM.Config 0).Gateway}}").strip()


def registry_account(paas: Paas) -> tuple[str, str]:
    """The cluster registry's user and password, as the manager keeps them (root only)."""
    data = json.loads((paas.home / "cluster" / "registry-auth.json").read_text())
    return str(data["username"]), str(data["password"])


def wait_for(condition: object, what: str, deadline: float = 60.0, poll: float = 0.2) -> object:
    """`condition()`'s first true value within `deadline` seconds, else an AssertionError naming `what`."""
    end = time.monotonic() + deadline
    while True:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:.0f}s: {what}")
        time.sleep(poll)


@contextlib.contextmanager
def cluster_nodes(count: int, *, manager_mounts: tuple[tuple[str, str], ...] = (),
                  cpus: float = 0.5, ssh_key: str | None = None) -> Iterator[Cluster]:
    """`count` node containers on a network of their own, each dockerd answering; all removed on the way out.

    `manager_mounts`: (host path, path in the node) bind mounts of the first node only. `cpus`: each node's
    share (modest: another suite shares this machine's two cores). `ssh_key`: a public key; every node but the
    first then runs sshd, root logging in with that key (cluster:add's tests)."""
    node_image()  # made before the first container, outside the try: a failed build leaves nothing
    run = uuid.uuid4().hex[:10]
    network = f"mpt-cluster-{run}"
    nodes: list[Node] = []
    try:
        docker("network", "create", "--label", f"{LABEL}={run}", network)
        for index in range(1, count + 1):
            mounts = [arg for host, inside in (manager_mounts if index == 1 else ())
                      for arg in ("-v", f"{host}:{inside}")]
            env = ["-e", f"NODE_SSH_KEY={ssh_key}"] if ssh_key and index > 1 else []
            nodes.append(start_node(run, network, index, [*mounts, *env], cpus))
        for node in nodes:
            wait_for(node.answers, f"the engine of {node.name} answers", START_DEADLINE)
        yield Cluster(run=run, network=network, nodes=nodes)
    finally:
        remove_run(run)


def start_node(run: str, network: str, index: int, args: list[str], cpus: float = 0.5) -> Node:
    """Node container `index` of the run (hostname node-<index>), not waited for; `args`: more `docker run`
    options. `-e NODE_SSH_KEY=<public key> -e NODE_NO_ENGINE=1` makes a host that answers ssh but runs no
    Docker engine (the docker CLI is there, its daemon is not)."""
    name = f"mpt-node-{run}-{index}"
    label = f"{LABEL}={run}"
    docker("volume", "create", "--label", label, name)
    docker("run", "-d", "--name", name, "--hostname", f"node-{index}", "--label", label, "--network", network,
           *NODE_FLAGS, "--cpus", str(cpus), "-v", f"{name}:/var/lib/docker", *args, node_image())
    address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).strip()
    return Node(name=name, address=address)


def remove_run(run: str) -> None:
    """Everything labelled with the run: containers, then their volumes, then the network."""
    label = f"label={LABEL}={run}"
    containers = docker("ps", "-aq", "--filter", label, check=False).split()
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", label, check=False).split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    networks = docker("network", "ls", "-q", "--filter", label, check=False).split()
    if networks:
        docker("network", "rm", *networks, check=False)


@contextlib.contextmanager
def manager_nodes(paas: Paas, count: int) -> Iterator[Cluster]:
    """`count` node containers, the first one the minipaas host's engine (DOCKER_HOST in `paas.env`; the home and
    the registry's trust folder mounted at the same paths, as a real manager shares them with minipaas), the app's
    base image loaded into it (the build happens there); no Swarm yet."""
    certs = Path(tempfile.mkdtemp(prefix="minipaas-certs-", dir="/var/tmp"))
    try:
        with cluster_nodes(count, manager_mounts=((str(paas.home), str(paas.home)),
                                                  (str(certs), "/etc/docker/certs.d")), cpus=0.8) as cluster:
            _copy_image(BASE_IMAGE, None, cluster.nodes[0].engine)
            _load_registry_image(cluster.nodes[0])
            paas.env.update(DOCKER_HOST=cluster.nodes[0].engine, MINIPAAS_DOCKER_CERTS=str(certs))
            yield cluster
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def init_cluster(paas: Paas, cluster: Cluster) -> None:
    """`cluster:init` on the first node, the others joined with `cluster:join-command`'s lines."""
    manager, *workers = cluster.nodes
    paas.run("cluster:init", "--advertise-addr", manager.address)
    _keep_registry_image(manager)
    lines = paas.run("cluster:join-command").stdout
    for worker in workers:
        subprocess.run(["docker", "exec", "-i", worker.name, "sh", "-e"], input=lines, text=True,
                       check=True, capture_output=True)
    wait_for(lambda: manager.docker("node", "ls", "--format", "{{.Status}} {{.Availability}}")
             .split("\n").count("Ready Active") == len(cluster.nodes),
             f"{len(cluster.nodes)} nodes Ready and Active", 60)


@contextlib.contextmanager
def manager_host(paas: Paas, count: int = 3) -> Iterator[Cluster]:
    """A cluster of `count` nodes whose first node is the minipaas host's engine, made by `cluster:init` and
    `cluster:join-command`."""
    with manager_nodes(paas, count) as cluster:
        init_cluster(paas, cluster)
        yield cluster


def _copy_image(image: str, source: str | None, target: str | None) -> None:
    """`docker save | docker load` from one engine to another (None: this host's)."""
    save = subprocess.Popen(["docker", *(["-H", source] if source else []), "save", image], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", *(["-H", target] if target else []), "load", "-q"], stdin=save.stdout,
                          capture_output=True, timeout=300)
    assert save.stdout is not None
    save.stdout.close()
    assert save.wait(timeout=60) == 0 and load.returncode == 0, load.stderr


def _registry_recipe(engine: str | None) -> tuple[str, str]:
    """The registry image's tag, and whether the engine's copy is of the current recipe ("" if not)."""
    from minipaas.build import hostimages

    spec = hostimages.REGISTRY
    out = subprocess.run(["docker", *(["-H", engine] if engine else []), "image", "inspect", "-f",
                          f'{{{{index .Config.Labels "{hostimages.RECIPE_LABEL}"}}}}', spec.tag],
                         capture_output=True, text=True)
    current = out.returncode == 0 and out.stdout.strip() == hostimages.recipe(spec)
    return spec.tag, "yes" if current else ""


def _load_registry_image(manager: Node) -> None:
    """The registry's image from this host's engine when an earlier cluster of the run (or of an earlier run) left
    it there: `cluster:init` then skips its build (~20-30 s); else the manager builds it as a real one would."""
    tag, current = _registry_recipe(None)
    if current:
        _copy_image(tag, None, manager.engine)


def _keep_registry_image(manager: Node) -> None:
    """The registry image the manager built, kept on this host's engine for the next cluster's manager."""
    tag, current = _registry_recipe(None)
    if not current and _registry_recipe(manager.engine)[1]:
        _copy_image(tag, manager.engine, None)


# A tenant's attempts from inside its task (issue 19, item 13): for each `host:port` target (`GATEWAY` stands for the
# container's default gateway: its node, through the engine's bridge), connect, send a GET, and say what came back.
# Printed: {"gateway": ..., "env": the task's environment, "results": {target: outcome}}.
PROBE = r"""
const net = require("net");
const fs = require("fs");
let gateway = "";
for (const line of fs.readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
  const f = line.trim().split(/\s+/);
  if (f[1] === "00000000" && f[2]) gateway = [3, 2, 1, 0].map(i => parseInt(f[2].substr(i * 2, 2), 16)).join(".");
}
const targets = JSON.parse(process.argv[process.argv.length - 1]).map(t => t.replace("GATEWAY", gateway));
Promise.all(targets.map(t => new Promise(done => {
  const i = t.lastIndexOf(":");
  const s = net.connect(Number(t.slice(i + 1)), t.slice(0, i));
  let got = "", connected = false;
  const end = (what) => { s.destroy(); done([t, what]); };
  s.setTimeout(3000, () => end(connected ? "connected: " + got : "timeout"));
  s.on("connect", () => { connected = true; s.write("GET / HTTP/1.0\r\nHost: x\r\n\r\n"); });
  s.on("data", d => { got += d; });
  s.on("end", () => end("answered: " + got));
  s.on("error", e => end(connected ? "answered: " + got : "error " + e.code));
}))).then(r => console.log(JSON.stringify({gateway, env: process.env, results: Object.fromEntries(r)})));
"""


def probe(node: Node, container: str, targets: list[str]) -> dict[str, object]:
    """PROBE run in `container` (a task's, on `node`), as the tenant's own code would run there."""
    return dict(json.loads(node.docker("exec", container, "node", "-e", PROBE, json.dumps(targets))))


def blocked(outcome: str) -> bool:
    """A connection refused, unreachable or never answered: nothing reached a listener."""
    return outcome == "timeout" or outcome.startswith("error ")
