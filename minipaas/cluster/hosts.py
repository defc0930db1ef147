"""Hosts joining and leaving the cluster: `cluster:add ssh://root@HOST[:PORT]` and `cluster:remove NODE`.

`add` logs in to the host as root over ssh (paramiko, `adapters/sshclient`): key authentication, the host key
trusted on first use and kept in `MINIPAAS_HOME/cluster/known_hosts` (ssh's StrictHostKeyChecking=accept-new; a
changed key is refused). It checks that Docker answers there and that the engine is in no Swarm, sets the host's
firewall (firewall.py), writes the registry's CA into `/etc/docker/certs.d/<registry>/ca.crt`, runs `docker swarm
join` with the worker token (paused: it takes no task until the manager's own firewall names it) and waits until
the manager lists the node Ready. A failure at any step undoes the earlier ones (the CA file as it was, the join,
the rules), so the host is as before. Every remote command is an argument list quoted by `sshclient.run`:
nothing the user typed is read by a shell as code. The hosts added this way are remembered with their ssh
address (`cluster/hosts.json`), which lets `remove` make one leave.

`remove` takes a node out of the Swarm: never this host (the manager minipaas runs on, the last manager), never
another manager (demote it first), never a node that is up and not drained (`cluster:drain` first: its tasks
move before it goes). A drained node that is still up leaves over ssh if `add` brought it (the registry's CA and
the firewall's rules removed with it), else its owner runs `docker swarm leave` there; once it is down, `docker
node rm`, and the manager's firewall forgets it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from minipaas.adapters import engine, sshclient
from minipaas.cluster import firewall, membership, registry
from minipaas.errors import Conflict, EngineError, InvalidInput, MinipaasError
from minipaas.progress import Progress
from minipaas.state import perms
from minipaas.state.settings import Settings

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT = 10.0  # seconds for the TCP connection, the ssh banner, the authentication: each
COMMAND_TIMEOUT = 90.0  # `docker swarm join` itself waits up to about 20 s for the manager
READY_DEADLINE = 60.0
CERTS = "/etc/docker/certs.d"
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.?)*")
USAGE = "ssh://root@HOST[:PORT]"


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://root@{host}" + (f":{self.port}" if self.port != 22 else "")


def parse(url: str) -> Target:
    """`ssh://root@HOST[:PORT]` (the user may be left out: root), or a one-line refusal."""
    bad = InvalidInput(f"cluster:add takes {USAGE}, got {url[:80]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port or 22
    except ValueError:
        raise bad from None
    if parts.scheme != "ssh" or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise bad
    host = parts.hostname or ""
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    if not host or not (HOST_NAME.fullmatch(host) or ":" in host) or len(host) > 253:
        raise bad
    if (parts.username or "root") != "root":
        raise InvalidInput(f"cluster:add logs in as root (it writes {CERTS} and runs docker swarm join): "
                           f"{USAGE}, got user {parts.username[:32]!r}")
    return Target(host=host, port=port)


def _hosts_file(settings: Settings) -> Path:
    return registry.folder(settings) / "hosts.json"


def _added(settings: Settings) -> dict[str, dict[str, str]]:
    """The hosts `add` brought in: node id → {"ssh": address, "identity": key file or ""}."""
    try:
        return dict(json.loads(_hosts_file(settings).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def _remember(settings: Settings, node_id: str, entry: dict[str, str] | None) -> None:
    known = _added(settings)
    if entry is None:
        known.pop(node_id, None)
    else:
        known[node_id] = entry
    perms.write_file(_hosts_file(settings), json.dumps(known, indent=1).encode(), perms.PRIVATE_FILE)


def _connect(settings: Settings, target: Target, identity: Path | None, timeout: float) -> paramiko.SSHClient:
    return sshclient.connect_accept_new(target.host, port=target.port, user="root",
                                        known_hosts=registry.folder(settings) / "known_hosts",
                                        identity=identity, timeout=timeout)


def _remote(client: paramiko.SSHClient, *argv: str, input: bytes = b"") -> sshclient.Result:
    return sshclient.run(client, argv, input=input, timeout=COMMAND_TIMEOUT)


def _engine(client: paramiko.SSHClient, target: Target) -> tuple[str, str, str]:
    """The remote engine's version, Swarm state and node id; a one-line refusal without a running Docker."""
    version = _remote(client, "docker", "version", "--format", "{{.Server.Version}}")
    if version.status == 127:
        raise Conflict(f"{target.host} has no Docker (`docker` not found there): install it (Debian: docker.io)")
    if version.status != 0 or not version.stdout.strip():  # `docker info --format` would hide the reason
        raise Conflict(f"Docker does not answer on {target.host}: {version.reason()}")
    info = _remote(client, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}|{{.Swarm.NodeID}}")
    if info.status != 0:
        raise Conflict(f"Docker does not answer on {target.host}: {info.reason()}")
    state, _, node_id = info.stdout.strip().partition("|")
    return version.stdout.strip(), state, node_id


def add(settings: Settings, url: str, identity: Path | None, timeout: float, progress: Progress) -> str:
    """The host at `url` joins the cluster as a worker trusting the registry; returns its node id."""
    target = parse(url)
    if identity is not None and not identity.is_file():
        raise InvalidInput(f"no key file {identity}")
    now = membership.require_manager()
    where, advertise = membership.registry_address(settings), membership.advertise_address(settings)
    if not where or not advertise:
        raise Conflict("this Swarm has no minipaas registry (`minipaas cluster:init` did not make it)")
    ca = registry.files(settings).ca_cert.read_bytes()
    token = engine.swarm.join_token("worker")
    progress(f"-----> Connecting to {target} (timeout {timeout:g}s)")
    with _connect(settings, target, identity, timeout) as client:
        version, state, remote_id = _engine(client, target)
        progress(f"       Docker {version} answers")
        if state != "inactive":
            member = next((n for n in engine.swarm.nodes() if n.id == remote_id), None)
            if member is not None:
                raise Conflict(f"{target.host} is already a node of this cluster ({member.hostname}, "
                               f"{member.status})")
            raise Conflict(f"{target.host}'s engine is already in another Swarm ({state}): "
                           "`docker swarm leave` there first")
        put_back: Callable[[], None] | None = None
        joining, node_id, shell = False, "", firewall.SshShell(client, target.host)
        try:
            progress("-----> Firewall: its tasks answer nginx on the manager only; its containers reach neither "
                     "the manager nor the Swarm")
            firewall.set_node(shell, settings, advertise, _peer(client, target))
            progress(f"-----> Trusting the registry: {CERTS}/{where}/ca.crt")
            put_back = _write_ca(client, where, ca)
            progress(f"-----> Joining the Swarm at {now.address}:{engine.swarm.SWARM_PORT} as a worker")
            joining = True
            joined = _remote(client, "docker", "swarm", "join", "--availability", "pause", "--token", token,
                             f"{now.address}:{engine.swarm.SWARM_PORT}")
            node_id = _engine(client, target)[2]
            if joined.status != 0 or not node_id:
                raise EngineError(f"docker swarm join failed on {target.host}: {joined.reason()}")
            hostname = _wait_ready(node_id)
            firewall.set_manager(settings, advertise)  # the manager's containers reach none of its tasks
            engine.swarm.set_availability(node_id, "active")
            _remember(settings, node_id, {"ssh": str(target), "identity": str(identity.resolve() if identity else "")})
        except BaseException:
            progress("!     undoing: the join, the registry's CA, the firewall's rules")
            steps = (lambda: joining and _remote(client, "docker", "swarm", "leave", "--force"),
                     lambda: node_id and engine.swarm.remove_node(node_id, force=True),  # our own half-join only
                     lambda: put_back and put_back(),
                     lambda: firewall.remove(shell))
            for step in steps:
                with contextlib.suppress(MinipaasError):
                    step()
            raise
    progress(f"=====> {hostname} is Ready in the cluster (node {node_id[:12]}); `minipaas cluster:nodes` lists it")
    return node_id


def _peer(client: paramiko.SSHClient, target: Target) -> str:
    """The address the ssh connection reached the host at (its name resolved as the connection did)."""
    transport = client.get_transport()
    peer = transport.getpeername() if transport is not None else None
    return str(peer[0]) if peer else target.host


def _write_ca(client: paramiko.SSHClient, where: str, ca: bytes) -> Callable[[], object]:
    """certs.d/<registry>/ca.crt on the remote host; returns what puts things back as they were."""
    folder = f"{CERTS}/{where}"
    path = f"{folder}/ca.crt"
    had_folder = _remote(client, "test", "-d", folder).status == 0
    before = _remote(client, "cat", path)

    def put_back() -> None:
        if before.status == 0:
            _remote(client, "tee", path, input=before.stdout.encode())
        else:
            _remote(client, "rm", "-f", path)
            if not had_folder:
                _remote(client, "rmdir", folder)

    for argv in (("mkdir", "-p", folder), ("tee", path), ("chmod", "0644", path)):
        done = _remote(client, *argv, input=ca if argv[0] == "tee" else b"")
        if done.status != 0:
            put_back()
            raise EngineError(f"cannot write {path} on the host: {done.reason()}")
    return put_back


def _wait_ready(node_id: str) -> str:
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        node = next((n for n in engine.swarm.nodes() if n.id == node_id), None)
        if node is not None and node.status == "ready":
            return node.hostname
        if time.monotonic() > deadline:
            raise EngineError(f"the node joined but is not Ready within {READY_DEADLINE:.0f}s "
                              f"({node.status if node else 'not listed'})")
        time.sleep(0.5)


def remove(settings: Settings, name: str, progress: Progress) -> None:
    """`name` out of the Swarm: refused for this host and other managers, and for a node up and not drained."""
    now = membership.require_manager()
    node = membership.find_node(settings, name)
    if node.id == now.node_id:
        last = " and its last manager" if now.managers <= 1 else ""
        raise Conflict(f"{node.hostname} is this host, the manager minipaas runs on{last}: "
                       "`minipaas cluster:leave` ends a cluster of one")
    if node.role == "manager":
        raise Conflict(f"{node.hostname} is a manager: `docker node demote {node.hostname}` first")
    if node.status == "ready" and node.availability != "drain":
        raise Conflict(f"{node.hostname} is up and takes tasks: `minipaas cluster:drain {node.hostname}` first")
    left = node.status == "ready"
    if left:
        _leave_over_ssh(settings, node, progress)
    progress(f"-----> Removing {node.hostname} from the Swarm")
    engine.swarm.remove_node(node.id)  # no --force: the engine itself refuses a node that is not down
    _remember(settings, node.id, None)
    advertise = membership.advertise_address(settings)
    if advertise:
        firewall.refresh_manager(settings, advertise)
    if not left:
        progress(f"       {node.hostname} was not reached: its firewall rules (iptables chains {firewall.CHAIN}, "
                 f"{firewall.TENANTS}) stay there until removed on it")
    progress(f"=====> {node.hostname} is no longer in the cluster")


def _leave_over_ssh(settings: Settings, node: engine.swarm.NodeInfo, progress: Progress) -> None:
    """A drained node that is up leaves the Swarm, over ssh if `add` brought it; then it is down."""
    entry = _added(settings).get(node.id)
    if entry is None:
        raise Conflict(f"{node.hostname} is drained but still up: run `docker swarm leave` on it "
                       "(cluster:add did not bring it), then cluster:remove again")
    target = parse(entry["ssh"])
    progress(f"-----> {node.hostname} leaves the Swarm ({target})")
    with _connect(settings, target, Path(entry["identity"]) if entry.get("identity") else None,
                  CONNECT_TIMEOUT) as client:
        left = _remote(client, "docker", "swarm", "leave")
        if left.status != 0:
            raise EngineError(f"docker swarm leave failed on {node.hostname}: {left.reason()}")
        where = membership.registry_address(settings)
        if where:
            _remote(client, "rm", "-f", f"{CERTS}/{where}/ca.crt")
            _remote(client, "rmdir", f"{CERTS}/{where}")
        firewall.remove(firewall.SshShell(client, target.host))
    deadline = time.monotonic() + READY_DEADLINE
    while (now := next((n for n in engine.swarm.nodes() if n.id == node.id), None)) and now.status != "down":
        if time.monotonic() > deadline:
            raise EngineError(f"{node.hostname} left but the manager does not see it down within "
                              f"{READY_DEADLINE:.0f}s ({now.status})")
        time.sleep(0.5)


def secure_added(settings: Settings, advertise: str, progress: Progress) -> None:
    """Each worker's firewall set again: over ssh on the nodes `add` brought, in one line to run there for the
    others (joined by hand). A node that cannot be reached is said, and left as it is."""
    now = membership.require_manager()
    added = _added(settings)
    for node in sorted(engine.swarm.nodes(), key=lambda n: n.hostname):
        if node.id == now.node_id or node.status != "ready":
            continue
        entry = added.get(node.id)
        if entry is None:
            progress(f"!     {node.hostname} was joined by hand: run there the iptables lines of "
                     "`minipaas cluster:join-command` (its firewall)")
            continue
        target = parse(entry["ssh"])
        try:
            with _connect(settings, target, Path(entry["identity"]) if entry.get("identity") else None,
                          CONNECT_TIMEOUT) as client:
                firewall.set_node(firewall.SshShell(client, target.host), settings, advertise, _peer(client, target))
            progress(f"       {node.hostname}: firewall set over ssh")
        except MinipaasError as exc:
            progress(f"!     {node.hostname}: its firewall is not set ({exc.message}); run any cluster command again")
