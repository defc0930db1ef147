"""Docker Swarm mode on the engine minipaas talks to: its state, init, join tokens, nodes (and their removal),
leave; and the registry's container (a plain container on the manager, with a host port and bind mounts).

Plain values in, plain values out; the engine's refusals become `EngineError`/`Conflict` with its own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import Conflict, EngineError

SWARM_PORT = 2377


@dataclass(frozen=True)
class SwarmState:
    """`docker info`'s Swarm section, as far as minipaas reads it."""

    state: str  # inactive, pending, active, error, locked
    node_id: str
    address: str  # the address this node advertises to the others
    manager: bool
    nodes: int
    managers: int

    @property
    def active(self) -> bool:
        return self.state != "inactive"


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    role: str
    status: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    address: str
    leader: bool
    engine: str


def state() -> SwarmState:
    try:
        info = _api().info().get("Swarm") or {}
    except docker.errors.APIError as exc:
        raise EngineError(f"the engine does not say its Swarm state: {_reason(exc)}") from None
    return SwarmState(state=str(info.get("LocalNodeState") or "inactive"), node_id=str(info.get("NodeID") or ""),
                      address=str(info.get("NodeAddr") or ""), manager=bool(info.get("ControlAvailable")),
                      nodes=int(info.get("Nodes") or 0), managers=int(info.get("Managers") or 0))


def init(advertise_address: str | None, *, heartbeat_seconds: int = 5) -> str:
    """`docker swarm init`: this engine becomes the manager of a new Swarm; returns its node id."""
    spec = _api().create_swarm_spec(dispatcher_heartbeat_period=heartbeat_seconds * 1_000_000_000)
    try:
        return str(_api().init_swarm(advertise_addr=advertise_address, listen_addr=f"0.0.0.0:{SWARM_PORT}",
                                     swarm_spec=spec))
    except docker.errors.APIError as exc:
        if exc.status_code == 503 and "already part of a swarm" in str(exc):
            raise Conflict("this engine is already part of a Swarm") from None
        raise EngineError(f"docker swarm init refused: {_reason(exc)}") from None


def join_token(role: str = "worker") -> str:
    try:
        tokens = (_api().inspect_swarm().get("JoinTokens") or {})
    except docker.errors.APIError as exc:
        raise EngineError(f"no join token from the Swarm: {_reason(exc)}") from None
    return str(tokens.get("Worker" if role == "worker" else "Manager") or "")


def nodes() -> list[NodeInfo]:
    try:
        found = _api().nodes()
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list its nodes: {_reason(exc)}") from None
    return [_node(n) for n in found]


def _node(raw: dict[str, Any]) -> NodeInfo:
    spec, status = raw.get("Spec") or {}, raw.get("Status") or {}
    manager = raw.get("ManagerStatus") or {}
    return NodeInfo(id=str(raw.get("ID", "")), hostname=str((raw.get("Description") or {}).get("Hostname", "")),
                    role=str(spec.get("Role", "")), status=str(status.get("State", "")),
                    availability=str(spec.get("Availability", "")),
                    address=str(manager.get("Addr", "")).rsplit(":", 1)[0] or str(status.get("Addr", "")),
                    leader=bool(manager.get("Leader")),
                    engine=str(((raw.get("Description") or {}).get("Engine") or {}).get("EngineVersion", "")))


def set_availability(node_id: str, availability: str) -> None:
    """`docker node update --availability active|pause|drain`, the node's own spec posted back."""
    api = _api()
    try:
        node = api.inspect_node(node_id)
        spec = {**(node.get("Spec") or {}), "Availability": availability}
        api.update_node(node_id, node["Version"]["Index"], spec)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot set the node {node_id[:12]} to {availability}: {_reason(exc)}") from None


def running_tasks_by_node() -> dict[str, int]:
    """How many tasks each node runs now (node id → count)."""
    try:
        tasks = _api().tasks(filters={"desired-state": "running"})
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list its tasks: {_reason(exc)}") from None
    counts: dict[str, int] = {}
    for task in tasks:
        if (task.get("Status") or {}).get("State") == "running":
            counts[str(task.get("NodeID", ""))] = counts.get(str(task.get("NodeID", "")), 0) + 1
    return counts


def remove_node(node_id: str, *, force: bool = False) -> None:
    """`docker node rm`: the engine refuses a node that is not down unless `force`."""
    try:
        _api().remove_node(node_id, force=force)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        raise EngineError(f"docker node rm refused: {_reason(exc)}") from None


def leave(*, force: bool) -> None:
    try:
        _api().leave_swarm(force=force)
    except docker.errors.APIError as exc:
        if "not part of a swarm" in str(exc):
            return
        raise EngineError(f"docker swarm leave refused: {_reason(exc)}") from None


def run_registry(*, name: str, image: str, address: str, port: int, binds: dict[str, str],
                 labels: dict[str, str]) -> str:
    """The registry's container (replacing one of the same name): `address:port` → its 5000, restarted with the
    engine; `binds`: host path → path inside (`:ro` allowed in the path inside). Returns its id."""
    remove_container(name)
    api = _api()
    try:
        created = api.create_container(
            image, name=name, labels=labels, detach=True, ports=[5000],
            host_config=api.create_host_config(
                port_bindings={5000: (address, port)}, restart_policy={"Name": "unless-stopped"},
                binds=[f"{host}:{inside}" for host, inside in binds.items()],
                security_opt=["no-new-privileges"], cap_drop=["ALL"], mem_limit="256m"))
        api.start(created["Id"])
    except docker.errors.APIError as exc:
        remove_container(name)
        raise EngineError(f"the registry's container does not start: {_reason(exc)}") from None
    return str(created["Id"])


def remove_container(name: str) -> None:
    try:
        _api().remove_container(name, force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot remove {name}: {_reason(exc)}") from None
