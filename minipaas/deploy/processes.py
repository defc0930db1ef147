"""Running processes of an app: status, logs, stop and start."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from minipaas.adapters import engine
from minipaas.deploy import containers, placement
from minipaas.errors import NotFound
from minipaas.routing import proxy
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock

CRASH_LINES = 10


def status(host: Host, app: str) -> list[dict[str, object]]:
    live = releaselog.live(host, app)
    serving = set(proxy.upstream_addresses(host.settings, app))
    rows = []
    for c in sorted(containers.app_containers(host, app), key=lambda c: c.name):
        web = c.labels.get(engine.PROCESS_LABEL) == "web"
        address = f"{c.ip}:{containers.container_port(c)}" if c.ip and web else ""
        is_live = live is not None and c.labels.get(engine.RELEASE_LABEL) == str(live.number)
        # A container that kept failing is left stopped by its restart policy (on-failure:10): crashed.
        crashed = c.status in ("exited", "dead") and c.exit_code != 0
        rows.append({
            "name": c.name,
            "process": c.labels.get(engine.PROCESS_LABEL, ""),
            "release": int(c.labels.get(engine.RELEASE_LABEL, "0")),
            "state": "crashed" if crashed else c.status,
            "health": "serving" if address and address in serving and not crashed
            else ("live" if is_live else "retiring"),
            "address": address,
            "restarts": c.restarts,
            "exit_code": c.exit_code if c.status in ("exited", "dead") else None,
            "last_lines": _last_lines(c.id, CRASH_LINES) if crashed else [],
        })
    return rows


def _last_lines(container: str, count: int) -> list[str]:
    try:
        data = b"".join(engine.logs(container, tail=count))
    except NotFound:
        return []
    return data.decode("utf-8", errors="replace").rstrip().splitlines()


def logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The live release's container output; with several containers, each line says whose it is."""
    live = releaselog.live(host, app)
    mine = sorted((c for c in containers.app_containers(host, app)
                   if live is not None and c.labels.get(engine.RELEASE_LABEL) == str(live.number)),
                  key=lambda c: c.name)
    if not mine:
        raise NotFound(f"{app} has no running container; push it first")
    if len(mine) == 1:
        yield from engine.logs(mine[0].id, tail=lines, follow=follow)
        return
    yield from _merged(mine, lines=lines, follow=follow)


def _merged(containers: list[engine.Container], *, lines: int, follow: bool) -> Iterator[bytes]:
    out: queue.Queue[bytes | None] = queue.Queue(maxsize=1000)

    def pump(c: engine.Container) -> None:
        prefix = c.name.encode() + b" | "
        pending = b""
        for chunk in engine.logs(c.id, tail=lines, follow=follow):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                out.put(prefix + line + b"\n")
        if pending:
            out.put(prefix + pending + b"\n")
        out.put(None)

    for c in containers:
        threading.Thread(target=pump, args=(c,), daemon=True).start()
    remaining = len(containers)
    while remaining:
        item = out.get()
        if item is None:
            remaining -= 1
        else:
            yield item


def stop(host: Host, app: str, progress: Callable[[str], None]) -> None:
    with app_lock(host.settings, app, progress):
        placement.for_host(host, app).stop(progress)  # containers here, or the services' tasks in a cluster
        apps.set_stopped(host, app, True)
