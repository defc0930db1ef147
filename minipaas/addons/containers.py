"""A service's container, volume and networks on the engine: running it (and running it again when it is
gone or stopped), waiting until it answers, and which app networks it is on.

A service lives on a network of its own and joins the network of each app linked to it, with the alias
`<kind>-<name>` its URL names, and no other: an app that is not linked cannot reach it (networks.py).
A review app inherits its parent's links (their URLs are in the config it inherits), so a service joins
its linked apps' review apps' networks too; `attach_linked` runs wherever an app's network is made, so a
review app's first deploy, and a service container made again, find the service there.
"""

from __future__ import annotations

import time

from minipaas.adapters import engine, networks
from minipaas.build import hostimages
from minipaas.cluster import membership, releases
from minipaas.errors import DeployFailed
from minipaas.progress import Progress
from minipaas.state import reviews, services
from minipaas.state.host import Host
from minipaas.state.services import Service

# `<kind>.<name>` on an addon's container, volume and network. The same label name as cluster/releases.py's
# SWARM_SERVICE_LABEL (on Swarm services, a different kind of object: the two never meet in one filter);
# neither value may change: the containers, volumes and services already running on hosts carry them.
ADDON_LABEL = "minipaas.service"
READY_TIMEOUT = 120
_POLL = 0.2


def labels(host: Host, service: Service) -> dict[str, str]:
    return {engine.LABEL: str(host.settings.home), ADDON_LABEL: f"{service.kind}.{service.name}"}


def container_name(host: Host, service: Service) -> str:
    return services.container_name(host.settings, service.kind, service.name)


def find(host: Host, service: Service) -> engine.Container | None:
    found = engine.containers(labels(host, service))
    return found[0] if found else None


def limits(host: Host, service: Service) -> engine.Limits:
    def value(key: str) -> str:
        return services.get_setting(host, service.kind, service.name, key)

    cpus = value("cpus")
    # No init: the server is PID 1 (it reaps its own children), so no process of the container keeps the
    # password in its environment once the entrypoint has handed over.
    return engine.Limits(memory=value("memory"), cpus=float(cpus) if cpus else None, pids=int(value("pids")),
                         init=False)


def environment(service: Service) -> dict[str, str]:
    if service.kind == "postgres":
        return {"POSTGRES_PASSWORD": service.password, "POSTGRES_DB": services.database(service.name)}
    return {"REDIS_PASSWORD": service.password}


def run(host: Host, service: Service, progress: Progress) -> engine.Container:
    """A new container of the service on its volume (made when missing), attached to its apps' networks."""
    s = host.settings
    image = hostimages.ensure(s, service.kind, progress)
    volume = services.volume_name(s, service.kind, service.name)
    if not engine.volume_exists(volume):
        engine.create_volume(volume, labels(host, service))
    network = services.own_network(s, service.kind, service.name)
    networks.ensure_app_network(network, pool=s.subnets, labels=labels(host, service))
    container = engine.run(
        name=container_name(host, service), image=image, network=network, env=environment(service),
        labels=labels(host, service), limits=limits(host, service), volumes={volume: hostimages.SPECS[
            service.kind].data},
        # Back by itself after a crash or an engine restart; `ps:restore` checks it too.
        restart="unless-stopped",
    )
    for app in apps_reaching(host, service):
        attach(host, service, app)
    return container


def ensure_running(host: Host, service: Service, progress: Progress) -> engine.Container:
    """The service's container running and answering: started when stopped, made again when gone."""
    container = find(host, service)
    if container is None:
        progress(f"-----> Starting {service.kind} service {service.name}")
        container = run(host, service, progress)
    elif container.status != "running":
        progress(f"-----> Starting {service.kind} service {service.name} again")
        engine.start(container.id)
        for app in apps_reaching(host, service):
            attach(host, service, app)
    wait_ready(container.id, service)
    return container


def replace(host: Host, service: Service, progress: Progress) -> None:
    """A new container with the service's current limits, on the same volume (new limits take effect)."""
    old = find(host, service)
    if old is not None:
        engine.remove(old.id, timeout=30)  # a clean shutdown: the server writes its data out
    run(host, service, progress)
    ensure_running(host, service, progress)


def wait_ready(container: str, service: Service, timeout: float = READY_TIMEOUT) -> None:
    """Until the server answers: Postgres listening on TCP (its first start, which makes the database, runs a
    server on the local socket only). Asked over the socket: pg_hba.conf rejects the superuser over TCP, and
    a probe there would log a rejected connection each time."""
    if service.kind == "postgres":
        probe = ["psql", "-X", "-A", "-t", "-U", services.SUPERUSER, "-d", services.database(service.name), "-c",
                 "SHOW listen_addresses"]
        answer = "*"
    else:
        probe, answer = ["minipaas-redis-cli", "ping"], "PONG"
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        info = engine.inspect(container)
        if info.status not in ("running", "created", "restarting"):
            break
        code, output = engine.exec_capture(container, probe, timeout=10)
        if code == 0 and answer in output.split():
            return
        time.sleep(_POLL)
    tail = b"".join(engine.logs(container, tail=20)).decode("utf-8", "replace")
    raise DeployFailed(f"{service.kind} service {service.name} did not become ready within {timeout:.0f}s",
                       detail=tail or output)


# -- networks ------------------------------------------------------------------------------

def apps_reaching(host: Host, service: Service) -> list[str]:
    """The apps whose containers may reach the service: the linked ones and their review apps (but those a
    deployer pushed: state/config.py)."""
    found = []
    for app in services.links(host, service.kind, service.name):
        found.append(app)
        found.extend(review.name for review in reviews.of(host, app) if reviews.receives_parent_services(host,
                                                                                                         review.name))
    return found


def _app_networks(host: Host, app: str) -> list[str]:
    """The app's bridge network, and in a cluster its overlay: the service stays a container on the manager,
    and the overlay (attachable) is how the app's tasks on every node reach it by its alias."""
    found = [host.settings.app_network(app)]
    if membership.registry_address(host.settings) and releases.overlay_exists(host.settings, app):
        found.append(releases.overlay_name(host.settings, app))
    return found


def attach(host: Host, service: Service, app: str) -> None:
    """The service on the app's networks, by its alias. An app without a network (no container yet, a static
    site) gets none for it: `containers.ensure_app_network` attaches its services when it makes one."""
    if not networks.exists(host.settings.app_network(app)):
        return
    container = find(host, service)
    if container is not None:
        for name in _app_networks(host, app):
            engine.connect(name, container.id, aliases=[services.alias(service.kind, service.name)])


def detach(host: Host, service: Service, app: str) -> None:
    container = find(host, service)
    if container is not None:
        for name in _app_networks(host, app):
            engine.disconnect(name, container.id)


def attach_linked(host: Host, app: str) -> None:
    """Every service linked to the app (or to its parent) on the app's network: called where it is made."""
    for service in services.linked_to(host, app):
        attach(host, service, app)


def may_be_on_network_of(host: Host, app: str) -> list[Service]:
    """The services linked to the app or to its parent, whether it reaches them or no longer does (a review app
    an admin's push made, pushed since by a deployer; one made before minipaas withheld them)."""
    parent = reviews.parent(host, app)
    found = {(s.kind, s.name): s for s in services.linked_to(host, app)}
    found.update({(s.kind, s.name): s for s in services.linked_to(host, parent)} if parent else {})
    return list(found.values())


def leave_network_of(host: Host, app: str) -> list[str]:
    """Every service that may be on the app's network taken off it; returns their containers' ids."""
    ids = []
    for service in may_be_on_network_of(host, app):
        container = find(host, service)
        if container is not None:
            ids.append(container.id)
            for name in _app_networks(host, app):
                engine.disconnect(name, container.id)
    return ids


def remove(host: Host, service: Service) -> None:
    """The container, its network and its volume (with the data) gone."""
    container = find(host, service)
    if container is not None:
        engine.remove(container.id, timeout=30)
    networks.remove(services.own_network(host.settings, service.kind, service.name))
    engine.remove_volume(services.volume_name(host.settings, service.kind, service.name))
