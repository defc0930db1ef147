"""Swarm services, the way minipaas runs a release in a cluster (docs/cluster.md): one service per release and
process type, on the app's attachable overlay, endpoint mode dnsrr (no VIP: this kind of host has no IPVS), its
web port published in host mode with no fixed published port, so that every task gets an ephemeral port of its
node and the tasks of two releases never collide. nginx reaches a task at `<node address>:<published port>`.
"""

from __future__ import annotations

from typing import Any

import docker.errors

from minipaas.adapters.engine.client import _api, _reason
from minipaas.errors import EngineError


def ensure_overlay(name: str, *, labels: dict[str, str]) -> None:
    """The app's overlay network (attachable: one-off tasks and the release command can join it)."""
    api = _api()
    try:
        if api.networks(names=[name]):
            return
        api.create_network(name, driver="overlay", attachable=True, labels=labels, check_duplicate=True)
    except docker.errors.APIError as exc:
        if exc.status_code == 409 or "already exists" in str(exc):
            return
        raise EngineError(f"cannot create the overlay network {name}: {_reason(exc)}") from None


def create(*, name: str, image: str, replicas: int, network: str, env: dict[str, str], labels: dict[str, str],
           port: int | None, command: list[str] | None = None) -> str:
    """A replicated service; `port`: the web port, published in host mode on an ephemeral port per task."""
    api = _api()
    container = docker.types.ContainerSpec(image, command=command, env=env, labels=labels)
    template = docker.types.TaskTemplate(container, restart_policy=docker.types.RestartPolicy(condition="any"))
    ports = [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host"}] if port else []
    endpoint: dict[str, Any] = {"Mode": "dnsrr", "Ports": ports}
    try:
        created = api.create_service(template, name=name, labels=labels, networks=[network],
                                     mode=docker.types.ServiceMode("replicated", replicas=replicas),
                                     endpoint_spec=endpoint)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create the service {name}: {_reason(exc)}") from None
    return str(created["ID"])


def scale(name: str, replicas: int) -> None:
    """Set a replicated service's task count (the Swarm starts or stops tasks to match). The service's own spec
    goes back with only the count changed: docker-py's `update_service(fetch_current_spec=True)` rewrites other
    parts of it, and the Swarm then replaces every running task (seen here: 2 → 4 gave 4 new tasks)."""
    api = _api()
    try:
        current = api.inspect_service(name)
        spec = current["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        url = api._url("/services/{0}/update", name)
        api._raise_for_status(api._post_json(url, data=spec, params={"version": current["Version"]["Index"]}))
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot scale the service {name} to {replicas}: {_reason(exc)}") from None


def replicas(name: str) -> int | None:
    """A replicated service's task count as set (None: no such service)."""
    try:
        spec = _api().inspect_service(name).get("Spec") or {}
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not show the service {name}: {_reason(exc)}") from None
    return int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))


def remove(name: str) -> None:
    try:
        _api().remove_service(name)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot remove the service {name}: {_reason(exc)}") from None


def task_addresses(name: str) -> dict[str, str]:
    """The service's running tasks as nginx reaches them: `<node address>:<published port>` → task id. A task on
    a node that is not `ready` (down, or not heard from) is left out: the Swarm may still call it running."""
    api = _api()
    try:
        tasks = api.tasks(filters={"service": name, "desired-state": "running"})
        nodes = {n["ID"]: (n.get("Status") or {}).get("Addr", "") for n in api.nodes()
                 if (n.get("Status") or {}).get("State") == "ready"}
    except docker.errors.NotFound:
        return {}
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    found = {}
    for task in tasks:
        status = task.get("Status") or {}
        published = [p.get("PublishedPort") for p in ((status.get("PortStatus") or {}).get("Ports") or [])]
        address = nodes.get(task.get("NodeID", ""), "")
        if status.get("State") == "running" and published and published[0] and address:
            found[f"{address}:{published[0]}"] = str(task["ID"])
    return found


def task_nodes(name: str) -> dict[str, str]:
    """Which node runs each running task (task id → node id): `ps` and the spread's checks."""
    try:
        tasks = _api().tasks(filters={"service": name, "desired-state": "running"})
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    return {str(t["ID"]): str(t.get("NodeID", "")) for t in tasks if (t.get("Status") or {}).get("State") == "running"}


def task_failures(name: str) -> list[str]:
    """Why the service's tasks that failed did (the Swarm's words: a pull refused, a process that exited...)."""
    try:
        tasks = _api().tasks(filters={"service": name})
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    found = []
    for task in tasks:
        status = task.get("Status") or {}
        if status.get("State") in ("failed", "rejected"):
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            why = status.get("Err") or (f"exit code {code}" if code else status.get("Message") or "")
            found.append(f"{status.get('State')}: {why}")
    return found


def labelled(labels: dict[str, str]) -> list[str]:
    """The names of the services carrying all of `labels`."""
    try:
        found = _api().services(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list its services: {_reason(exc)}") from None
    return sorted(str((s.get("Spec") or {}).get("Name", "")) for s in found)
