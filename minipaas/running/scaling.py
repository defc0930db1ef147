"""`ps:scale`: start what is missing, switch the route, retire the surplus after its drain delay. While a canary
runs, both of its releases run the new counts, each keeping its share of the traffic (in a cluster, down in place:
the tasks the Swarm picks to stop leave the route before their stop, deploy/shrink.py; a release alone scales down
there by a rollout at the new count, docs/cluster-design.md)."""

from __future__ import annotations

from minipaas.deploy import formation, placement, retirement, rollout, shrink
from minipaas.errors import Conflict, InvalidInput
from minipaas.progress import Progress
from minipaas.source.commit import Commit
from minipaas.state import apps, canaries, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Release, Serving


def scale(host: Host, app: str, args: list[str], progress: Progress) -> dict[str, int]:
    """`ps:scale APP web=3 worker=1`: start what is missing, switch, then retire the surplus (drained)."""
    changes = formation.parse_changes(args)
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        running = canaries.of(host, app)
        commit = formation.read(host, app, current.sha) if current else None
        before = formation.counts(host, app, commit)
        unknown = sorted(set(changes) - set(before))
        if current is not None and unknown:
            raise InvalidInput(f"{app} has no process type {', '.join(unknown)} "
                               f"(its types: {', '.join(before)}; others come from the Procfile)")
        if running is not None and changes.get(formation.WEB) == 0:
            raise Conflict(f"release {running.release} of {app} is a canary at {running.weight}%: each of its "
                           f"releases needs a web process; promote or abort it first (`releases:promote {app}`)")
        formation.check_quota(host, app, {**before, **changes})  # refused before anything is stored
        formation.store_counts(host, app, changes)
        wanted = formation.counts(host, app, commit)
        if current is None or commit is None or current.serving == Serving.STATIC:
            progress(f"-----> Stored: {_formation_text(wanted)}; it applies from the next deploy")
            return wanted
        try:
            wheres = [_apply_scale(host, app, current, commit, wanted, progress, alongside=running is not None)]
            if running is not None:
                wheres.append(_scale_canary(host, app, releaselog.get(host, app, running.release), progress))
            # A Swarm canary's two services scaled down in place: the tasks they stop, waited for together.
            shrink.wait_gone(host, app, {name: tasks for where in wheres
                                         if isinstance(where, placement.Services)
                                         for name, tasks in where.stopping.items()}, progress)
        except BaseException:
            formation.store_counts(host, app, before)
            raise
        progress(f"=====> {app} runs {_formation_text(wanted)}")
        return wanted


def _formation_text(counts: dict[str, int]) -> str:
    return " ".join(f"{process}={count}" for process, count in counts.items())


def _scale_canary(host: Host, app: str, release: Release, progress: Progress) -> placement.Placement:
    """The canary's release at the new counts of the process types it has (its Procfile may differ)."""
    commit = formation.read(host, app, release.sha)
    wanted = formation.counts(host, app, commit)
    progress(f"-----> Canary release {release.number}: {_formation_text(wanted)}")
    return _apply_scale(host, app, release, commit, wanted, progress, alongside=True)


def _apply_scale(host: Host, app: str, current: Release, commit: Commit, wanted: dict[str, int],
                 progress: Progress, *, alongside: bool = False) -> placement.Placement:
    where = placement.for_host(host, app)
    where.prepare()  # its network: gone if it had scaled to 0 (containers.drop_network_if_unused)
    surplus = where.scale(current, commit, wanted, progress, alongside=alongside)
    # A rollout would replace the canary (rollout.roll_out aborts it first): left for a service of a process type
    # the release's Procfile no longer has.
    if surplus is None and alongside:
        raise Conflict(f"release {current.number} of {app} runs beside a canary and has a service of a process type "
                       f"its Procfile lacks: promote or abort the canary first (`releases:promote {app}`)")
    if surplus is None:  # in a cluster, a count that goes down: a rollout at the new count
        progress(f"-----> Rolling release {current.number} out again at {_formation_text(wanted)}")
        rollout.roll_out(host, app, kind=Kind.SCALE, sha=current.sha, image=current.image,
                         buildpack=current.buildpack, progress=progress, env=current.config, commit=commit)
        return where
    if surplus:
        drain = int(apps.get_setting(host, app, "drain-seconds"))
        releaselog.retire_later(host, app, [target for target, _ in surplus], drain)
        progress(f"-----> Retiring {', '.join(name for _, name in surplus)} in {drain}s (in the background)")
        retirement.spawn_retirer(host, app)
    return where
