"""`ps:restore`: every app back to its recorded state after a reboot or a dockerd restart."""

from __future__ import annotations

from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.deploy import containers, formation, retirement, rollout, watcher
from minipaas.routing import domains, proxy
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock

Progress = Callable[[str], None]


def restore(host: Host, progress: Progress) -> None:
    """Bring every app back to its recorded state (after a reboot or a dockerd restart)."""
    s = host.settings
    proxy.setup(s)
    watcher.ensure_running(s)
    for app in apps.names(host):
        with app_lock(s, app, progress):
            retirement.reconcile(host, app)
            current = releaselog.live(host, app)
            if current is None:
                continue
            containers.ensure_app_network(host, app)
            if current.serving == "static":
                proxy.write_site(s, app, domains.of(host, app))
                continue
            mine = [c for c in containers.app_containers(host, app)
                    if c.labels.get(engine.RELEASE_LABEL) == str(current.number)]
            for c in mine:
                if c.status != "running":
                    engine.start(c.id)
            targets = {containers.wait_healthy(host, app, c, current.sha, progress)[0]: c.id for c in mine
                       if c.labels.get(engine.PROCESS_LABEL) == formation.WEB}
            wanted = formation.counts(host, app, formation.procfile(host, app, current.sha),
                                      formation.declared(host, app, current.sha))
            if len(targets) < wanted[formation.WEB]:
                progress(f"-----> {app}: containers of release {current.number} are gone; starting new ones")
                rollout.roll_out(host, app, kind="restart", sha=current.sha, image=current.image,
                          buildpack=current.buildpack, progress=progress, env=current.config)
                continue
            if targets:
                proxy.switch(s, app, current.number, targets)
            progress(f"-----> {app}: release {current.number} serving at {', '.join(targets) or 'no web process'}")
