"""Which engines make the cluster: `cluster:init`, `cluster:join-command`, `cluster:nodes`, `cluster:leave`, and a
node's availability (`find_node`, `set_availability`: running/nodes.py drains and activates with them).

The Swarm's own state (the engine's `docker info`) says whether this host is in a cluster; minipaas keeps beside
it only what the Swarm does not: the registry's address (`MINIPAAS_HOME/cluster/cluster.json`). Every command
checks before it changes anything, and `init` undoes what it did when a later step fails: a failed `cluster:init`
leaves plain containers, as before. `init` also sets the manager's firewall (firewall.py) and `leave` removes it;
the lines `join_command` prints set a new host's.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from minipaas.adapters import engine, localaddr
from minipaas.cluster import disks, firewall, registry
from minipaas.errors import Conflict, InvalidInput, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.state import perms
from minipaas.state.settings import Settings

# Swarm's default is 5 s. A node is marked down after a few missed heartbeats, and until then nginx still tries
# its tasks (a dead node's address black-holes: a 2 s connect timeout per try). Measured with 3 nodes
# (tests/test_cluster_failures.py): a killed node Down after 10-14 s at 5 s, after ~3-5 s at 1 s. A heartbeat a second
# per node costs the manager nothing worth counting in a cluster of this size.
HEARTBEAT_SECONDS = 1


@dataclass(frozen=True)
class Node:
    info: engine.swarm.NodeInfo
    tasks: int
    disk: disks.Disk | None = None  # None: not asked, or the node did not say (drained, down, slow)


def _state_file(settings: Settings) -> str:
    return str(registry.folder(settings) / "cluster.json")


def registry_address(settings: Settings) -> str | None:
    """The cluster's registry (`10.0.0.5:5000`), or None outside a cluster minipaas made."""
    return _recorded(settings, "registry")


def advertise_address(settings: Settings) -> str | None:
    """The address this manager advertises (the registry listens there), or None outside a cluster."""
    return _recorded(settings, "advertise")


def _recorded(settings: Settings, key: str) -> str | None:
    try:
        with open(_state_file(settings), encoding="utf-8") as handle:
            return str(json.load(handle)[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_address(advertise: str) -> None:
    try:
        ipaddress.ip_address(advertise)
    except ValueError:
        raise InvalidInput(f"--advertise-addr takes an IP address of this host, got {advertise[:60]!r}") from None


def init(settings: Settings, advertise: str | None, progress: Progress) -> str:
    """This host's engine becomes a Swarm manager with a registry beside it; returns the registry's address."""
    if advertise is not None:
        _check_address(advertise)
    now = engine.swarm.state()
    if now.active:
        role = "a manager" if now.manager else "a worker"
        raise Conflict(f"this host's engine is already {role} of a Swarm ({now.nodes or '?'} nodes); "
                       "`minipaas cluster:nodes` lists them, `cluster:leave` ends a one-node cluster")
    progress("-----> Making this host's engine a Swarm manager")
    engine.swarm.init(advertise, heartbeat_seconds=HEARTBEAT_SECONDS)
    where = None
    try:
        address = engine.swarm.state().address
        progress(f"       manager at {address}:{engine.swarm.SWARM_PORT}")
        where = registry.start(settings, address, progress)
        perms.write_file(registry.folder(settings) / "cluster.json",
                         json.dumps({"registry": where, "advertise": address}).encode(), perms.PRIVATE_FILE)
        progress("-----> Firewall: this host's tasks answer nginx only; its containers reach no node")
        firewall.set_manager(settings, address)
    except BaseException:
        progress("!     undoing: the registry, the Swarm")
        _undo(settings, where)
        raise
    progress(f"=====> This host is a cluster of one; its registry is {where}. "
             "`minipaas cluster:join-command` says how another host joins")
    return where


def _undo(settings: Settings, where: str | None) -> None:
    for step in (lambda: firewall.remove_manager(settings), lambda: registry.stop(settings, where),
                 lambda: engine.swarm.leave(force=True)):
        try:
            step()
        except MinipaasError:
            continue
    registry.remove_files(settings)


def require_manager() -> engine.swarm.SwarmState:
    """This engine's Swarm state, if it is a manager; else a one-line refusal."""
    now = engine.swarm.state()
    if not now.active:
        raise NotFound("this host is not in a cluster; `minipaas cluster:init` makes one")
    if not now.manager:
        raise Conflict("this host's engine is a Swarm worker: run cluster commands on the manager")
    return now


def join_command(settings: Settings) -> list[str]:
    """What a new host runs to join as a worker: trust the registry's CA, set its firewall (its tasks answer nginx
    on this host only), then `docker swarm join`."""
    now = require_manager()
    token = engine.swarm.join_token("worker")
    where, advertise = registry_address(settings), advertise_address(settings)
    lines = []
    if where and advertise:
        ca = registry.files(settings).ca_cert.read_text(encoding="ascii").strip()
        lines += [f"mkdir -p /etc/docker/certs.d/{where}",
                  f"cat > /etc/docker/certs.d/{where}/ca.crt <<'EOF'", ca, "EOF"]
        # The host's address is not known here: nginx's as the manager's own address sees it (the same route).
        lines += firewall.join_lines(firewall.Rules(
            allowed=(localaddr.source_toward(advertise),), blocked=(advertise,), ports=firewall.SHELL_PORTS,
            front=firewall.front(settings)))
    lines.append(f"docker swarm join --token {token} {now.address}:{engine.swarm.SWARM_PORT}")
    return lines


def nodes(settings: Settings, *, disk: bool = True, warn: Progress = lambda _line: None) -> list[Node]:
    """The cluster's nodes by hostname; `disk`: ask each node for its disk too (a job on every node: a second or
    two, the first time longer, as each node pulls the job's image). The nodes are listed even when that fails:
    `warn` says why."""
    require_manager()
    counts = engine.swarm.running_tasks_by_node()
    try:
        found = disks.by_node(settings, registry_address(settings)) if disk else {}
    except MinipaasError as exc:
        warn(f"no disk figures: {exc.message}")
        found = {}
    return [Node(info=n, tasks=counts.get(n.id, 0), disk=found.get(n.id))
            for n in sorted(engine.swarm.nodes(), key=lambda n: n.hostname)]


def find_node(settings: Settings, name: str) -> engine.swarm.NodeInfo:
    """A node by its hostname or its id (a unique prefix of it, as `docker node` takes)."""
    require_manager()
    found = engine.swarm.nodes()
    matches = ([n for n in found if name in (n.hostname, n.id)]
               or [n for n in found if len(name) >= 4 and n.id.startswith(name)])
    if len(matches) != 1 or not name.strip():
        known = ", ".join(sorted(n.hostname for n in found))
        what = "more than one node" if len(matches) > 1 else "no node"
        raise NotFound(f"the cluster has {what} called {name[:60]!r} (its nodes: {known})")
    return matches[0]


def set_availability(node: engine.swarm.NodeInfo, availability: str) -> None:
    if availability not in ("active", "pause", "drain"):
        raise InvalidInput(f"a node's availability is active, pause or drain, not {availability[:20]!r}")
    engine.swarm.set_availability(node.id, availability)


def check_leave(settings: Settings) -> None:
    """Refuse to leave unless this is the manager of a cluster of one (the others removed first)."""
    now = require_manager()
    others = [n for n in engine.swarm.nodes() if n.id != now.node_id]
    if others:
        names = ", ".join(sorted(n.hostname for n in others))
        raise Conflict(f"the cluster has {len(others)} other node(s) ({names}); drain and remove them first "
                       "(`cluster:drain`, `cluster:remove`)")


def leave(settings: Settings, progress: Progress) -> None:
    """Back to one host with plain containers: only from a cluster of one, once no app runs as services
    (running/leaving.py turns them back into containers first)."""
    check_leave(settings)
    where = registry_address(settings)
    progress("-----> Removing this host's firewall rules")
    firewall.remove_manager(settings)
    progress("-----> Stopping the registry")
    registry.stop(settings, where)
    progress("-----> Leaving the Swarm")
    engine.swarm.leave(force=True)
    registry.remove_files(settings)
    progress("=====> This host runs plain containers again")
