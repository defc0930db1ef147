"""One-off processes: `run APP -- CMD` in a fresh container of the live image (scheduled jobs use the same `spec`:
running/cron.py), `enter` an existing one."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from minipaas.adapters import engine
from minipaas.deploy import containers, formation
from minipaas.errors import InvalidInput, NotFound
from minipaas.state import config, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import try_app_lock


def run(host: Host, app: str, command: list[str]) -> int:
    live = releaselog.live(host, app)
    if live is None:
        raise NotFound(f"{app} has no release to run; push it first")
    if not command:
        raise InvalidInput("nothing to run: `run APP -- COMMAND [ARGS...]`")
    try:
        return engine.run_oneoff(**spec(host, app, live.image, "run"), command=command, tty=sys.stdin.isatty())
    finally:
        release_network(host, app)


def spec(host: Host, app: str, image: str, process: str, suffix: str = "") -> dict[str, Any]:
    """A one-off container of `image` for the app (`run`, a scheduled job): its name, the app's network (made
    now), config, labels and limits, as the engine's `run_oneoff` and `run` take them."""
    s = host.settings
    containers.ensure_app_network(host, app)
    return dict(image=image, name=s.container_name(f"{app}.{process}.{suffix or uuid.uuid4().hex[:8]}"),
                network=s.app_network(app), env=config.get_all(host, app),
                labels={engine.LABEL: str(s.home), engine.APP_LABEL: app, engine.PROCESS_LABEL: process},
                limits=formation.limits(host, app))


def release_network(host: Host, app: str) -> None:
    """After a one-off: its app network goes when nothing else uses it (a static site's, a stopped app's)."""
    with try_app_lock(host.settings, app) as held:  # a deploy running now needs the network: it is left to it
        if held:
            containers.drop_network_if_unused(host, app)


def enter(host: Host, app: str, process: str, command: list[str]) -> int:
    live = releaselog.live(host, app)
    running = [c for c in containers.web_containers(host, app)
               if c.status == "running" and live is not None and c.labels.get(engine.RELEASE_LABEL) == str(live.number)]
    if process not in ("web", "web.1") or not running:
        raise NotFound(f"{app} has no running {process} container")
    return engine.exec_in(running[0].id, command or ["/bin/sh"], tty=sys.stdin.isatty())
