"""Start → health check → route switch: how traffic moves to new containers, for deploys (every kind of
release: push, config, restart, rollback) and for `ps:scale`.

The caller has started the containers; `bring_up` waits until each new web container is healthy, checks
that the other new ones (workers) still run, then sends the app's traffic to them and to the web
containers it keeps, or, for a canary (`split`), a share of it beside the stable release's. On any failure
nothing was switched: the caller removes what it started.
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.adapters import engine
from minipaas.deploy import containers, formation
from minipaas.errors import DeployFailed
from minipaas.progress import Progress
from minipaas.routing import proxy
from minipaas.routing.routes import Version
from minipaas.source.commit import Commit
from minipaas.state.host import Host


@dataclass(frozen=True)
class Split:
    """A canary's switch: the new release's web containers take `weight` percent of new clients, the stable
    release's routed ones the rest (as routed at the switch: one may have crashed out meanwhile)."""

    stable: int
    weight: int


def bring_up(host: Host, app: str, *, release: int, commit: Commit, started: list[engine.Container], progress: Progress,
             kept: dict[str, str] | None = None, timed: bool = False, split: Split | None = None,
             alongside: bool = False) -> None:
    """Health-check `started`'s web containers (`timed`: say how long each took), check its others still
    run, and route the app to them and to `kept` (address → container id); with no web container at all,
    the app answers 503. `alongside`: they become the release's own version, the app's others (a canary's two
    releases, one of them scaled) keep their containers and weights. `commit`: the release's, as read once."""
    targets = dict(kept or {})
    web = [c for c in started if c.labels[engine.PROCESS_LABEL] == formation.WEB]
    plan = containers.health_plan(host, app, commit) if web else None
    for container in web:
        assert plan is not None
        address, seconds = containers.wait_healthy(host, app, container, plan, progress)
        if timed:
            progress(f"       healthy after {seconds:.1f}s")
        targets[address] = container.id
    formation.check_still_running([c for c in started if c.labels[engine.PROCESS_LABEL] != formation.WEB],
                                  host.settings.app_network(app))
    route(host, app, release, targets, split=split, alongside=alongside)


def route(host: Host, app: str, release: int, targets: dict[str, str], *, split: Split | None = None,
          alongside: bool = False) -> None:
    """The switch of a release's healthy web processes (`targets`: address → container or Swarm task): all the
    app's traffic, or a canary's share beside the stable release (`split`), or the release's own version among the
    routed ones (`alongside`); none at all: the app answers 503. Containers (bring_up) and Swarm tasks
    (taskcheck.route) switch the same way."""
    if split is not None:
        if not targets:
            raise DeployFailed(f"release {release} has no web process to take a canary's share; deploy it without "
                               "a canary (`git push -o canary=0`, `deploy APP --canary 0`)")
        stable = stable_targets(host, app, split.stable)
        if not stable:
            raise DeployFailed(f"release {split.stable} serves no traffic any more: no canary to run beside it")
        proxy.set_versions(host.settings, app, [
            Version(release=split.stable, weight=100 - split.weight, targets=stable),
            Version(release=release, weight=split.weight, targets=targets)])
    elif alongside:
        versions = proxy.versions(host.settings, app)
        if not targets or release not in {v.release for v in versions}:
            raise DeployFailed(f"release {release} of {app} is not routed beside another any more; nothing changed")
        proxy.set_versions(host.settings, app, [Version(v.release, v.weight, targets) if v.release == release else v
                                                for v in versions])
    elif targets:
        proxy.switch(host.settings, app, release, targets)
    else:
        proxy.unroute(host.settings, app)  # scaled to no web process: the app answers 503


def stable_targets(host: Host, app: str, release: int) -> dict[str, str]:
    """The routed web containers of one of the app's releases (address → container or task); when the table has no
    version of that number (one written by an older minipaas), everything the app is routed to."""
    versions = proxy.versions(host.settings, app)
    for version in versions:
        if version.release == release:
            return dict(version.targets)
    return {address: owner for owner, address in proxy.routed_tasks(host.settings, app).items()} \
        if all(v.release == 0 for v in versions) else {}
