"""What `ps` and `logs` show of an app's processes, for either placement (deploy/placement.py calls these):
plain containers on one host (moved unchanged from processes.py), or a cluster's Swarm tasks with the node each
runs on and its `node:port`.

The dashboard's log stream reads the same output stamped (`stamped_container_logs`, `stamped_task_logs`): each
line with its source and the engine's time, from where its cursor says (running/logcursor.py).

A row (`Row`) is the same for both; a task's also says where it runs (`Row.task`). `health` means the same:
`serving` when it runs and nginx routes to its address, `down` when it does not run (exited, crashed, being
restarted), else `live` (running, the live release's, not routed) or `retiring` (running, an older release's).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from minipaas.adapters import engine
from minipaas.cluster import releases
from minipaas.deploy import containers, formation
from minipaas.errors import NotFound
from minipaas.routing import proxy
from minipaas.running import logcursor
from minipaas.state import canaries, releaselog
from minipaas.state.host import Host

CRASH_LINES = 10
Stamped = tuple[str, int | None, bytes]  # (source, its stamp in ns, the line as shown: prefixed when several)
T = TypeVar("T")


@dataclass(frozen=True)
class TaskPlace:
    """Where a cluster's task runs: its node, its service and its id, and the Swarm's error for it."""

    node: str
    service: str
    id: str
    error: str


@dataclass(frozen=True)
class Row:
    """One process of an app as `ps` shows it: a container, or a cluster's task (`task` set)."""

    name: str
    process: str
    release: int
    state: str  # the engine's (running, exited...), or `crashed`
    health: str  # serving, live, retiring, down (`_health`)
    address: str  # ip:port, or node:port; "" for no web process
    restarts: int
    exit_code: int | None
    last_lines: tuple[str, ...]  # a crashed container's last lines of output
    task: TaskPlace | None = None

    @property
    def node(self) -> str | None:
        return self.task.node if self.task else None

    def as_dict(self) -> dict[str, object]:
        """`ps --json`'s object: its keys in the order they always had, a task's with its place among them."""
        place = {"node": self.task.node, "service": self.task.service, "task": self.task.id} if self.task else {}
        error = {"error": self.task.error} if self.task else {}
        return {"name": self.name, "process": self.process, "release": self.release, "state": self.state,
                "health": self.health, "address": self.address, **place, "restarts": self.restarts,
                "exit_code": self.exit_code, **error, "last_lines": list(self.last_lines)}


def container_rows(host: Host, app: str) -> list[Row]:
    live = releaselog.live(host, app)
    serving = set(proxy.upstream_addresses(host.settings, app))
    rows = []
    for c in sorted(containers.app_containers(host, app), key=lambda c: c.name):
        web = c.labels.get(engine.PROCESS_LABEL) == "web"
        address = f"{c.ip}:{containers.container_port(c)}" if c.ip and web else ""
        is_live = live is not None and c.labels.get(engine.RELEASE_LABEL) == str(live.number)
        # A container that kept failing is left stopped by its restart policy (on-failure:10): crashed.
        crashed = c.status in ("exited", "dead") and c.exit_code != 0
        rows.append(Row(
            name=c.name,
            process=c.labels.get(engine.PROCESS_LABEL, ""),
            release=int(c.labels.get(engine.RELEASE_LABEL, "0")),
            state="crashed" if crashed else c.status,
            health=_health(running=c.status == "running", routed=bool(address) and address in serving,
                           live=is_live),
            address=address,
            restarts=c.restarts,
            exit_code=c.exit_code if c.status in ("exited", "dead") else None,
            last_lines=tuple(_last_lines(c.id, CRASH_LINES)) if crashed else (),
        ))
    return rows


def task_rows(host: Host, app: str) -> list[Row]:
    """Each slot's current task of every service of the app (`web.2`: the service's second task), with its
    node and `node:port`. `restarts`: the tasks the Swarm replaced in that slot (it keeps the last few)."""
    live = releaselog.live(host, app)
    canary = canaries.of(host, app)  # its tasks are live beside the live release's, not retiring
    serving_releases = {r for r in (live.number if live else None, canary.release if canary else None) if r}
    serving = set(proxy.upstream_addresses(host.settings, app))
    owned = proxy.routed_tasks(host.settings, app)  # a task whose port the Swarm no longer says (releases.addresses)
    rows = []
    for name in releases.app_services(host.settings, app):
        process, number = releases.process_of(host.settings, app, name), releases.release_of(name)
        by_slot: dict[int, list[engine.services.Task]] = {}
        for task in releases.tasks(name):
            by_slot.setdefault(task.slot, []).append(task)
        for slot, history in sorted(by_slot.items()):
            current = [t for t in history if t.desired in ("running", "ready", "accepted")]
            if not current:
                continue  # a slot the Swarm shut down (a scale down, a stop): only its history is left
            task = current[-1]
            crashed = task.state in ("failed", "rejected")
            address = "" if process != formation.WEB else \
                f"{task.node_address}:{task.port}" if task.port else owned.get(task.id, "")
            rows.append(Row(
                name=f"{process}.{slot}",
                process=process,
                release=number,
                state="crashed" if crashed else task.state,
                health=_health(running=task.state == "running", routed=bool(address) and address in serving,
                               live=number in serving_releases),
                address=address,
                restarts=len(history) - 1,
                exit_code=task.exit_code if crashed else None,
                last_lines=(),
                task=TaskPlace(node=task.node, service=name, id=task.id, error=task.error),
            ))
    return sorted(rows, key=lambda r: (r.release, r.process, int(r.name.rsplit(".", 1)[1])))


def _health(*, running: bool, routed: bool, live: bool) -> str:
    """What a process does for its app: a stopped one is never `live` (`ps` once called an exited container so)."""
    if not running:
        return "down"
    return "serving" if routed else "live" if live else "retiring"


def _last_lines(container: str, count: int) -> list[str]:
    try:
        data = b"".join(engine.logs(container, tail=count))
    except NotFound:
        return []
    return data.decode("utf-8", errors="replace").rstrip().splitlines()


def _live_containers(host: Host, app: str) -> list[engine.Container]:
    live = releaselog.live(host, app)
    mine = sorted((c for c in containers.app_containers(host, app)
                   if live is not None and c.labels.get(engine.RELEASE_LABEL) == str(live.number)),
                  key=lambda c: c.name)
    if not mine:
        raise NotFound(f"{app} has no running container; push it first")
    return mine


def container_logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The live release's container output; with several containers, each line says whose it is."""
    mine = _live_containers(host, app)
    if len(mine) == 1:
        yield from engine.logs(mine[0].id, tail=lines, follow=follow)
        return
    yield from _merged([lambda c=c: _prefixed(c.name.encode(), engine.logs(c.id, tail=lines, follow=follow))
                        for c in mine])


def stamped_container_logs(host: Host, app: str, *, cursor: logcursor.Cursor, lines: int,
                           follow: bool) -> Iterator[Stamped]:
    """The same lines, each with its container (the source) and the engine's stamp, each container's from the
    second its place in `cursor` says (the last `lines` of one the cursor knows nothing of, without a baseline);
    the caller drops what it had with `cursor.admit`."""
    mine = _live_containers(host, app)
    since = {c.name: cursor.since(c.name) for c in mine}  # here: `admit` moves the cursor as the threads read

    def read(c: engine.Container) -> Iterator[Stamped]:
        start = since[c.name]
        chunks = engine.logs(c.id, tail="all" if start else lines, follow=follow, timestamps=True, since=start)
        for line in _lines(chunks):
            ns, text = logcursor.split_stamp(line)
            yield c.name, ns, (c.name.encode() + b" | " + text) if len(mine) > 1 else text

    if len(mine) == 1:
        yield from read(mine[0])
        return
    yield from _merged([lambda c=c: read(c) for c in mine])


def _live_services(host: Host, app: str) -> list[str]:
    live = releaselog.live(host, app)
    mine = [name for name in releases.app_services(host.settings, app)
            if live is not None and releases.release_of(name) == live.number]
    if not mine:
        raise NotFound(f"{app} has no running service; push it first")
    return mine


def task_logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The live release's services' output from every node (`docker service logs`), each line prefixed with its
    task and node: `web.2@node-3 | ...`. `lines`: the last lines of each task."""
    mine = _live_services(host, app)
    yield from _merged([lambda name=name: _task_prefixed(host, app, name, lines=lines, follow=follow)
                        for name in mine])


def _task_prefixed(host: Host, app: str, name: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    process = releases.process_of(host.settings, app, name)
    names: dict[str, bytes] = {}
    for task, line in releases.logs(name, tail=lines, follow=follow):
        if task not in names:  # a task started since (a rescheduled one): read the list again
            names.update({t.id: f"{process}.{t.slot}@{t.node}".encode() for t in releases.tasks(name)})
        yield names.get(task, task[:12].encode()) + b" | " + line + b"\n"


def stamped_task_logs(host: Host, app: str, *, cursor: logcursor.Cursor, lines: int,
                      follow: bool) -> Iterator[Stamped]:
    """`stamped_container_logs` for a cluster: each task is a source; a service's tasks are one stream, read from
    the cursor's oldest second (`admit` drops what each task had)."""
    start = cursor.oldest()

    def read(name: str) -> Iterator[Stamped]:
        process = releases.process_of(host.settings, app, name)
        names: dict[str, bytes] = {}
        for task, line in releases.logs(name, tail="all" if start else lines, follow=follow, timestamps=True,
                                        since=start):
            if task not in names:
                names.update({t.id: f"{process}.{t.slot}@{t.node}".encode() for t in releases.tasks(name)})
            ns, text = logcursor.split_stamp(line)
            yield task or name, ns, names.get(task, task[:12].encode()) + b" | " + text

    yield from _merged([lambda name=name: read(name) for name in _live_services(host, app)])


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A byte stream's lines, without their ends; a last line without an end too."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _prefixed(prefix: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    for line in _lines(chunks):
        yield prefix + b" | " + line + b"\n"


def _merged(sources: list[Callable[[], Iterator[T]]]) -> Iterator[T]:
    """The items of several streams as they come, each stream read by a thread of its own."""
    out: queue.Queue[T | None] = queue.Queue(maxsize=1000)

    def pump(source: Callable[[], Iterator[T]]) -> None:
        try:
            for line in source():
                out.put(line)
        finally:
            out.put(None)

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True).start()
    remaining = len(sources)
    while remaining:
        item = out.get()
        if item is None:
            remaining -= 1
        else:
            yield item
