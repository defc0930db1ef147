"""Retirement: old containers stopped and removed after their drain delay (in a background
`minipaas retire`), and the repair of what a crashed deploy or retirer left (`reconcile`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from minipaas.adapters import engine
from minipaas.cluster import releases
from minipaas.deploy import containers, placement
from minipaas.errors import EngineError
from minipaas.routing import domains, proxy, sites
from minipaas.state import apps, canaries, locks, releaselog, store
from minipaas.state.host import Host
from minipaas.state.releaselog import Kind, Serving


def spawn_retirer(host: Host, app: str) -> None:
    """Retire old containers after their drain delay without holding up the push."""
    host.settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(host.settings.logs_dir / "retire.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", "retire", app],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "MINIPAAS_HOME": str(host.settings.home)},
        )


# How long a waiting retirer waits for an engine that went away (a restart) before leaving it to the next deploy.
ENGINE_WAIT = 30 * 60


@contextmanager
def running(host: Host, app: str) -> Iterator[None]:
    """Around a retirer's whole run: while it lasts, `reconcile` knows this app's retirements are handled."""
    with locks.retiring(host.settings, app):
        yield


def retire(host: Host, app: str, *, wait: bool) -> list[str]:
    """Stop and remove the app's containers whose drain delay is over (waiting for it, and for an engine that
    restarts meanwhile, if `wait`)."""
    done = []
    give_up = time.monotonic() + ENGINE_WAIT
    while True:
        waiting = releaselog.retirements(host, app)
        if not waiting:
            return done
        due = [container for container, not_before in waiting if not_before <= store.now()]
        if not due:
            if not wait:
                return done
            time.sleep(max(0.05, waiting[0][1] - store.now()))
            continue
        for container in due:
            try:
                _remove(container)
            except EngineError:
                if not wait or time.monotonic() > give_up:
                    raise
                time.sleep(1)  # the engine restarts (it stopped the container): removed once it answers
                break
            releaselog.retired(host, container)
            done.append(container)


def reconcile(host: Host, app: str) -> None:
    """Repair what a deploy or a retirer killed at any step left (every deploy and `ps:restore` run it first): stray
    containers (a route left on some of them goes back to the live release first, and they drain), releases left
    pending (now failed, `interrupted`), an image built for one of them that no release names yet (named, for gc), a
    static site pointed at one of them, a network of an app that has no container left, retirements that no retirer
    handles (one is started).

    Runs under the app's lock, so no other deploy of this app is creating containers now.
    """
    current = releaselog.live(host, app)
    canary = canaries.of(host, app)  # a canary release's containers run beside the live one's
    # Containers here, or a cluster's services (of a pending release, or of one whose retirer died).
    draining = placement.for_host(host, app).remove_strays(current.number if current else None,
                                                           set(releaselog.retiring(host, app)),
                                                           canary.release if canary else None)
    interrupted = releaselog.interrupt_pending(host, app, retiring=draining,
                                               drain=int(apps.get_setting(host, app, "drain-seconds")))
    for release in interrupted:
        _name_image(host, release)
    if interrupted:
        _site_back(host, app, current)
        containers.drop_network_if_unused(host, app)  # a first deploy killed after it made the network
    # Killed before it handed the old containers over, or the retirer itself killed: a new one retires them (a
    # deploy never waits on a slow SIGTERM itself).
    if releaselog.retiring(host, app) and not locks.retirer_runs(host.settings, app):
        spawn_retirer(host, app)


def _site_back(host: Host, app: str, current: releaselog.Release | None) -> None:
    """A static site's deploy killed after it pointed the site at its release: the site is the live release's again
    (none when the live release runs containers: their vhost again; the route, `ps:restore` or the deploy's switch)."""
    s = host.settings
    wanted = current.number if current is not None and current.serving == Serving.STATIC else None
    if sites.live_release(s, app) == wanted:
        return
    if wanted is None:
        sites.deactivate(s, app)
    else:
        sites.activate(s, app, wanted)
    proxy.write_site(host, app, domains.of(host, app))


def _name_image(host: Host, release: releaselog.Release) -> None:
    """An interrupted build may have tagged its image before its release could name it: named now, gc removes it
    with the release's (a failed release's image goes at the next gc)."""
    if release.image or release.kind not in (Kind.BUILD, Kind.REBUILD):
        return
    tag = host.settings.image_tag(release.app, release.number, release.sha)
    labels = engine.image_labels(tag)
    if labels and labels.get(engine.LABEL) == str(host.settings.home) and \
            labels.get(engine.RELEASE_LABEL) == str(release.number):
        releaselog.update(host, release.app, release.number, image=tag)


def _remove(target: str) -> None:
    """Remove what a retirement names: a container (its id) or a service (`service:<name>`)."""
    if target.startswith(placement.SERVICE_PREFIX):
        releases.remove(target[len(placement.SERVICE_PREFIX):])
    else:
        engine.remove(target, timeout=10)
