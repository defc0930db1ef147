"""The nodes' firewall in a cluster (issue 19, item 13; docs/security.md): a task's published port answers only the
manager, and a tenant's container reaches neither another app's task, nor the registry, nor the Swarm.

The Swarm publishes each task's port in host mode on every address of its node, and an app's overlay is all that
keeps apps apart: without these rules any container on any node could open any task's `node:port` (past nginx,
past the per-app networks) and the registry. The rules are iptables rules in two chains of minipaas' own, jumped
to first from Docker's DOCKER-USER (forwarded traffic, before Docker's own rules: what reaches a container) and
from INPUT (what reaches the node itself):

- MINIPAAS-CLUSTER: replies pass. What the engine's bridges send (the containers: tasks, builds, the release
  command) goes through MINIPAAS-TENANTS first. A new connection to a published task port (DNAT'd by the engine to
  a port of its dynamic range, the node's ip_local_port_range) passes only from the allowed address, the one nginx
  and the health checks on the manager come from as this node sees them; from any other it is dropped.
- MINIPAAS-TENANTS: DNS and nginx's ports (apps call each other by their URLs, as anyone may) pass; a container's
  connection to its node itself (a task's port through the engine's proxy, the engine, sshd, the Swarm) is
  refused; to a blocked address refused: on a worker the manager (the registry, the manager's tasks), on the
  manager every node (the manager's own containers leave it with the manager's address, which the nodes let in);
  to the Swarm's ports anywhere refused (2377 joining, 7946 gossip, 4789 VXLAN: a forged VXLAN packet would land
  in another app's overlay).

The rules are rendered here as text (pure: tested as text) and loaded with `iptables-restore --noflush`, which
replaces both chains in one step, by the iptables whose tables hold Docker's DOCKER-USER chain (nf_tables or
legacy: whichever the engine uses). On the manager through its engine (a helper container in its network
namespace, engine.host_network), on a node `cluster:add` brings over ssh, on a node joined by hand by the lines
`cluster:join-command` prints. IPv4 only: the engine publishes no IPv6 port unless configured to.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from minipaas.adapters import engine, localaddr
from minipaas.build import hostimages
from minipaas.cluster import registry
from minipaas.errors import Conflict, EngineError, InvalidInput, MinipaasError
from minipaas.state import perms
from minipaas.state.settings import Settings

if TYPE_CHECKING:
    import paramiko

CHAIN = "MINIPAAS-CLUSTER"
TENANTS = "MINIPAAS-TENANTS"
HOOKS = ("DOCKER-USER", "INPUT")
BRIDGES = ("docker0", "docker_gwbridge", "br-+")  # the engine's bridges: the default one, the Swarm's, user-defined
SWARM_TCP, SWARM_UDP = "2377,7946", "4789,7946"
BINARIES = ("iptables", "iptables-nft", "iptables-legacy")
PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
RULES_FILE = "/tmp/minipaas-cluster.rules"
SHELL_PORTS = "$ports"  # in the lines printed for a host joined by hand: its own range, read by the line before


@dataclass(frozen=True)
class Rules:
    """One node's rules: who may open its tasks' ports, what its containers may not reach, its range of dynamic
    ports (`32768:60999`), nginx's ports (http, https)."""

    allowed: tuple[str, ...]
    blocked: tuple[str, ...]
    ports: str
    front: tuple[int, ...]


def _ipv4(addresses: Iterable[str]) -> list[str]:
    found = set()
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidInput(f"not an IP address: {address[:60]!r}") from None
        if parsed.version == 4:
            found.add(str(parsed))
    return sorted(found, key=ipaddress.ip_address)


def port_range(text: str) -> str:
    """`32768\\t60999` (ip_local_port_range) as iptables writes a range: `32768:60999`."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts) or int(parts[0]) > int(parts[1]):
        raise EngineError(f"unexpected {PORT_RANGE}: {text.strip()[:40]!r}")
    return ":".join(parts)


def render(rules: Rules) -> str:
    """The rules as `iptables-restore --noflush` takes them (both chains replaced at COMMIT)."""
    if rules.ports != SHELL_PORTS and not re.fullmatch(r"\d{1,5}:\d{1,5}", rules.ports):
        raise InvalidInput(f"not a port range: {rules.ports[:20]!r}")
    task_ports = f"-p tcp -m conntrack --ctstate DNAT --ctorigdstport {rules.ports}"
    front = ",".join(str(int(port)) for port in rules.front)
    return "\n".join([
        "*filter", f":{CHAIN} - [0:0]", f":{TENANTS} - [0:0]",
        f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        *(f"-A {CHAIN} -i {bridge} -j {TENANTS}" for bridge in BRIDGES),
        *(f"-A {CHAIN} -s {address}/32 {task_ports} -j RETURN" for address in _ipv4(rules.allowed)),
        f"-A {CHAIN} {task_ports} -j DROP",
        f"-A {TENANTS} -p udp --dport 53 -j RETURN",
        f"-A {TENANTS} -p tcp -m multiport --dports 53{',' + front if front else ''} -j RETURN",
        f"-A {TENANTS} -m addrtype --dst-type LOCAL -j REJECT",
        *(f"-A {TENANTS} -m conntrack --ctorigdst {address}/32 -j REJECT" for address in _ipv4(rules.blocked)),
        f"-A {TENANTS} -p tcp -m multiport --dports {SWARM_TCP} -j REJECT",
        f"-A {TENANTS} -p udp -m multiport --dports {SWARM_UDP} -j REJECT",
        "COMMIT", ""])


def join_lines(rules: Rules) -> list[str]:
    """The same for a host joined by hand: shell lines (its own iptables, its own port range)."""
    text = render(Rules(rules.allowed, rules.blocked, SHELL_PORTS, rules.front))
    lines = [f"ports=$(tr -s '\\t ' ':' < {PORT_RANGE})", "iptables-restore --noflush <<EOF", *text.splitlines(),
             "EOF"]
    return lines + [f"iptables -C {hook} -j {CHAIN} 2>/dev/null || iptables -I {hook} 1 -j {CHAIN}"
                    for hook in HOOKS]


class Shell(Protocol):
    """Where the rules are applied: argument lists run as root in the node's network namespace."""

    where: str

    def run(self, argv: list[str]) -> tuple[int, str]: ...

    def restore(self, binary: str, text: str) -> tuple[int, str]: ...


def _iptables(shell: Shell) -> str:
    """The iptables whose tables hold the engine's DOCKER-USER chain."""
    for binary in BINARIES:
        if shell.run([binary, "-S", "DOCKER-USER"])[0] == 0:
            return binary
    raise Conflict(f"{shell.where} has no DOCKER-USER chain in iptables (nf_tables or legacy): its Docker engine "
                   "must manage iptables (dockerd's default, `iptables: true`)")


def apply(shell: Shell, *, allowed: Iterable[str], blocked: Iterable[str], front: Iterable[int]) -> Rules:
    """The node's rules (re)placed, its port range read there; returns them."""
    binary = _iptables(shell)
    status, output = shell.run(["cat", PORT_RANGE])
    if status != 0:
        raise EngineError(f"cannot read {PORT_RANGE} on {shell.where}: {output.strip()[:200]}")
    rules = Rules(tuple(_ipv4(allowed)), tuple(_ipv4(blocked)), port_range(output), tuple(front))
    status, output = shell.restore(binary, render(rules))
    if status != 0:
        raise EngineError(f"{binary}-restore refused the cluster's rules on {shell.where}: {_first(output)}")
    for hook in HOOKS:
        if shell.run([binary, "-C", hook, "-j", CHAIN])[0] != 0:
            status, output = shell.run([binary, "-I", hook, "1", "-j", CHAIN])
            if status != 0:
                raise EngineError(f"{binary} -I {hook} refused on {shell.where}: {_first(output)}")
    return rules


def remove(shell: Shell) -> None:
    """No rule of minipaas' left on the node (whichever iptables holds them; none: nothing to do)."""
    for binary in BINARIES:
        if shell.run([binary, "-S", CHAIN])[0] != 0:
            continue
        for hook in HOOKS:
            for _ in range(10):  # a jump inserted twice (by hand) goes too
                if shell.run([binary, "-D", hook, "-j", CHAIN])[0] != 0:
                    break
        for chain in (CHAIN, TENANTS):
            shell.run([binary, "-F", chain])
        for chain in (CHAIN, TENANTS):
            shell.run([binary, "-X", chain])


def _first(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip() and not line.startswith("# Warning")]
    return lines[0][:200] if lines else "no reason given"


class SshShell:
    """A node over ssh (cluster:add's connection, as root)."""

    def __init__(self, client: paramiko.SSHClient, where: str) -> None:
        self.client, self.where = client, where

    def run(self, argv: list[str]) -> tuple[int, str]:
        # paramiko is imported where ssh is used: every push imports this module, and paramiko costs 0.1 s.
        from minipaas.adapters import sshclient

        done = sshclient.run(self.client, argv, timeout=60)
        return done.status, done.stderr + done.stdout

    def restore(self, binary: str, text: str) -> tuple[int, str]:
        from minipaas.adapters import sshclient

        done = sshclient.run(self.client, [f"{binary}-restore", "--noflush"], input=text.encode(), timeout=60)
        return done.status, done.stderr + done.stdout


class _EngineShell:
    """The manager, through its engine (a helper container in its network namespace)."""

    where = "the manager"

    def __init__(self, host: engine.HostShell) -> None:
        self.host = host

    def run(self, argv: list[str]) -> tuple[int, str]:
        return self.host.run(argv)

    def restore(self, binary: str, text: str) -> tuple[int, str]:
        self.host.write(RULES_FILE, text.encode())
        return self.host.run([f"{binary}-restore", "--noflush", RULES_FILE])


# -- the manager's own rules, and what a node is given ----------------------------------------------------------


def _state_file(settings: Settings) -> Path:
    return registry.folder(settings) / "firewall.json"


def _labels(settings: Settings) -> dict[str, str]:
    return {engine.LABEL: str(settings.home), registry.ROLE_LABEL: "firewall"}


@dataclass(frozen=True)
class _Wanted:
    """The manager's rules as they should be now: nginx's address as the manager sees it; every node's address
    (the manager's containers may reach none); when the registry's container last started (the rules are the
    kernel's, gone after the manager reboots, and the registry, restarted with the engine, tells that cheaply)."""

    allowed: list[str]
    blocked: list[str]
    since: int

    @classmethod
    def now(cls, settings: Settings, advertise: str) -> _Wanted:
        try:
            since = engine.inspect(registry.container_name(settings)).started_ns
        except MinipaasError:
            since = 0
        return cls(allowed=_ipv4([localaddr.source_toward(advertise)]),
                   blocked=_ipv4([advertise, *(n.address for n in engine.swarm.nodes() if n.address)]), since=since)


def front(settings: Settings) -> tuple[int, int]:
    return (settings.http_port, settings.https_port)


def set_manager(settings: Settings, advertise: str) -> Rules:
    """The manager's rules (re)placed through its engine, and recorded."""
    wanted = _Wanted.now(settings, advertise)
    image = hostimages.ensure(settings, "registry", lambda _line: None)
    with engine.host_network(image, labels=_labels(settings)) as host:
        rules = apply(_EngineShell(host), allowed=wanted.allowed, blocked=wanted.blocked, front=front(settings))
    perms.write_file(_state_file(settings), json.dumps(asdict(wanted)).encode(), perms.PRIVATE_FILE)
    return rules


def recorded(settings: Settings) -> bool:
    """Whether this cluster's manager had its rules set (a cluster made before them had not)."""
    return _state_file(settings).is_file()


def refresh_manager(settings: Settings, advertise: str) -> bool:
    """The manager's rules set again if the nodes changed since (a host joined by hand, a node gone) or the manager
    restarted (a reboot empties the kernel's tables); True if so. Called before the Swarm places tasks, by every
    cluster command and every 10 s by the watcher: a node's tasks are never reachable from the manager's
    containers for long."""
    try:
        recorded = json.loads(_state_file(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False  # a cluster made before the firewall: a `cluster:*` command sets it (upgrade.py)
    except (OSError, ValueError):
        recorded = {}
    if recorded == asdict(_Wanted.now(settings, advertise)):
        return False
    set_manager(settings, advertise)
    return True


def remove_manager(settings: Settings) -> None:
    """The manager's rules gone (none set, as when `cluster:init` failed before: nothing to do)."""
    image = hostimages.REGISTRY.tag
    if engine.image_id(image) is None:  # the image that set them is there whenever rules are
        return
    with engine.host_network(image, labels=_labels(settings)) as host:
        remove(_EngineShell(host))
    _state_file(settings).unlink(missing_ok=True)


def set_node(shell: Shell, settings: Settings, advertise: str, node_address: str) -> Rules:
    """A worker's rules: its tasks answer nginx's address as that node sees it; its containers reach neither the
    manager nor the Swarm."""
    return apply(shell, allowed=[localaddr.source_toward(node_address)], blocked=[advertise], front=front(settings))
