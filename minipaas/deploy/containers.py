"""An app's running containers as the deploy sees them: which are its web and worker processes, the
port each listens on, its network, and the wait until a new one is healthy."""

from __future__ import annotations

from minipaas.adapters import engine, networks
from minipaas.adapters.engine.labels import TASK_LABEL
from minipaas.addons import containers as addon_containers
from minipaas.cluster import membership
from minipaas.deploy import addresspool, formation, health
from minipaas.errors import Conflict
from minipaas.progress import Progress
from minipaas.routing import proxy
from minipaas.routing.routes import Version
from minipaas.source.commit import Commit
from minipaas.state import apps, canaries, releaselog
from minipaas.state.host import Host


def web_containers(host: Host, app: str) -> list[engine.Container]:
    return [c for c in app_containers(host, app) if c.labels.get(engine.PROCESS_LABEL) == formation.WEB]


def app_containers(host: Host, app: str) -> list[engine.Container]:
    """The app's long-running containers, of every process type (one-off `run` and scheduled `cron` ones excluded);
    plain containers only: a Swarm task's container carries the image's labels too, but the Swarm owns it
    (cluster/releases.py)."""
    found = engine.containers({engine.LABEL: str(host.settings.home), engine.APP_LABEL: app},
                              network=host.settings.app_network(app))
    return [c for c in found if c.labels.get(engine.PROCESS_LABEL) not in ("run", "cron", formation.RELEASE)
            and TASK_LABEL not in c.labels]


def ensure_app_network(host: Host, app: str) -> None:
    """The app's own Docker network (its containers reach no other app's): made on first use."""
    networks.ensure_app_network(host.settings.app_network(app), pool=host.settings.subnets,
                                labels={engine.LABEL: str(host.settings.home), engine.APP_LABEL: app})
    # The services linked to it (a review app's: its parent's) join it there: a review app's first deploy,
    # or a service container made again since, finds them.
    addon_containers.attach_linked(host, app)


def check_network_room(host: Host, app: str) -> None:
    """Before a build: a release that needs the app's own network, which it has not yet, is refused in one line
    when the pool has none left (rather than after the build, when the network is made)."""
    if networks.exists(host.settings.app_network(app)):
        return
    usage = addresspool.usage(host)
    if usage.free <= 0:
        raise Conflict(f"{app} needs a network of its own and MINIPAAS_SUBNETS {usage.pool} has no /{usage.prefix} "
                       f"left (all {usage.total} taken): widen it (subnets in settings.toml) or free one "
                       "(apps:destroy, a review branch deleted); a static site needs none")


def drop_network_if_unused(host: Host, app: str) -> bool:
    """Remove the app's network once none of its containers is left (running or stopped: `ps:stop` keeps them),
    its linked services taken off it first; True when it went. Call it holding the app's lock: a deploy makes
    the network before its first container. In a cluster the networks are the Swarm's releases' (kept)."""
    name = host.settings.app_network(app)
    attached = networks.attached(name)
    if attached is None or membership.registry_address(host.settings):
        return False
    if engine.containers({engine.LABEL: str(host.settings.home), engine.APP_LABEL: app}):
        return False
    services = {c.id for service in addon_containers.may_be_on_network_of(host, app)
                if (c := addon_containers.find(host, service)) is not None}
    if set(attached) - services:
        return False  # something else is on it (not minipaas'): left alone
    addon_containers.leave_network_of(host, app)
    networks.remove(name)
    return True


def web_port(image: str) -> int:
    """The port the app listens on: the one its image EXPOSEs (Dockerfile apps), else $PORT's default."""
    exposed = engine.exposed_ports(image)
    return exposed[0] if exposed else health.WEB_PORT


def container_port(container: engine.Container) -> int:
    return int(container.labels.get(engine.PORT_LABEL, health.WEB_PORT))


def health_plan(host: Host, app: str, commit: Commit, *, app_json: bool = True) -> health.Plan:
    """The one place a release's health check is chosen: its commit's (app.json's startup checks, a CHECKS file)
    and the app's settings (healthcheck-path, healthcheck-timeout); `app_json` False: not app.json's."""
    return health.plan(commit, path=apps.get_setting(host, app, "healthcheck-path"),
                       timeout=int(apps.get_setting(host, app, "healthcheck-timeout")), app_json=app_json)


def wait_healthy(host: Host, app: str, container: engine.Container, plan: health.Plan,
                 progress: Progress) -> tuple[str, float]:
    """Health-check a new container of the app with its release's plan; returns (its address, seconds taken)."""
    progress(f"-----> Waiting for {container.name} to {plan.goal()} (timeout {plan.timeout}s)")
    target = health.Container(container.id, container.name, network=host.settings.app_network(app),
                              port=container_port(container))
    seconds = health.run(plan, target, progress=progress)
    return target.address() or "", seconds


def route_away(host: Host, app: str, leaving: set[str]) -> None:
    """When the app's route names any of `leaving` (containers about to go), send it back to the live release's
    running web containers first (none running: the app answers 503): no request waits on a removed container."""
    if not leaving & proxy.routed_containers(host.settings, app):
        return
    live = releaselog.live(host, app)
    retiring = releaselog.retiring(host, app)
    web = [c for c in web_containers(host, app) if c.status == "running" and c.ip and c.id not in leaving | retiring]

    def of(release: int) -> dict[str, str]:
        return {f"{c.ip}:{container_port(c)}": c.id for c in web if c.labels.get(engine.RELEASE_LABEL) == str(release)}

    targets = of(live.number) if live is not None else {}
    canary = canaries.of(host, app)
    beside = of(canary.release) if canary is not None and live is not None and canary.stable == live.number else {}
    if live is not None and targets and canary is not None and beside:  # the canary keeps its share
        proxy.set_versions(host.settings, app, [
            Version(release=live.number, weight=100 - canary.weight, targets=targets),
            Version(release=canary.release, weight=canary.weight, targets=beside)])
    elif live is not None and targets:
        proxy.switch(host.settings, app, live.number, targets)
    else:
        proxy.unroute(host.settings, app)


def port_suffix(host: Host) -> str:
    return apps.port_suffix(host.settings)


def running(host: Host, app: str, number: int) -> bool:
    return any(c.status == "running" and c.labels.get(engine.RELEASE_LABEL) == str(number)
               for c in web_containers(host, app))
