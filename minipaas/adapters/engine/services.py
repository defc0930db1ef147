"""Swarm services, the way minipaas runs a release in a cluster (docs/cluster-design.md): one service per release and
process type, on the app's attachable overlay, endpoint mode dnsrr (no VIP: this kind of host has no IPVS), its
web port published in host mode with no fixed published port, so that every task gets an ephemeral port of its
node and the tasks of two releases never collide. nginx reaches a task at `<node address>:<published port>`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from minipaas.adapters.engine.lifecycle import Limits
from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import EngineError, NotFound


def ensure_overlay(name: str, *, labels: dict[str, str]) -> None:
    """The app's overlay network (attachable: one-off tasks and the release command can join it)."""
    api = _api()
    try:
        if overlay_exists(name):
            return
        api.create_network(name, driver="overlay", attachable=True, labels=labels, check_duplicate=True)
    except docker.errors.APIError as exc:
        if exc.status_code == 409 or "already exists" in str(exc):
            return
        raise EngineError(f"cannot create the overlay network {name}: {_reason(exc)}") from None


def overlay_exists(name: str) -> bool:
    # The engine's name filter matches parts of names too (`mp-hello_swarm` in `mp-xmp-hello_swarm`).
    return any(n["Name"] == name for n in _api().networks(names=[name]))


def remove_overlay(name: str, *, deadline: float) -> bool:
    """Remove the overlay once no task is attached to it any more (a removed service's tasks take a moment to
    stop); False when it is still in use at the deadline (left for the next `apps:destroy` or gc)."""
    while True:
        try:
            _api().remove_network(name)
            return True
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)


def create(*, name: str, image: str, replicas: int, network: str, env: dict[str, str], labels: dict[str, str],
           port: int | None, command: list[str] | None = None, limits: Limits | None = None,
           stop_grace: float | None = None) -> str:
    """A replicated service; `port`: the web port, published in host mode on an ephemeral port per task;
    `limits`: the app's `resource:limit`, as on one host (no-new-privileges has no place in a service's spec);
    `stop_grace`: seconds a task gets between its SIGTERM and its SIGKILL (None: the engine's 10 s)."""
    api = _api()
    limits = limits or Limits()
    # The Swarm expands Go templates in a service's env (`{{.Task.Slot}}`): a config value holding `{{` would
    # be mangled, or reject every task. `{{"{{"}}` is the template for a literal `{{`.
    env = {key: value.replace("{{", '{{"{{"}}') for key, value in env.items()}
    container = docker.types.ContainerSpec(
        image, command=command, env=env, labels=labels, init=limits.init, read_only=limits.read_only or None,
        stop_grace_period=None if stop_grace is None else int(stop_grace * 1e9),
        cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"],
        mounts=[docker.types.Mount("/tmp", None, type="tmpfs", tmpfs_size=256 * 2**20)] if limits.read_only else None)
    resources = docker.types.Resources(mem_limit=docker.utils.parse_bytes(limits.memory) if limits.memory else None,
                                       cpu_limit=int(limits.cpus * 1e9) if limits.cpus else None)
    if limits.pids:
        resources.setdefault("Limits", {})["Pids"] = limits.pids  # API 1.41; docker-py's Resources lacks it
    template = docker.types.TaskTemplate(container, resources=resources,
                                         restart_policy=docker.types.RestartPolicy(condition="any"))
    ports = [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host"}] if port else []
    endpoint: dict[str, Any] = {"Mode": "dnsrr", "Ports": ports}
    try:
        created = api.create_service(template, name=name, labels=labels, networks=[network],
                                     mode=docker.types.ServiceMode("replicated", replicas=replicas),
                                     endpoint_spec=endpoint)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create the service {name}: {_reason(exc)}") from None
    return str(created["ID"])


def run_global_job(*, name: str, image: str, command: list[str], labels: dict[str, str]) -> str:
    """A global job (API 1.41): one task on every node that takes tasks, run once, never restarted."""
    container = docker.types.ContainerSpec(image, command=command, labels=labels, cap_drop=["ALL"])
    template = docker.types.TaskTemplate(container, restart_policy=docker.types.RestartPolicy(condition="none"))
    try:
        created = _api().create_service(template, name=name, labels=labels,
                                        mode=docker.types.ServiceMode("global-job"))
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create the job {name}: {_reason(exc)}") from None
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


def renew_registry_auth(name: str) -> None:
    """The service's registry login replaced by this client's (`docker service update --with-registry-auth`): the
    spec posted back as it is, with the X-Registry-Auth header docker-py makes from its login. Its running tasks
    stay: the Swarm does not count a login change as a new task spec (swarmkit's IsTaskDirty)."""
    api = _api()
    try:
        current = api.inspect_service(name)
        spec = current["Spec"]
        image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
        header = docker.auth.get_config_header(api, docker.auth.resolve_repository_name(image)[0])
        url = api._url("/services/{0}/update", name)
        api._raise_for_status(api._post_json(url, data=spec, params={"version": current["Version"]["Index"]},
                                             headers={"X-Registry-Auth": header} if header else {}))
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot renew the registry login of the service {name}: {_reason(exc)}") from None


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


@dataclass(frozen=True)
class Placed:
    """A task the Swarm wants running (desired state `running`), with what its node and its status say."""

    id: str
    state: str  # the task's own: running, or not yet (new, pending, preparing, starting...)
    node_state: str  # its node's: ready; unknown (the manager restarted and has not heard from it yet); down...
    node_address: str
    port: int | None  # the published port, when the task's status says it


def placed(name: str) -> list[Placed]:
    """The service's tasks the Swarm wants running, and where (cluster/releases.py makes addresses of them)."""
    api = _api()
    try:
        tasks = api.tasks(filters={"service": name, "desired-state": "running"})
        nodes = {n["ID"]: n.get("Status") or {} for n in api.nodes()}
    except docker.errors.NotFound:
        return []
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    found = []
    for task in tasks:
        status = task.get("Status") or {}
        node = nodes.get(task.get("NodeID", ""), {})
        published = [p.get("PublishedPort") for p in ((status.get("PortStatus") or {}).get("Ports") or [])]
        found.append(Placed(id=str(task["ID"]), state=str(status.get("State", "")),
                            node_state=str(node.get("State", "")), node_address=str(node.get("Addr", "")),
                            port=int(published[0]) if published and published[0] else None))
    return found


def placement(task: str) -> Placed | None:
    """One task as `placed` has it, whatever the Swarm wants of it now; None when the Swarm forgot it."""
    api = _api()
    try:
        found = api.inspect_task(task)
        node = (api.inspect_node(found["NodeID"]).get("Status") or {}) if found.get("NodeID") else {}
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not show the task {task}: {_reason(exc)}") from None
    status = found.get("Status") or {}
    published = [p.get("PublishedPort") for p in ((status.get("PortStatus") or {}).get("Ports") or [])]
    return Placed(id=str(found["ID"]), state=str(status.get("State", "")), node_state=str(node.get("State", "")),
                  node_address=str(node.get("Addr", "")),
                  port=int(published[0]) if published and published[0] else None)


def task_nodes(name: str) -> dict[str, str]:
    """Which node runs each running task (task id → node id): `ps` and the spread's checks."""
    try:
        tasks = _api().tasks(filters={"service": name, "desired-state": "running"})
    except docker.errors.NotFound:  # removed since it was listed (a retirer, under a drain's look at a node)
        return {}
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    return {str(t["ID"]): str(t.get("NodeID", "")) for t in tasks if (t.get("Status") or {}).get("State") == "running"}


@dataclass(frozen=True)
class Failure:
    """A task of the service that failed or was rejected, in the Swarm's words."""

    id: str
    state: str  # failed or rejected
    why: str  # the Swarm's: `task: non-zero exit (3)`, `No such image: ...` (its node could not pull it)...

    def __str__(self) -> str:
        return f"{self.state}: {self.why}"


def failures(name: str) -> list[Failure]:
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
            found.append(Failure(id=str(task["ID"]), state=str(status.get("State")), why=str(why)))
    return found


def desired(name: str) -> dict[str, tuple[str, str]]:
    """Every task the Swarm keeps of the service: task id → (what the Swarm wants of it, its own state), e.g.
    (`shutdown`, `running`): a task a scale-down picked, whose node has not stopped it yet. One call, no node list:
    a scale-down reads it in a loop until the tasks it stops are known."""
    try:
        tasks = _api().tasks(filters={"service": name})
    except docker.errors.NotFound:
        return {}
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    return {str(t["ID"]): (str(t.get("DesiredState", "")), str((t.get("Status") or {}).get("State", "")))
            for t in tasks}


def task_ids(name: str) -> set[str]:
    """Every task the Swarm keeps of the service, by id (its current ones and a few before them)."""
    try:
        return {str(t["ID"]) for t in _api().tasks(filters={"service": name})}
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None


def labelled(labels: dict[str, str]) -> list[str]:
    """The names of the services carrying all of `labels`."""
    try:
        found = _api().services(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list its services: {_reason(exc)}") from None
    return sorted(str((s.get("Spec") or {}).get("Name", "")) for s in found)


@dataclass(frozen=True)
class Task:
    """One task of a service, as `ps` shows it."""

    id: str
    slot: int
    node: str  # the node's host name
    node_id: str
    node_address: str
    state: str  # the Swarm's: new, pending, preparing, starting, running, failed, shutdown...
    desired: str
    port: int | None  # the published port (web tasks)
    exit_code: int | None
    error: str
    created: str


def tasks(name: str) -> list[Task]:
    """Every task the Swarm keeps of the service (its current ones and a few before them), oldest first."""
    api = _api()
    try:
        found = api.tasks(filters={"service": name})
        nodes = {n["ID"]: n for n in api.nodes()}
    except docker.errors.APIError as exc:
        raise EngineError(f"the Swarm does not list the tasks of {name}: {_reason(exc)}") from None
    result = []
    for task in found:
        status = task.get("Status") or {}
        node = nodes.get(task.get("NodeID", "")) or {}
        published = [p.get("PublishedPort") for p in ((status.get("PortStatus") or {}).get("Ports") or [])]
        result.append(Task(
            id=str(task["ID"]), slot=int(task.get("Slot") or 0),
            node=str((node.get("Description") or {}).get("Hostname", "")), node_id=str(task.get("NodeID", "")),
            node_address=str((node.get("Status") or {}).get("Addr", "")),
            state=str(status.get("State", "")), desired=str(task.get("DesiredState", "")),
            port=int(published[0]) if published and published[0] else None,
            exit_code=(status.get("ContainerStatus") or {}).get("ExitCode"), error=str(status.get("Err") or ""),
            created=str(task.get("CreatedAt", ""))))
    return sorted(result, key=lambda t: t.created)


def logs(name: str, *, tail: int | str = "all", follow: bool = False, timestamps: bool = False,
         since: int | None = None) -> Iterator[tuple[str, bytes]]:
    """The service's output from every node (`docker service logs`): (task id, one line) at a time. The engine
    says which task wrote each line in the line's details (`com.docker.swarm.task.id=...`); `timestamps`: the
    line's text begins with its time (the engine puts it before the details); `since`: as for a container."""
    try:
        stream = _api().service_logs(name, details=True, follow=follow, stdout=True, stderr=True, tail=tail,
                                     is_tty=False, timestamps=timestamps, since=since or 0)
        pending = b""
        for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield _task_line(line)
        if pending:
            yield _task_line(pending)
    except docker.errors.NotFound:
        raise NotFound(f"the service {name} does not exist") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot read the logs of the service {name}: {_reason(exc)}") from None


def _task_line(line: bytes) -> tuple[str, bytes]:
    stamp = b""
    if line[:1].isdigit():  # `--timestamps`: the time comes first, the details after it
        stamp, _, line = line.partition(b" ")
        stamp += b" "
    details, _, text = line.partition(b" ")
    fields = dict(f.partition(b"=")[::2] for f in details.split(b","))
    task = fields.get(b"com.docker.swarm.task.id")
    return (task.decode(), stamp + text) if task else ("", stamp + line)
