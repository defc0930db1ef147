"""Start → health check → route switch: how traffic moves to new containers, for deploys (every kind of
release: push, config, restart, rollback) and for `ps:scale`.

The caller has started the containers; `bring_up` waits until each new web container is healthy, checks
that the other new ones (workers) still run, then sends the app's traffic to them and to the web
containers it keeps. On any failure nothing was switched: the caller removes what it started.
"""

from __future__ import annotations

from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.deploy import containers, formation
from minipaas.routing import proxy
from minipaas.state.host import Host

Progress = Callable[[str], None]


def bring_up(host: Host, app: str, *, release: int, sha: str, started: list[engine.Container], progress: Progress,
             kept: dict[str, str] | None = None, timed: bool = False) -> None:
    """Health-check `started`'s web containers (`timed`: say how long each took), check its others still
    run, and route the app to them and to `kept` (address → container id); with no web container at all,
    the app answers 503."""
    targets = dict(kept or {})
    for container in (c for c in started if c.labels[engine.PROCESS_LABEL] == formation.WEB):
        address, seconds = containers.wait_healthy(host, app, container, sha, progress)
        if timed:
            progress(f"       healthy after {seconds:.1f}s")
        targets[address] = container.id
    formation.check_still_running([c for c in started if c.labels[engine.PROCESS_LABEL] != formation.WEB],
                                  host.settings.app_network(app))
    if targets:
        proxy.switch(host.settings, app, release, targets)
    else:
        proxy.unroute(host.settings, app)  # scaled to no web process: the app answers 503
