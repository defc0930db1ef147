"""A release as Swarm services (docs/cluster-design.md): its image in the cluster's registry, one service per process
type named `<instance>-<app>-<process>-<N>` on the app's overlay, and the wait until its tasks run.

The deploy layer (deploy/placement.py) health-checks the tasks and switches the route; this module only speaks
to the Swarm and the registry. A service names its image by the digest the push returned (`...:7@sha256:...`):
a tag moved in the registry later cannot change what a task runs. The manager logs in to the registry before it
pushes, and the same login goes with each service it creates (credentials.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from minipaas.adapters import engine
from minipaas.cluster import credentials, firewall, membership, registry
from minipaas.errors import DeployFailed, EngineError
from minipaas.progress import Progress
from minipaas.state.settings import Settings

# On every Swarm service minipaas makes: the home it belongs to. The same label name as addons/containers.py's
# ADDON_LABEL (on an addon's containers, volumes and networks, never on a Swarm service); neither value may
# change: the services and containers already running on hosts carry them.
SWARM_SERVICE_LABEL = "minipaas.service"
PUSH_ATTEMPTS = 3  # a push the registry broke off (it restarted) is made again once it answers, at most this often
REGISTRY_WAIT = 60.0  # seconds a push, or a task's pull, waits for a registry that does not answer
PULL_FAILED = "No such image"  # how the Swarm says a task's node could not pull its image (the engine's words)
NODE_LOST = "its node went away"  # why_gone's word for a task whose node is no longer `ready`


def registry_image(settings: Settings, registry_address: str, image: str, progress: Progress) -> str:
    """`image` (`minipaas/hello:7`, built on the manager) tagged into the registry and pushed; returns the name the
    nodes pull, pinned to the pushed manifest (`10.0.0.5:5000/minipaas/hello:7@sha256:...`). Pushing a release's
    image again costs one manifest check, and gives the same digest. A push the registry broke off (it restarted,
    it was down) is made again once the registry answers (the layers it has are not sent again)."""
    repository, _, tag = image.rpartition(":")
    target = f"{registry_address}/{repository}"
    progress(f"-----> Pushing {image} to the cluster's registry ({registry_address})")
    started = time.monotonic()
    engine.tag_image(image, target, tag)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            if not credentials.login(settings, registry_address) and attempt == 1:
                progress("!     the cluster's registry takes no credentials yet (a cluster made before it did): "
                         "any `minipaas cluster:*` command upgrades it")
            digest = engine.push(target, tag)
            break
        except EngineError as exc:
            if attempt == PUSH_ATTEMPTS:
                raise
            progress(f"       the push to the registry broke off ({_last_words(exc.message)}); pushing again once "
                     "the registry answers")
            registry.wait_answering(settings, registry_address, deadline=REGISTRY_WAIT)
    progress(f"       pushed in {time.monotonic() - started:.1f}s ({digest[:19]})")
    return f"{target}:{tag}@{digest}"


def _last_words(message: str) -> str:
    """What an engine's error comes down to: `cannot push ...: Put "https://...": EOF` → `EOF`; `the Docker engine does
    not answer (Connection refused); it may be ...` → its first clause."""
    first = message.split("; ")[0]
    return first.rsplit(": ", 1)[-1].strip("\"')( ")[:120] if ": " in first else first


def before_placing(settings: Settings) -> None:
    """Before the Swarm places tasks: the manager's firewall names every node (one joined by hand since)."""
    advertise = membership.advertise_address(settings)
    if advertise:
        firewall.refresh_manager(settings, advertise)


def service_name(settings: Settings, app: str, process: str, release: int) -> str:
    """Swarm names allow no dots: `minipaas-hello-web-7`."""
    return f"{settings.instance}-{app}-{process}-{release}"


OVERLAY_SUFFIX = "_swarm"  # no app or instance name has an underscore: never another app's network name


def overlay_name(settings: Settings, app: str) -> str:
    return settings.app_network(app) + OVERLAY_SUFFIX


def overlay(settings: Settings, app: str) -> str:
    """The app's attachable overlay (`minipaas-hello_swarm`). Not the name of the app's bridge network: that
    one stays, on the manager, for what runs there as plain containers (the release command, the app's linked
    services, an app deployed before `cluster:init` until its containers retire, the app after `cluster:leave`);
    the engine would take either network for the other by name."""
    name = overlay_name(settings, app)
    engine.services.ensure_overlay(name, labels={engine.LABEL: str(settings.home), engine.APP_LABEL: app})
    return name


def start(settings: Settings, app: str, *, release: int, process: str, replicas: int, image: str, port: int | None,
          env: dict[str, str], command: list[str] | None, limits: engine.Limits | None = None,
          stop_grace: float | None = None) -> str:
    """Create the service of one process type of a release; returns its name. `stop_grace`: the seconds its tasks
    get after their SIGTERM (the app's drain delay: see `stop_grace`)."""
    name = service_name(settings, app, process, release)
    before_placing(settings)
    labels = {engine.APP_LABEL: app, engine.RELEASE_LABEL: str(release), engine.PROCESS_LABEL: process}
    if port:
        labels[engine.PORT_LABEL] = str(port)
    engine.services.create(name=name, image=image, replicas=replicas, network=overlay(settings, app), port=port,
                    env={**env, **({"PORT": str(port)} if port else {})}, command=command,
                    labels={**labels, SWARM_SERVICE_LABEL: str(settings.home)}, limits=limits,
                    stop_grace=stop_grace)
    return name


STOP_GRACE_MAX = 60  # seconds: `ps:stop` and a removal wait for the tasks (PULL_ALLOWANCE), an app may ignore SIGTERM


def stop_grace(drain_seconds: int) -> int:
    """A task's stop grace period from the app's `drain-seconds`: an app that handles SIGTERM finishes the requests
    it has in flight within it; at least 1 s, at most STOP_GRACE_MAX."""
    return min(max(drain_seconds, 1), STOP_GRACE_MAX)


def addresses(placed: list[engine.services.Placed], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """The running tasks nginx can be sent to: `node address:published port` → task id. A task on a node that is not
    `ready` (down, or not heard from: the Swarm may still call it running) is left out, and so is one whose port its
    status does not say; unless `known` (task id → the address minipaas routed it at) names it: such a task keeps
    its address while it runs on a node that is not down. After the manager's engine restarts, the Swarm calls every
    other node `unknown` for a few seconds, and then each worker reports its running tasks again without their
    published ports (engine 20.10): they serve on where they did."""
    known = known or {}
    found = {}
    for task in placed:
        if task.state != "running":
            continue
        if task.node_state == "ready" and task.port and task.node_address:
            found[f"{task.node_address}:{task.port}"] = task.id
        elif task.id in known and task.node_state in ("ready", "unknown"):
            found[known[task.id]] = task.id
    return found


def unaddressed(placed: list[engine.services.Placed], known: Mapping[str, str] | None = None) -> list[str]:
    """Running tasks on ready nodes that nginx cannot be sent to: the Swarm no longer says their port (the manager
    restarted since they started) and minipaas did not route them; only new tasks can serve."""
    known = known or {}
    return [t.id for t in placed if t.state == "running" and t.node_state == "ready" and not t.port
            and t.id not in known]


def task_addresses(name: str, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's running tasks as nginx reaches them (see `addresses`)."""
    return addresses(engine.services.placed(name), known)


class PortsUnknown(DeployFailed):
    """Tasks run, but the Swarm does not say where they listen (see `unaddressed`)."""


@dataclass
class Pulls:
    """A task whose node could not pull its image while the registry restarted is started again by the Swarm (after
    its restart delay): not the release's fault. Such a failure ends the wait only for a task the Swarm made after
    the registry answered again, or when the registry has not answered for REGISTRY_WAIT seconds. Other failures
    (a process that exits) end it at once."""

    settings: Settings
    registry: str
    progress: Progress
    before: set[str] | None = None  # the service's tasks when the registry was seen answering after a pull failed
    waiting: float | None = None  # since when the registry has not answered
    said: set[str] = field(default_factory=set)

    def final(self, name: str, failures: list[engine.services.Failure]) -> list[engine.services.Failure]:
        """The failures that end the wait."""
        pulls = [f for f in failures if f.why.startswith(PULL_FAILED)]
        if len(pulls) < len(failures) or not pulls:
            return [f for f in failures if f not in pulls]
        if self.before is None:
            if not registry.answers(self.registry, registry.files(self.settings).ca_cert,
                                    credentials.load(self.settings)):
                now = time.monotonic()
                if self.waiting is None:
                    self.waiting = now
                    self.progress(f"       the cluster's registry ({self.registry}) does not answer: the nodes cannot "
                                  f"pull the image of {name}; waiting for it (up to {REGISTRY_WAIT:.0f}s)")
                if now - self.waiting > REGISTRY_WAIT:
                    raise DeployFailed(f"the cluster's registry ({self.registry}) did not answer within "
                                       f"{REGISTRY_WAIT:.0f}s: the nodes cannot pull the image of {name}",
                                       detail="\n".join(str(f) for f in pulls[:10]))
                return []
            self.before = engine.services.task_ids(name)
        if name not in self.said:
            self.said.add(name)
            self.progress(f"       a node could not pull the image of {name} ({pulls[0].why[:80]}); the registry "
                          "answers: the Swarm starts the task again")
        return [f for f in pulls if f.id not in self.before]


def wait_running(name: str, replicas: int, *, deadline: float, web: bool, known: Mapping[str, str] | None = None,
                 ignore: frozenset[str] = frozenset(), pulls: Pulls | None = None) -> dict[str, str]:
    """Wait until `replicas` tasks of the service run (`deadline`: a time.monotonic() value); returns the web tasks'
    `node:port` → task id (empty for a worker). A failed task ends the wait at once, with the Swarm's words; not
    one of `ignore` (tasks that had failed before: a service scaled back up, restored), nor one whose node could not
    pull while the registry restarted (`pulls`). `known`: task id → address, see `addresses`."""
    while True:
        placed = engine.services.placed(name) if web else []
        running = addresses(placed, known) if web else dict.fromkeys(engine.services.task_nodes(name), "")
        if len(running) >= replicas:
            return running if web else {}
        failures = [f for f in engine.services.failures(name) if f.id not in ignore]
        if pulls is not None:
            failures = pulls.final(name, failures)
        if failures:
            raise DeployFailed(f"a task of {name} failed before running: {failures[0]}",
                               detail="\n".join(str(f) for f in failures[:10]))
        lost = unaddressed(placed, known)
        if lost and len(running) + len(lost) >= replicas:
            raise PortsUnknown(f"{len(lost)} running task{'s' if len(lost) > 1 else ''} of {name} no longer say "
                               "their port (the manager restarted since they started)")
        if time.monotonic() > deadline:
            raise DeployFailed(f"{len(running)} of {replicas} tasks of {name} run after the deadline; "
                               "`docker service ps --no-trunc` on the manager says why")
        time.sleep(0.25)


def running_tasks(name: str) -> dict[str, str]:
    """The service's running tasks: task id → node id."""
    return engine.services.task_nodes(name)


def failed_ids(name: str) -> frozenset[str]:
    """The service's tasks that failed so far (a restarted engine stopped them, a process exited once)."""
    return frozenset(f.id for f in engine.services.failures(name))


def why_gone(name: str, task: str) -> str | None:
    """None while the task runs on a ready node; NODE_LOST when its node is not ready any more (down, or not heard
    from: the Swarm starts it elsewhere); else why, in the Swarm's words when a task of the service failed (a process
    that exits at once may be seen running for a moment first)."""
    found = engine.services.placement(task)
    if found is not None and found.node_state not in ("", "ready"):
        return NODE_LOST
    if found is not None and found.state == "running" and task in {t.id for t in engine.services.placed(name)}:
        return None
    failures = engine.services.failures(name)
    mine = [f for f in failures if f.id == task]
    return str((mine or failures)[0]) if failures else "its task no longer runs"


def app_services(settings: Settings, app: str) -> list[str]:
    """The app's services (every release's), by name."""
    return engine.services.labelled({SWARM_SERVICE_LABEL: str(settings.home), engine.APP_LABEL: app})


def process_of(settings: Settings, app: str, name: str) -> str:
    """The process type a service of the app runs, from its name (`minipaas-hello-web-7` → web)."""
    return name[len(f"{settings.instance}-{app}-"):].rsplit("-", 1)[0]


def tasks(name: str) -> list[engine.services.Task]:
    return engine.services.tasks(name)


def logs(name: str, *, tail: int | str, follow: bool, timestamps: bool = False,
         since: int | None = None) -> Iterator[tuple[str, bytes]]:
    """The service's lines from every node: (task id, line); `timestamps`, `since`: as `docker service logs`'."""
    return engine.services.logs(name, tail=tail, follow=follow, timestamps=timestamps, since=since)


def release_of(name: str) -> int:
    """The release a service runs, from its name (`minipaas-hello-web-7` → 7)."""
    return int(name.rsplit("-", 1)[1])


def scale(name: str, replicas: int) -> None:
    engine.services.scale(name, replicas)


MARK_WAIT = 2.0  # seconds a scale-down waits to see its tasks marked (measured 0.01-0.03 s; the stop follows ~3.1 s)


@dataclass(frozen=True)
class Shrunk:
    """A scale-down in place: the tasks the Swarm picked to stop, the ones it keeps, and when it said so."""

    stopping: frozenset[str]
    kept: frozenset[str]
    marked_after: float  # seconds from the scale call to the read that showed them


def scale_down(name: str, replicas: int) -> Shrunk:
    """Lower the service's count and read its tasks at once, in a loop, until the Swarm has marked the ones it stops
    (desired state `shutdown`, still running: their node's agent stops them about 3 s later, docs/cluster-design.md).
    No call of the engine's API names which tasks go: this reading is how minipaas learns them in time."""
    before = {t for t, (wanted, _) in engine.services.desired(name).items() if wanted == "running"}
    started = time.monotonic()
    engine.services.scale(name, replicas)
    while True:
        now = engine.services.desired(name)
        kept = {t for t, (wanted, _) in now.items() if wanted == "running"}
        if len(kept) <= replicas or time.monotonic() - started > MARK_WAIT:
            return Shrunk(stopping=frozenset(before - kept), kept=frozenset(kept),
                          marked_after=time.monotonic() - started)
        time.sleep(0.01)


def wait_gone(name: str, stopping: frozenset[str], *, deadline: float) -> None:
    """Wait until none of `stopping` (tasks a scale-down picked) runs any more."""
    while any(state in ("running", "starting") for t, (_, state) in engine.services.desired(name).items()
              if t in stopping):
        if time.monotonic() > deadline:
            raise DeployFailed(f"tasks of {name} the Swarm stops still run after the deadline; "
                               "`docker service ps` on the manager says which")
        time.sleep(0.1)


def replicas(name: str) -> int | None:
    """The service's task count as set; None when the service is gone."""
    return engine.services.replicas(name)


def wait_stopped(name: str, *, deadline: float) -> None:
    """Wait until no task of the service runs (after a scale to 0)."""
    while engine.services.task_nodes(name):
        if time.monotonic() > deadline:
            raise DeployFailed(f"tasks of {name} still run after the deadline; "
                               "`docker service ps` on the manager says which")
        time.sleep(0.25)


def remove(name: str) -> None:
    engine.services.remove(name)


def remove_app(settings: Settings, app: str) -> list[str]:
    """Every service of the app removed, then its overlay once their tasks have left it; returns the engine.services."""
    names = app_services(settings, app)
    for name in names:
        engine.services.remove(name)
    engine.services.remove_overlay(overlay_name(settings, app), deadline=time.monotonic() + 30)
    return names


def overlay_exists(settings: Settings, app: str) -> bool:
    return engine.services.overlay_exists(overlay_name(settings, app))


def tasks_on_node(settings: Settings, node_id: str) -> dict[str, int]:
    """The home's services with running tasks on the node: name → how many."""
    found = {}
    for name in engine.services.labelled({SWARM_SERVICE_LABEL: str(settings.home)}):
        count = sum(1 for node in engine.services.task_nodes(name).values() if node == node_id)
        if count:
            found[name] = count
    return found
