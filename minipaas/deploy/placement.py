"""Where a release's processes run: plain containers on this host (the default), or Swarm services when this host
is a cluster's manager (docs/cluster-design.md). `for_host` is the one place that tells the two apart; the deploy
sequence (rollout.py) and retirement call the chosen one and never ask which it is.

Both do the same steps in the same order: start the release's processes, health-check each web process, check
the others still run, switch the app's route to the new web processes, and say what the old release leaves to
retire after the drain delay. `undo` removes what `start` made, whatever step failed.

The live release's processes, for `ps:stop`, `ps:start`, `ps:restore` and `ps:scale`: `stop` (unroute, then stop
them), `resume` (run and route them again; False when they are gone and a rollout must make new ones) and `scale`
(in place; None when only a rollout at the new count can do it: a Swarm picks the tasks it stops itself; beside a
canary, shrink.py lowers the two releases' services in place).

What a crashed deploy left (`remove_strays`, for `retirement.reconcile`) is asked of the chosen one too; what `ps`
and `logs` show is running/'s (processes.py picks the listing by `WHAT`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import ClassVar

from minipaas import faultpoints
from minipaas.adapters import engine
from minipaas.cluster import membership, releases
from minipaas.deploy import containers, formation, shrink, taskcheck
from minipaas.deploy.bringup import Split, bring_up
from minipaas.progress import Progress
from minipaas.routing import proxy
from minipaas.source import procfile
from minipaas.source.commit import Commit
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock

Retiring = list[tuple[str, str]]  # (retirement id, name): what retires after the drain delay
SERVICE_PREFIX = "service:"  # a retirement of a Swarm service, not of a container: `service:minipaas-hello-web-7`
PULL_ALLOWANCE = taskcheck.PULL_ALLOWANCE


@dataclass(frozen=True)
class Release:
    """What `start` gets: the release and how to run it."""

    number: int
    commit: Commit  # its commit, as read once (source/commit.py)
    image: str
    env: dict[str, str]

    @property
    def sha(self) -> str:
        return self.commit.sha

    @property
    def procs(self) -> dict[str, str]:
        return self.commit.procs


@dataclass
class Containers:
    """One host: one container per process, on the app's bridge network."""

    host: Host
    app: str
    started: list[engine.Container] = field(default_factory=list)
    WHAT: ClassVar[str] = "containers"

    def prepare(self) -> None:
        containers.ensure_app_network(self.host, self.app)

    def running(self, number: int) -> bool:
        return containers.running(self.host, self.app, number)

    def start(self, release: Release, progress: Progress, split: Split | None = None) -> collections.Counter[str]:
        """Start, health-check, switch (a canary's `split`: a share of the traffic); returns how many processes of
        each type run now."""
        host, app = self.host, self.app
        port = containers.web_port(release.image)
        for process, count in formation.counts(host, app, release.commit).items():
            for index in range(1, count + 1):
                self.started.append(formation.start(host, app, release=release.number, image=release.image,
                                                    port=port, env=release.env, process=process, index=index,
                                                    procs=release.procs, progress=progress))
        if self.started:
            formation.warn_if_shared_uid(self.started[0], progress)
        faultpoints.reached("started")
        bring_up(host, app, release=release.number, commit=release.commit, started=self.started, progress=progress,
                 timed=True, split=split)
        return collections.Counter(c.labels[engine.PROCESS_LABEL] for c in self.started)

    def web_targets(self, number: int) -> dict[str, str]:
        """The release's running web containers, as the route names them (address → container id)."""
        return {f"{c.ip}:{containers.container_port(c)}": c.id for c in containers.web_containers(self.host, self.app)
                if c.labels.get(engine.RELEASE_LABEL) == str(number) and c.status == "running" and c.ip}

    def parts(self) -> list[tuple[str, str, str]]:
        """Every container of the app: (retirement id, name, release), what a canary's promotion or abort retires."""
        return [(c.id, c.name, c.labels.get(engine.RELEASE_LABEL, ""))
                for c in containers.app_containers(self.host, self.app)]

    def old(self) -> list[tuple[str, str]]:
        """The app's processes of other releases, to retire: (retirement id, name)."""
        new_ids = {c.id for c in self.started}
        return [(c.id, c.name) for c in containers.app_containers(self.host, self.app) if c.id not in new_ids]

    def undo(self) -> None:
        """Remove what `start` made; a route already switched to it (a failure after the switch: the record) goes
        back to the live release first."""
        containers.route_away(self.host, self.app, {c.id for c in self.started})
        for container in self.started:
            engine.remove(container.id, timeout=0)

    def remove_all(self, progress: Progress) -> None:
        """Every container of the app, whatever its release (`apps:destroy`)."""
        _remove_containers(self.host, self.app, progress)

    def remove_strays(self, live: int | None, retiring: set[str], canary: int | None = None) -> list[str]:
        """What a crashed deploy left: containers neither of the live release (nor of its `canary`) nor retiring. A
        deploy killed after its switch left the route on some of them: the route goes back to the live release
        first, and those (returned) are retired after the drain delay, as any old container is, for the requests
        they still serve; the others are removed now."""
        strays = [c for c in containers.app_containers(self.host, self.app)
                  if c.labels.get(engine.RELEASE_LABEL) not in (str(live), str(canary)) and c.id not in retiring]
        draining = [c.id for c in strays if c.id in proxy.routed_containers(self.host.settings, self.app)]
        containers.route_away(self.host, self.app, {c.id for c in strays})
        for c in strays:
            if c.id not in draining:
                engine.remove(c.id, timeout=0)
        return draining

    def stop(self, progress: Progress) -> None:
        # Traffic first: a stopped container's address may soon belong to another container.
        proxy.unroute(self.host.settings, self.app)
        for c in containers.app_containers(self.host, self.app):
            engine.stop(c.id, timeout=10)
            progress(f"-----> Stopped {c.name}")

    def resume(self, current: releaselog.Release, progress: Progress, split: Split | None = None,
               commit: Commit | None = None) -> bool:
        """The live release's stopped containers started, health-checked and switched to (a canary's release: its
        `split`); False when its web containers are gone (a `docker rm`, a lost engine). `commit`: the release's,
        as read (else read now)."""
        host, app = self.host, self.app
        commit = commit or formation.read(host, app, current.sha)
        mine = [c for c in containers.app_containers(host, app)
                if c.labels.get(engine.RELEASE_LABEL) == str(current.number)]
        wanted = formation.counts(host, app, commit)
        if len([c for c in mine if c.labels.get(engine.PROCESS_LABEL) == formation.WEB]) < wanted[formation.WEB]:
            return False
        for c in mine:
            if c.status != "running":
                engine.start(c.id)
        bring_up(host, app, release=current.number, commit=commit, started=mine, progress=progress, split=split)
        return True

    def scale(self, current: releaselog.Release, commit: Commit, wanted: dict[str, int],
              progress: Progress, *, alongside: bool = False) -> Retiring | None:
        """Start what is missing and switch (`alongside`: the release's own version only, bringup.bring_up);
        returns the surplus, to retire after the drain delay."""
        host, app = self.host, self.app
        procs = commit.procs
        mine = [c for c in containers.app_containers(host, app)
                if c.labels.get(engine.RELEASE_LABEL) == str(current.number)
                and c.status == "running" and c.id not in releaselog.retiring(host, app)]
        port = containers.web_port(current.image)
        keep: list[engine.Container] = []
        surplus: list[engine.Container] = []
        try:
            for process, count in wanted.items():
                existing = sorted((c for c in mine if c.labels.get(engine.PROCESS_LABEL) == process),
                                  key=lambda c: int(c.labels.get(engine.INDEX_LABEL, "1")))
                keep += existing[:count]
                surplus += existing[count:]
                used = {int(c.labels.get(engine.INDEX_LABEL, "1")) for c in existing}
                free = (i for i in range(1, 10 * formation.MAX_SCALE) if i not in used)
                for _ in range(count - len(existing)):
                    self.started.append(formation.start(host, app, release=current.number, image=current.image,
                                                        port=port, env=current.config, process=process,
                                                        index=next(free), procs=procs, progress=progress))
            kept = {f"{c.ip}:{containers.container_port(c)}": c.id for c in keep
                    if c.labels[engine.PROCESS_LABEL] == formation.WEB}
            bring_up(host, app, release=current.number, commit=commit, started=self.started, progress=progress,
                     kept=kept, alongside=alongside)
        except BaseException:
            self.undo()
            raise
        return [(c.id, c.name) for c in surplus]


@dataclass
class Services:
    """A cluster's manager: one Swarm service per process type, its tasks spread over the nodes by the Swarm."""

    host: Host
    app: str
    registry: str
    started: list[str] = field(default_factory=list)
    stopping: dict[str, frozenset[str]] = field(default_factory=dict)  # a scale-down's, for shrink.wait_gone
    WHAT: ClassVar[str] = "services"

    def prepare(self) -> None:
        # The overlay first: making the bridge attaches the linked services to the app's networks, the overlay
        # included (the tasks on every node reach them there). The bridge too: the release command runs on the
        # manager as a plain container.
        releases.overlay(self.host.settings, self.app)
        containers.ensure_app_network(self.host, self.app)

    def running(self, number: int) -> bool:
        """The release's web service runs all its tasks (not merely exists: `ps:stop` leaves it at 0)."""
        name = releases.service_name(self.host.settings, self.app, formation.WEB, number)
        wanted = releases.replicas(name)
        return bool(wanted) and len(releases.running_tasks(name)) >= (wanted or 0)

    def start(self, release: Release, progress: Progress, split: Split | None = None) -> collections.Counter[str]:
        """Start each process type's service, wait for its tasks, health-check the web ones, switch (a canary's
        `split`: its tasks take a share beside the stable release's, whose services stay as they are)."""
        s, app = self.host.settings, self.app
        image = releases.registry_image(s, self.registry, release.image, progress)
        port = containers.web_port(release.image)
        counts = {p: n for p, n in formation.counts(self.host, app, release.commit).items() if n}
        for process, count in counts.items():
            command = procfile.process_command(release.procs, process)
            name = releases.start(s, app, release=release.number, process=process, replicas=count, image=image,
                                  port=port if process == formation.WEB else None, env=release.env, command=command,
                                  limits=formation.limits(self.host, app), stop_grace=self._grace())
            progress(f"-----> Started the service {name} ({count} task{'s' if count > 1 else ''})")
            self.started.append(name)
        self._route(release.number, release.commit, dict(zip(self.started, counts.items(), strict=True)), progress,
                    split=split)
        return collections.Counter(counts)

    def _grace(self) -> int:
        return releases.stop_grace(int(apps.get_setting(self.host, self.app, "drain-seconds")))

    def _route(self, number: int, commit: Commit, wanted: dict[str, tuple[str, int]], progress: Progress,
               known: frozenset[str] = frozenset(), ignore: dict[str, frozenset[str]] | None = None,
               split: Split | None = None, alongside: bool = False) -> None:
        taskcheck.route(self.host, self.app, self.registry, number=number, commit=commit, wanted=wanted,
                        progress=progress, known=known, ignore=ignore, split=split, alongside=alongside)

    def web_targets(self, number: int) -> dict[str, str]:
        """The release's web service's running tasks, as the route names them (address → task id)."""
        name = releases.service_name(self.host.settings, self.app, formation.WEB, number)
        return releases.task_addresses(name, known=proxy.routed_tasks(self.host.settings, self.app))

    def parts(self) -> list[tuple[str, str, str]]:
        """Every service of the app and its plain containers: (retirement id, name, release)."""
        services = releases.app_services(self.host.settings, self.app)
        return [*[(SERVICE_PREFIX + n, n, str(releases.release_of(n))) for n in services],
                *Containers(self.host, self.app).parts()]

    def old(self) -> list[tuple[str, str]]:
        """The app's other services, and its plain containers (an app deployed before `cluster:init`)."""
        return [*[(SERVICE_PREFIX + name, name) for name in releases.app_services(self.host.settings, self.app)
                  if name not in self.started],
                *[(c.id, c.name) for c in containers.app_containers(self.host, self.app)]]

    def undo(self) -> None:
        for name in self.started:
            releases.remove(name)

    def remove_all(self, progress: Progress) -> None:
        """Every service of the app and its overlay, then its plain containers (`apps:destroy`)."""
        for name in releases.remove_app(self.host.settings, self.app):
            progress(f"removed service {name}")
        _remove_containers(self.host, self.app, progress)

    def remove_strays(self, live: int | None, retiring: set[str], canary: int | None = None) -> list[str]:
        """What a crashed deploy left: services neither of the live release (nor of its canary) nor retiring,
        removed now (none is kept to drain: the route is the task watcher's, running/taskwatch.py)."""
        for name in releases.app_services(self.host.settings, self.app):
            if releases.release_of(name) not in (live, canary) and SERVICE_PREFIX + name not in retiring:
                releases.remove(name)
        return []

    def _of_release(self, number: int) -> dict[str, str]:
        """The app's services of release `number`, by process type."""
        prefix = f"{self.host.settings.instance}-{self.app}-"
        return {name[len(prefix):].rsplit("-", 1)[0]: name
                for name in releases.app_services(self.host.settings, self.app) if releases.release_of(name) == number}

    def stop(self, progress: Progress) -> None:
        """Unroute, then scale every service of the app to 0 tasks (the services stay, for `ps:start`)."""
        proxy.unroute(self.host.settings, self.app)
        names = releases.app_services(self.host.settings, self.app)
        for name in names:
            releases.scale(name, 0)
        deadline = time.monotonic() + PULL_ALLOWANCE
        for name in names:
            releases.wait_stopped(name, deadline=deadline)
            progress(f"-----> Stopped {name} (0 tasks)")

    def resume(self, current: releaselog.Release, progress: Progress, split: Split | None = None,
               commit: Commit | None = None) -> bool:
        """The live release's services back at the formation's counts, their web tasks' addresses read again
        (a rescheduled task has another node or port), the new ones health-checked, the route switched (a canary's
        release: its `split`); False when a service of the release is gone. `commit`: as Containers.resume."""
        commit = commit or formation.read(self.host, self.app, current.sha)
        wanted = {p: n for p, n in formation.counts(self.host, self.app, commit).items() if n}
        mine = self._of_release(current.number)
        if set(wanted) - set(mine):
            return False
        releases.before_placing(self.host.settings)
        # Tasks a restarted engine stopped (exit 143), or that failed once since: the Swarm started others.
        before = {mine[p]: releases.failed_ids(mine[p]) for p in wanted}
        for process, count in wanted.items():
            if releases.replicas(mine[process]) != count:
                releases.scale(mine[process], count)
                progress(f"-----> Scaled {mine[process]} to {count} task{'s' if count > 1 else ''}")
        known = frozenset(proxy.upstream_addresses(self.host.settings, self.app))
        # The live release beside a canary: only its own version changes, the canary's tasks stay known (routed, by
        # id) for the canary's own resume: the Swarm may no longer say their ports (the manager restarted).
        routed = {v.release for v in proxy.versions(self.host.settings, self.app)}
        beside = split is None and current.number in routed and len(routed) > 1
        try:
            self._route(current.number, commit, {mine[p]: (p, n) for p, n in wanted.items()}, progress, known,
                        ignore=before, split=split, alongside=beside)
        except releases.PortsUnknown as exc:
            progress(f"-----> {exc.message}: new ones take their place")
            return False
        return True

    def scale(self, current: releaselog.Release, commit: Commit, wanted: dict[str, int],
              progress: Progress, *, alongside: bool = False) -> Retiring | None:
        """More tasks of the release's services (new services for types that had none), the new web tasks
        health-checked and added to the route (`alongside`: to the release's own version, a canary's two releases
        keeping their weights); fewer, beside a canary, in place (shrink.py). None when a count goes down on a
        release alone: a rollout at the new count does it."""
        mine = self._of_release(current.number)
        had = {p: (releases.replicas(mine[p]) or 0) if p in mine else 0 for p in wanted}
        down = {mine[p]: (p, wanted[p]) for p in wanted if p in mine and wanted[p] < had[p]}
        if (down and not alongside) or set(mine) - set(wanted):
            return None
        if down:
            self.stopping.update(shrink.beside_canary(self.host, self.app, current.number, down, progress))
            had.update(dict(down.values()))
            if all(wanted[p] == had[p] for p in wanted):
                return []
        releases.before_placing(self.host.settings)
        before = {name: releases.failed_ids(name) for name in mine.values()}
        grown: dict[str, tuple[str, int]] = {}
        try:
            for process, count in wanted.items():
                if count == had[process]:
                    continue
                if process in mine:
                    releases.scale(mine[process], count)
                    progress(f"-----> Scaling {mine[process]} to {count} tasks")
                    grown[mine[process]] = (process, count)
                    continue
                port = containers.web_port(current.image) if process == formation.WEB else None
                command = procfile.process_command(commit.procs, process)
                name = releases.start(self.host.settings, self.app, release=current.number, process=process,
                                      replicas=count, port=port, env=current.config, command=command,
                                      limits=formation.limits(self.host, self.app), stop_grace=self._grace(),
                                      image=releases.registry_image(self.host.settings, self.registry, current.image,
                                                                    progress))
                self.started.append(name)
                grown[name] = (process, count)
            kept = {mine[p]: (p, had[p]) for p in wanted if p in mine and mine[p] not in grown and had[p]}
            self._route(current.number, commit, {**kept, **grown}, progress,
                        frozenset(proxy.upstream_addresses(self.host.settings, self.app)), ignore=before,
                        alongside=alongside)
        except BaseException:
            self.undo()
            for name, (process, _) in grown.items():
                if name not in self.started:
                    releases.scale(name, had[process])
            raise
        return []


Placement = Containers | Services


def _remove_containers(host: Host, app: str, progress: Progress) -> None:
    for container in engine.containers({engine.LABEL: str(host.settings.home), engine.APP_LABEL: app}):
        engine.remove(container.id, timeout=5)
        progress(f"removed container {container.name}")


def for_host(host: Host, app: str) -> Placement:
    """Services when this host made a cluster (`cluster:init`), else containers."""
    registry = membership.registry_address(host.settings)
    return Services(host, app, registry) if registry else Containers(host, app)


def stop(host: Host, app: str, progress: Progress) -> None:
    """`ps:stop`, and a review app beyond review-apps-max: the app's processes stopped (unrouted first), and kept
    stopped until `ps:start` or its next release."""
    with app_lock(host.settings, app, progress):
        for_host(host, app).stop(progress)  # containers here, or the services' tasks in a cluster
        apps.set_stopped(host, app, True)
