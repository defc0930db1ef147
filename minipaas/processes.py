"""Running processes of an app: status, logs, stop and start."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from minipaas import engine, proxy, releases
from minipaas.errors import NotFound
from minipaas.host import Host
from minipaas.locks import app_lock


def status(host: Host, app: str) -> list[dict[str, object]]:
    live = releases.live(host, app)
    serving = set(proxy.upstream_addresses(host.settings, app))
    rows = []
    for c in sorted(releases.web_containers(host, app), key=lambda c: c.name):
        address = f"{c.ip}:{releases.container_port(c)}" if c.ip else ""
        is_live = live is not None and c.labels.get("minipaas.release") == str(live.number)
        rows.append({
            "name": c.name,
            "release": int(c.labels.get("minipaas.release", "0")),
            "state": c.status,
            "health": "serving" if address in serving else ("live" if is_live else "retiring"),
            "address": address,
            "restarts": c.restarts,
        })
    return rows


def logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    live = releases.live(host, app)
    containers = [c for c in releases.web_containers(host, app)
                  if live is not None and c.labels.get("minipaas.release") == str(live.number)]
    if not containers:
        raise NotFound(f"{app} has no running container; push it first")
    yield from engine.logs(containers[0].id, tail=lines, follow=follow)


def stop(host: Host, app: str, progress: Callable[[str], None]) -> None:
    with app_lock(host.settings, app, progress):
        # Traffic first: a stopped container's address may soon belong to another container.
        proxy.unroute(host.settings, app)
        for c in releases.web_containers(host, app):
            engine.stop(c.id, timeout=10)
            progress(f"-----> Stopped {c.name}")


def start(host: Host, app: str, progress: Callable[[str], None]) -> None:
    live = releases.live(host, app)
    if live is None:
        raise NotFound(f"{app} has no release to start; push it first")
    with app_lock(host.settings, app, progress):
        stopped = [c for c in releases.web_containers(host, app)
                   if c.labels.get("minipaas.release") == str(live.number) and c.status != "running"]
        for c in stopped:
            engine.start(c.id)
        addresses = [releases.wait_healthy(host, app, c, live.sha, progress)[0]
                     for c in releases.web_containers(host, app)
                     if c.labels.get("minipaas.release") == str(live.number)]
        if addresses:
            proxy.switch(host.settings, app, live.number, addresses)
            progress(f"-----> Started {app} (release {live.number})")
