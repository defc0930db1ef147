"""A release as Swarm services (docs/cluster.md): its image in the cluster's registry, one service per process
type named `<instance>-<app>-<process>-<N>` on the app's overlay, and the wait until its tasks run.

The deploy layer (deploy/placement.py) health-checks the tasks and switches the route; this module only speaks
to the Swarm and the registry. A service names its image by the digest the push returned (`...:7@sha256:...`):
a tag moved in the registry later cannot change what a task runs. The manager logs in to the registry before it
pushes, and the same login goes with each service it creates (credentials.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from minipaas.adapters import engine
from minipaas.adapters.engine import services
from minipaas.cluster import credentials, firewall, membership
from minipaas.errors import DeployFailed
from minipaas.state.settings import Settings

Progress = Callable[[str], None]
Task = services.Task
SERVICE_LABEL = "minipaas.service"  # on every service minipaas makes: the home it belongs to


def registry_image(settings: Settings, registry: str, image: str, progress: Progress) -> str:
    """`image` (`minipaas/hello:7`, built on the manager) tagged into the registry and pushed; returns the name the
    nodes pull, pinned to the pushed manifest (`10.0.0.5:5000/minipaas/hello:7@sha256:...`). Pushing a release's
    image again costs one manifest check, and gives the same digest."""
    repository, _, tag = image.rpartition(":")
    target = f"{registry}/{repository}"
    progress(f"-----> Pushing {image} to the cluster's registry ({registry})")
    if not credentials.login(settings, registry):
        progress("!     the cluster's registry takes no credentials yet (a cluster made before it did): "
                 "any `minipaas cluster:*` command upgrades it")
    started = time.monotonic()
    engine.tag_image(image, target, tag)
    digest = engine.push(target, tag)
    progress(f"       pushed in {time.monotonic() - started:.1f}s ({digest[:19]})")
    return f"{target}:{tag}@{digest}"


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
    services.ensure_overlay(name, labels={engine.LABEL: str(settings.home), engine.APP_LABEL: app})
    return name


def start(settings: Settings, app: str, *, release: int, process: str, replicas: int, image: str, port: int | None,
          env: dict[str, str], command: list[str] | None, limits: engine.Limits | None = None) -> str:
    """Create the service of one process type of a release; returns its name."""
    name = service_name(settings, app, process, release)
    before_placing(settings)
    labels = {engine.APP_LABEL: app, engine.RELEASE_LABEL: str(release), engine.PROCESS_LABEL: process}
    if port:
        labels[engine.PORT_LABEL] = str(port)
    services.create(name=name, image=image, replicas=replicas, network=overlay(settings, app), port=port,
                    env={**env, **({"PORT": str(port)} if port else {})}, command=command,
                    labels={**labels, SERVICE_LABEL: str(settings.home)}, limits=limits)
    return name


def wait_running(name: str, replicas: int, *, deadline: float, web: bool) -> dict[str, str]:
    """Wait until `replicas` tasks of the service run (`deadline`: a time.monotonic() value); returns the web tasks'
    `node:port` → task id (empty for a worker). A failed task ends the wait at once, with the Swarm's words."""
    while True:
        running = services.task_addresses(name) if web else dict.fromkeys(services.task_nodes(name), "")
        if len(running) >= replicas:
            return running if web else {}
        failures = services.task_failures(name)
        if failures:
            raise DeployFailed(f"a task of {name} failed before running: {failures[0]}",
                               detail="\n".join(failures[:10]))
        if time.monotonic() > deadline:
            raise DeployFailed(f"{len(running)} of {replicas} tasks of {name} run after the deadline; "
                               "`docker service ps --no-trunc` on the manager says why")
        time.sleep(0.25)


def running_tasks(name: str) -> dict[str, str]:
    """The service's running tasks: task id → node id."""
    return services.task_nodes(name)


def task_running(name: str, address: str) -> bool:
    return address in services.task_addresses(name)


def why_gone(name: str, address: str) -> str | None:
    """None while the task at `address` runs; else why, in the Swarm's words when a task of the service failed (a
    process that exits at once may be seen running for a moment first)."""
    if task_running(name, address):
        return None
    failures = services.task_failures(name)
    return failures[0] if failures else "its task no longer runs"


def app_services(settings: Settings, app: str) -> list[str]:
    """The app's services (every release's), by name."""
    return services.labelled({SERVICE_LABEL: str(settings.home), engine.APP_LABEL: app})


def process_of(settings: Settings, app: str, name: str) -> str:
    """The process type a service of the app runs, from its name (`minipaas-hello-web-7` → web)."""
    return name[len(f"{settings.instance}-{app}-"):].rsplit("-", 1)[0]


def tasks(name: str) -> list[services.Task]:
    return services.tasks(name)


def logs(name: str, *, tail: int | str, follow: bool) -> Iterator[tuple[str, bytes]]:
    """The service's lines from every node: (task id, line)."""
    return services.logs(name, tail=tail, follow=follow)


def release_of(name: str) -> int:
    """The release a service runs, from its name (`minipaas-hello-web-7` → 7)."""
    return int(name.rsplit("-", 1)[1])


def scale(name: str, replicas: int) -> None:
    services.scale(name, replicas)


def replicas(name: str) -> int | None:
    """The service's task count as set; None when the service is gone."""
    return services.replicas(name)


def wait_stopped(name: str, *, deadline: float) -> None:
    """Wait until no task of the service runs (after a scale to 0)."""
    while services.task_nodes(name):
        if time.monotonic() > deadline:
            raise DeployFailed(f"tasks of {name} still run after the deadline; "
                               "`docker service ps` on the manager says which")
        time.sleep(0.25)


def remove(name: str) -> None:
    services.remove(name)


def remove_app(settings: Settings, app: str) -> list[str]:
    """Every service of the app removed, then its overlay once their tasks have left it; returns the services."""
    names = app_services(settings, app)
    for name in names:
        services.remove(name)
    services.remove_overlay(overlay_name(settings, app), deadline=time.monotonic() + 30)
    return names


def overlay_exists(settings: Settings, app: str) -> bool:
    return services.overlay_exists(overlay_name(settings, app))


def tasks_on_node(settings: Settings, node_id: str) -> dict[str, int]:
    """The home's services with running tasks on the node: name → how many."""
    found = {}
    for name in services.labelled({SERVICE_LABEL: str(settings.home)}):
        count = sum(1 for node in services.task_nodes(name).values() if node == node_id)
        if count:
            found[name] = count
    return found
