"""Canary releases: a new release takes a share of an app's new clients beside the live one, then all of it
(`releases:promote`) or none (`releases:abort`).

A canary starts as any release does (build, start, health checks: rollout.py), but its switch gives the routing
table two versions of the app, the stable release's web containers and the canary's, weighted; nginx then keeps
each client on the version it was given (routing/routes.py). In a cluster the two versions are the tasks of the
two releases' web services (deploy/placement.py), and the task watcher keeps each version to its own service's
running tasks (running/taskwatch.py). Nothing retires while the canary runs. Promoting it
is the switch and the retirement a plain deploy would have done; aborting it sends everything back to the stable
release and retires the canary's containers. Both drain as a deploy does (`drain-seconds`).

Any other release of the app (a push, a config change, a restart, a rollback) replaces a running canary: it is
aborted first, and the new release starts from the stable one. `ps:restore` brings a canary back beside its stable
release, or aborts it when its containers cannot come back.
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.access import events
from minipaas.deploy import containers, placement, retirement
from minipaas.deploy.bringup import Split, stable_targets
from minipaas.errors import Conflict, InvalidInput, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.routing import certfiles, certs, proxy
from minipaas.routing.routes import Version
from minipaas.state import apps, canaries, releaselog
from minipaas.state.canaries import Canary
from minipaas.state.host import Host
from minipaas.state.locks import app_lock


@dataclass(frozen=True)
class Plan:
    """How a release asked to be a canary starts: its first share, and the shares after it."""

    steps: tuple[int, ...]


def plan(host: Host, app: str, asked: int | None) -> Plan | None:
    """The canary a release of a pushed commit starts as, if any: `asked` (`-o canary=N`, `deploy --canary N`; 0:
    none for this one), else the app's `canary` setting, else the first of its `canary-steps`. With `canary-steps`
    set, the canary goes on through those above its first share (promoting itself at 100)."""
    steps = apps.canary_steps(apps.get_setting(host, app, "canary-steps")) or ()
    first = asked if asked is not None else int(apps.get_setting(host, app, "canary")) or (steps[0] if steps else 0)
    if not first:
        return None
    if not 1 <= first <= 99:
        raise InvalidInput(f"a canary's share is a percentage from 1 to 99, not {first}")
    return Plan(steps=(first, *(s for s in steps if s > first)))


def split_for(host: Host, app: str, wanted: Plan, progress: Progress) -> Split | None:
    """The stable side of a canary's switch: the live release's routed web containers (in a cluster, its web
    service's routed tasks). None (said) when there is nothing to share traffic with: no live container release, or
    none of its web containers routed."""
    live = releaselog.live(host, app)
    if live is None or live.serving == releaselog.Serving.STATIC:
        progress("-----> No live container release to run a canary beside: this release takes all traffic")
        return None
    if not stable_targets(host, app, live.number):
        progress(f"-----> Release {live.number} serves no traffic now: this release takes all of it, no canary")
        return None
    return Split(stable=live.number, weight=wanted.steps[0])


def started(host: Host, app: str, number: int, split: Split, wanted: Plan, progress: Progress) -> Canary:
    """Record the release as the app's canary (after its switch) and say how to go on."""
    canary = canaries.record(host, app, release=number, stable=split.stable, steps=wanted.steps,
                             by=releaselog.pusher())
    domain = apps.default_domain(host, app)
    suffix = containers.port_suffix(host)
    progress(f"=====> {app} release {number} is a canary: {split.weight}% of new clients; release {split.stable} "
             f"serves the rest")
    progress(f"       its own URL: {release_url(host, app, number, domain, suffix)} (or the header "
             f"X-Minipaas-Release: {number})")
    if canary.automatic:
        steps = ", ".join(f"{s}%" for s in wanted.steps[1:]) or "-"
        progress(f"       next: {steps}, every {apps.get_setting(host, app, 'canary-interval')} while its errors and "
                 f"latency stay near release {split.stable}'s (`metrics {app}`)")
    else:
        progress(f"       `releases:promote {app}` gives it all traffic, `releases:abort {app}` none")
    return canary


def release_url(host: Host, app: str, number: int, domain: str, suffix: str) -> str:
    """The release's own URL; over HTTPS when the app has a certificate, said when that certificate does not name
    it (the vhost answers the name, but a browser warns: the header still reaches the release)."""
    name = f"v{number}.{domain}"
    if certfiles.paths(host.settings, app) is None:
        return f"http://{name}{suffix}/"
    try:
        named = certs.valid_for(certs.info(host, app), name)
    except MinipaasError:
        named = False
    port = host.settings.https_port
    url = f"https://{name}{'' if port == 443 else f':{port}'}/"
    return url if named else f"{url}, which the app's certificate does not name (one for *.{domain} would)"


def promote(host: Host, app: str, progress: Progress) -> releaselog.Release:
    """`releases:promote APP`: the canary takes all traffic and is the live release; the stable one retires."""
    with app_lock(host.settings, app, progress):
        canary = _running(host, app)
        return promote_locked(host, app, canary, progress)


def promote_locked(host: Host, app: str, canary: Canary, progress: Progress) -> releaselog.Release:
    targets = _version_targets(host, app, canary.release)
    if not targets:
        raise Conflict(f"the canary's web containers (release {canary.release}) do not run; `releases:abort {app}` "
                       "sends everything back to the live release")
    proxy.switch(host.settings, app, canary.release, targets)
    # Every process (in a cluster: service) of another release: the stable one, and any a crash left.
    old = [(target, name) for target, name, of in placement.for_host(host, app).parts() if of != str(canary.release)]
    drain = int(apps.get_setting(host, app, "drain-seconds"))
    canaries.promoted(host, app, canary.release, retiring=[target for target, _ in old], drain=drain)
    if old:
        progress(f"-----> Retiring {', '.join(name for _, name in old)} in {drain}s (in the background)")
    retirement.spawn_retirer(host, app)
    progress(f"=====> {app} release {canary.release} is live (promoted from a {canary.weight}% canary)")
    # The `deploy` event (for the notifications): the canary is the live release now (by hand or by its guard).
    events.announce(host, "deploy", app=app, command=f"deploy {app} {canary.release}", release=canary.release,
                    outcome=f"release {canary.release} is live (promoted from a {canary.weight}% canary)")
    return releaselog.get(host, app, canary.release)


def abort(host: Host, app: str, progress: Progress) -> None:
    """`releases:abort APP`: everything back to the live release; the canary's containers retire."""
    with app_lock(host.settings, app, progress):
        abort_locked(host, app, _running(host, app), progress, reason=f"aborted by {releaselog.pusher()}")


def abort_locked(host: Host, app: str, canary: Canary, progress: Progress, *, reason: str) -> None:
    """Every client back to the stable release (its routed containers, else the live release's running ones),
    then the canary's containers (in a cluster: services) drain and retire and its release is recorded failed with
    `reason`."""
    targets = _version_targets(host, app, canary.stable) or placement.for_host(host, app).web_targets(canary.stable)
    if targets:
        proxy.switch(host.settings, app, canary.stable, targets)
    else:
        proxy.unroute(host.settings, app)
    leaving = [target for target, _, of in placement.for_host(host, app).parts() if of == str(canary.release)]
    drain = int(apps.get_setting(host, app, "drain-seconds"))
    canaries.aborted(host, app, canary.release, message=f"canary {reason}", retiring=leaving, drain=drain)
    retirement.spawn_retirer(host, app)
    progress(f"=====> {app}: canary release {canary.release} {reason}; release {canary.stable} serves all traffic")


def reweigh(host: Host, app: str, canary: Canary, *, step: int, weight: int) -> None:
    """The canary's next step (under the app's lock): `weight` percent of new clients from now; clients keep the
    release they were given (their cookie), so only new ones move."""
    stable, new = _version_targets(host, app, canary.stable), _version_targets(host, app, canary.release)
    if not stable or not new:
        raise Conflict(f"a release of {app}'s canary has no routed web container; it stays at {canary.weight}%")
    proxy.set_versions(host.settings, app, [Version(release=canary.stable, weight=100 - weight, targets=stable),
                                            Version(release=canary.release, weight=weight, targets=new)])
    canaries.advance(host, app, step=step, weight=weight)


def replace(host: Host, app: str, progress: Progress, *, by: str) -> None:
    """A new release of the app is starting (under its lock): a running canary is aborted first."""
    canary = canaries.of(host, app)
    if canary is not None:
        abort_locked(host, app, canary, progress, reason=f"replaced by {by}")


def resume(host: Host, app: str, progress: Progress) -> None:
    """After the live release came back (`ps:restore`, `ps:start`; under the app's lock): the canary's containers
    started, health-checked and given their share again; aborted (said, and in `events`) when they cannot be."""
    canary = canaries.of(host, app)
    if canary is None:
        return
    where = placement.for_host(host, app)  # its containers here, its services (scaled back) in a cluster
    try:
        if not stable_targets(host, app, canary.stable):
            raise NotFound("the live release serves nothing")
        if not where.resume(releaselog.get(host, app, canary.release), progress,
                            split=Split(stable=canary.stable, weight=canary.weight)):
            raise NotFound(f"its {where.WHAT} are gone")
    except MinipaasError as exc:
        reason = f"aborted: it could not come back ({exc.message})"
        abort_locked(host, app, canary, progress, reason=reason)
        events.record(host, app=app, command=f"canary:abort {app} {canary.release}", outcome=reason)
        return
    progress(f"-----> {app}: canary release {canary.release} back at {canary.weight}%")


def _running(host: Host, app: str) -> Canary:
    canary = canaries.of(host, app)
    if canary is None:
        raise NotFound(f"{app} has no canary release running")
    return canary


def _version_targets(host: Host, app: str, release: int) -> dict[str, str]:
    """The routed web containers of one of the app's versions (address → container)."""
    for version in proxy.versions(host.settings, app):
        if version.release == release:
            return dict(version.targets)
    return {}

