"""Where a release's processes run: plain containers on this host (the default), or Swarm services when this host
is a cluster's manager (docs/cluster.md). `for_host` is the one place that tells the two apart; the deploy
sequence (rollout.py) and retirement call the chosen one and never ask which it is.

Both do the same steps in the same order: start the release's processes, health-check each web process, check
the others still run, switch the app's route to the new web processes, and say what the old release leaves to
retire after the drain delay. `undo` removes what `start` made, whatever step failed.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from minipaas.adapters import engine
from minipaas.cluster import membership, releases
from minipaas.deploy import containers, formation, health
from minipaas.deploy.bringup import bring_up
from minipaas.routing import proxy
from minipaas.state import apps
from minipaas.state.host import Host

Progress = Callable[[str], None]
SERVICE_PREFIX = "service:"  # a retirement of a Swarm service, not of a container: `service:minipaas-hello-web-7`
PULL_ALLOWANCE = 120.0  # seconds the nodes get to pull a new image, on top of the app's healthcheck-timeout


@dataclass(frozen=True)
class Release:
    """What `start` gets: the release and how to run it."""

    number: int
    sha: str
    image: str
    env: dict[str, str]
    procs: dict[str, str]


@dataclass
class Containers:
    """One host: one container per process, on the app's bridge network."""

    host: Host
    app: str
    started: list[engine.Container] = field(default_factory=list)

    def prepare(self) -> None:
        containers.ensure_app_network(self.host, self.app)

    def running(self, number: int) -> bool:
        return containers.running(self.host, self.app, number)

    def start(self, release: Release, progress: Progress) -> collections.Counter[str]:
        """Start, health-check, switch; returns how many processes of each type run now."""
        host, app = self.host, self.app
        port = containers.web_port(release.image)
        for process, count in formation.counts(host, app, release.procs,
                                               formation.declared(host, app, release.sha)).items():
            for index in range(1, count + 1):
                self.started.append(formation.start(host, app, release=release.number, image=release.image,
                                                    port=port, env=release.env, process=process, index=index,
                                                    procs=release.procs, progress=progress))
        if self.started:
            formation.warn_if_shared_uid(self.started[0], progress)
        bring_up(host, app, release=release.number, sha=release.sha, started=self.started, progress=progress,
                 timed=True)
        return collections.Counter(c.labels[engine.PROCESS_LABEL] for c in self.started)

    def old(self) -> list[tuple[str, str]]:
        """The app's processes of other releases, to retire: (retirement id, name)."""
        new_ids = {c.id for c in self.started}
        return [(c.id, c.name) for c in containers.app_containers(self.host, self.app) if c.id not in new_ids]

    def undo(self) -> None:
        for container in self.started:
            engine.remove(container.id, timeout=0)


@dataclass
class Services:
    """A cluster's manager: one Swarm service per process type, its tasks spread over the nodes by the Swarm."""

    host: Host
    app: str
    registry: str
    started: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        releases.overlay(self.host.settings, self.app)

    def running(self, number: int) -> bool:
        name = releases.service_name(self.host.settings, self.app, formation.WEB, number)
        return name in releases.app_services(self.host.settings, self.app)

    def start(self, release: Release, progress: Progress) -> collections.Counter[str]:
        s, app = self.host.settings, self.app
        image = releases.registry_image(self.registry, release.image, progress)
        port = containers.web_port(release.image)
        counts = {p: n for p, n in formation.counts(self.host, app, release.procs,
                                                    formation.declared(self.host, app, release.sha)).items() if n}
        for process, count in counts.items():
            command = ["/bin/sh", "-c", f"exec {release.procs[process]}"] if process in release.procs else None
            name = releases.start(s, app, release=release.number, process=process, replicas=count, image=image,
                                  port=port if process == formation.WEB else None, env=release.env, command=command)
            progress(f"-----> Started the service {name} ({count} task{'s' if count > 1 else ''})")
            self.started.append(name)
        timeout = int(apps.get_setting(self.host, app, "healthcheck-timeout"))
        deadline = time.monotonic() + timeout + PULL_ALLOWANCE
        targets: dict[str, str] = {}
        for name, (process, count) in zip(self.started, counts.items(), strict=True):
            started = time.monotonic()
            found = releases.wait_running(name, count, deadline=deadline, web=process == formation.WEB)
            progress(f"       {count} task{'s' if count > 1 else ''} of {name} running after "
                     f"{time.monotonic() - started:.1f}s")
            targets.update(self._checked(name, found, release.sha, timeout, progress))
        if targets:
            proxy.switch(s, app, release.number, targets)
        else:
            proxy.unroute(s, app)
        return collections.Counter(counts)

    def _checked(self, name: str, tasks: dict[str, str], sha: str, timeout: int,
                 progress: Progress) -> dict[str, str]:
        """Health-check each web task from here, at its node's address and port."""
        if not tasks:
            return {}
        checks = containers.checks_for(self.host, self.app, sha)
        what = " and ".join(c.describe() for c in checks.checks)
        progress(f"-----> Checking each task answers {what} (timeout {timeout}s)")
        deadline = time.monotonic() + timeout
        slowest = 0.0
        for address in tasks:
            slowest = max(slowest, health.wait_address(
                address, name=name, checks=checks, deadline=deadline, progress=progress,
                gone=lambda a=address: None if releases.task_running(name, a) else "its task no longer runs"))
        progress(f"       {len(tasks)} tasks healthy (the slowest after {slowest:.1f}s)")
        return tasks

    def old(self) -> list[tuple[str, str]]:
        return [(SERVICE_PREFIX + name, name) for name in releases.app_services(self.host.settings, self.app)
                if name not in self.started]

    def undo(self) -> None:
        for name in self.started:
            releases.remove(name)


Placement = Containers | Services


def for_host(host: Host, app: str) -> Placement:
    """Services when this host made a cluster (`cluster:init`), else containers."""
    registry = membership.registry_address(host.settings)
    return Services(host, app, registry) if registry else Containers(host, app)


def remove_retired(target: str) -> None:
    """Remove what a retirement names: a container (its id) or a service (`service:<name>`)."""
    if target.startswith(SERVICE_PREFIX):
        releases.remove(target[len(SERVICE_PREFIX):])
    else:
        engine.remove(target, timeout=10)
