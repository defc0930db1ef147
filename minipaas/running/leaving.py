"""`cluster:leave` with apps deployed: every app that runs as Swarm services is rolled out again as plain
containers on this host (the manager) before the Swarm is left, so that it keeps serving (docs/cluster-design.md).

The order leaves nothing half-done:

1. the checks first (the manager of a cluster of one), before anything changes;
2. every app's deploy lock taken (held to the end: no deploy makes a service meanwhile; one waits, then runs on
   one host); each app with running services: its live release rolled out again (a `restart`
   release: same image, which the manager built and still holds, same config) as containers, health-checked,
   the route switched to them. Its services stay meanwhile: they serve until the switch, and drain after it;
3. once every app is on containers: the drain delay, the services removed, then the registry and the Swarm
   (cluster/membership.py).

An app that does not come up as containers (its health check fails) stops it at step 2: the command is refused
in one line, that app's containers removed and its services still serving, the cluster left as it is. Apps
turned before it stay on containers on the manager, which serve as well in a cluster; the next deploy of such an
app in the cluster retires them (placement.Services.old lists plain containers too).
"""

from __future__ import annotations

import contextlib
import time

from minipaas.cluster import membership, releases
from minipaas.deploy import placement, rollout
from minipaas.errors import Conflict, MinipaasError
from minipaas.progress import Progress
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Serving


def leave(host: Host, progress: Progress) -> None:
    settings = host.settings
    membership.check_leave(settings)
    drained: dict[str, float] = {}  # service → when its drain delay is over (time.monotonic())
    with contextlib.ExitStack() as held:  # every app's lock until the Swarm is left: no deploy makes a service now
        for app in apps.names(host):
            held.enter_context(app_lock(settings, app, progress))
            services = releases.app_services(settings, app)
            if not services:
                continue
            current = releaselog.live(host, app)
            if current is not None and current.serving != Serving.STATIC and _runs(services):
                progress(f"-----> {app}: release {current.number} as plain containers on this host")
                try:
                    rollout.roll_out(host, app, kind=Kind.RESTART, sha=current.sha, image=current.image,
                                     buildpack=current.buildpack, progress=progress,
                                     where=placement.Containers(host, app))
                except MinipaasError as exc:
                    raise Conflict(f"cluster:leave refused: {app} did not start as plain containers "
                                   f"({exc.message}); the cluster stays, {app} still runs as services") from None
            until = time.monotonic() + int(apps.get_setting(host, app, "drain-seconds"))
            drained.update(dict.fromkeys(services, until))
        for name, until in sorted(drained.items(), key=lambda item: item[1]):
            time.sleep(max(0.0, until - time.monotonic()))  # requests nginx sent the tasks before the switch end
            releases.remove(name)
            progress(f"-----> Removed the service {name}")
        membership.leave(settings, progress)


def _runs(services: list[str]) -> bool:
    """Whether any of the services has tasks (an app after `ps:stop` has none: nothing to turn)."""
    return any(releases.replicas(name) for name in services)
