"""The engine's news, applied at once: a web container that goes away leaves its app's route.

One background process per minipaas home (`minipaas watch`) follows the Docker engine's events for
that home's containers. When a routed container dies or is removed (a crash, a `docker rm -f`, an
engine shutting down), `routes.forget_container` takes its address out of its app's route before any
request waits on it: the app's other containers take the traffic, or the app answers 503. When the
engine restarts a crashed container (its restart policy), the container goes back into the route as
soon as it answers HTTP again. Deploys, scaling and retirement change routes themselves; the watcher
only reacts to what happens behind minipaas' back.

In a cluster the tasks run on other engines and the Swarm moves them itself: a thread of the same process
keeps each app's route equal to its live release's running web tasks (running/taskwatch.py). Another judges the
home's canary releases every few seconds (deploy/canaryguard.py).

Every deploy and `ps:restore` start it when it is not running (`ensure_running`); a watcher that starts (the last
one was killed) first catches up with what it did not hear: routed containers that are gone or stopped leave their
route. When the engine goes away
and comes back (a package upgrade restarts dockerd, someone restarts it), the engine has stopped every
container on its way down and starts none of them (their restart policy is for crashes): the watcher runs
`ps:restore` for its home itself as soon as the engine answers again, so every app and service comes back with
no command and no reboot.

Two more put idle apps to sleep and wake them at their first request (running/sleeping.py).
Another starts the apps' scheduled jobs at their minute (running/cronwatch.py).
Another keeps the log drains' shipper running (running/drains.py).

A third thread keeps the instance's own nginx running (running/nginxwatch.py): a master that dies without stopping
(SIGKILL, the OOM killer) is started again within about a second, as a deploy would start it.

A fourth thread sends the notifications' outbox (running/notifywatch.py); a routed web container that dies is a
`crash` event for them, and a disk that runs low is `disk-low` (running/diskfree.py, a fifth thread).
"""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
from pathlib import Path

from minipaas.access import events
from minipaas.adapters import engine
from minipaas.cluster import membership
from minipaas.deploy import canaryguard
from minipaas.errors import MinipaasError, NotFound
from minipaas.routing import routes
from minipaas.running import cronwatch, diskfree, drains, nginxwatch, notifywatch, sleeping, taskwatch
from minipaas.state import daemons, releaselog
from minipaas.state.host import Host
from minipaas.state.settings import Settings

GONE = ("die", "destroy", "kill", "oom", "stop")
BACK_WITHIN = 60.0  # seconds a restarted container has to answer before it is left out
# Seconds before an end is called a crash: a stopping engine (up to 10 s per container) has ended its events by then.
CRASH_GRACE = 20.0
_engine_gone_at = [0.0]  # when the engine's events last ended (it stopped or restarted), time.monotonic()


WATCHER = daemons.WATCHER


def pid_file(settings: Settings) -> Path:
    return WATCHER.pid_file(settings)


def running(settings: Settings) -> int | None:
    return WATCHER.running(settings)


ensure_running = daemons.ensure_watcher


def run(settings: Settings) -> None:
    """Follow the engine's events until killed (the `watch` command)."""
    pid_file(settings).write_text(f"{os.getpid()}\n")
    threading.Thread(target=taskwatch.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=nginxwatch.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=canaryguard.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=sleeping.follow_idle, args=(settings,), daemon=True).start()
    threading.Thread(target=sleeping.follow_wakes, args=(settings,), daemon=True).start()
    threading.Thread(target=notifywatch.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=diskfree.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=cronwatch.follow, args=(settings,), daemon=True).start()
    threading.Thread(target=drains.follow, args=(settings,), daemon=True).start()
    forgotten: dict[str, str] = {}  # container id -> app, for those unrouted by a crash
    lost = False  # the engine went away since we last followed it
    while True:
        try:
            if lost and engine.answers():
                print("watch: the engine is back; restoring every app (ps:restore)", file=sys.stderr, flush=True)
                restore_in_background(settings)
                lost = False
            if not lost:
                since = int(time.time()) - 1  # what happens while catching up is replayed, not missed
                catch_up(settings, forgotten)
                print("watch: following the engine's events", file=sys.stderr, flush=True)
                for event in engine.events({"type": "container", "label": f"{engine.LABEL}={settings.home}"},
                                           since=since):
                    handle(settings, event, forgotten)
                print("watch: the engine's events ended (it stops or restarts)", file=sys.stderr, flush=True)
                _engine_gone_at[0] = time.monotonic()
                lost = True
        except MinipaasError as exc:
            print(f"watch: {exc.message}; again in 1 s", file=sys.stderr, flush=True)
            lost = lost or not engine.answers()
            if lost:
                _engine_gone_at[0] = time.monotonic()
        except Exception as exc:  # the engine's stream broke (a restart): follow it again
            print(f"watch: {type(exc).__name__}: {exc}; again in 1 s", file=sys.stderr, flush=True)
            lost = lost or not engine.answers()
            if lost:
                _engine_gone_at[0] = time.monotonic()
        time.sleep(1)


def catch_up(settings: Settings, forgotten: dict[str, str]) -> None:
    """What the engine said while no watcher listened (the last one was killed, or the events' stream broke): a
    routed container that is gone or stopped leaves its app's route, as its event would have made it, and comes
    back if the engine starts it again. In a cluster the route names Swarm tasks: the task watcher's."""
    if membership.registry_address(settings):
        return
    for container, app in routes.routed(settings).items():
        if not _down(container):
            continue
        if routes.forget_container(settings, container, stale=lambda c=container: not _down(c)) is not None:
            forgotten[container] = app
            print(f"watch: {container[:12]} of {app}: stopped or removed while no watcher listened; unrouted",
                  file=sys.stderr, flush=True)


def _down(container: str) -> bool:
    """Whether the container is gone or not running (False when the engine cannot say)."""
    try:
        return engine.inspect(container).status != "running"
    except NotFound:
        return True
    except MinipaasError:
        return False


def restore_in_background(settings: Settings) -> None:
    """`ps:restore` of this home, in a process of its own."""
    daemons.spawn(settings, "ps:restore", log=WATCHER.name)


def handle(settings: Settings, event: dict[str, object], forgotten: dict[str, str]) -> None:
    action = str(event.get("Action") or event.get("status") or "")
    container = str(event.get("id") or "")
    if not container:
        return
    if action.split(":")[0] in GONE:
        # Old news when `ps:start` (or the engine) started it again since: it may be routed again already.
        app = routes.forget_container(settings, container, stale=lambda: _started_since(container, event))
        if app is not None:
            forgotten[container] = app
            print(f"watch: {container[:12]} of {app}: {action}; unrouted", file=sys.stderr, flush=True)
            # Said later, unless the engine goes away meanwhile: an engine that stops (a package upgrade) stops
            # every container first, and those are not crashes (they come back by ps:restore).
            later = threading.Timer(CRASH_GRACE, _crashed,
                                    args=(settings, app, container, action, event, time.monotonic()))
            later.daemon = True
            later.start()
    elif action == "start" and container in forgotten:
        app = forgotten.pop(container)
        threading.Thread(target=_route_again, args=(settings, app, container), daemon=True).start()


def _crashed(settings: Settings, app: str, container: str, action: str, event: dict[str, object],
             heard_at: float) -> None:
    """A routed web container went away behind minipaas' back (deploys, scaling and retirement unroute theirs
    first): the `crash` event, for the notifications; none when the engine stopped since it was heard of (it took
    the container down; it may well be back by now)."""
    if _engine_gone_at[0] >= heard_at or not engine.answers():
        print(f"watch: {container[:12]} of {app} went down with the engine: not a crash", file=sys.stderr, flush=True)
        return
    actor = event.get("Actor")
    attributes = actor.get("Attributes", {}) if isinstance(actor, dict) else {}
    attributes = attributes if isinstance(attributes, dict) else {}
    label = str(attributes.get(engine.RELEASE_LABEL, ""))
    code = attributes.get("exitCode")
    outcome = f"{container[:12]}: {action}" + (f" (exit code {code})" if code is not None else "") + "; unrouted"
    events.announce(Host(settings), "crash", app=app, command=f"crash {app} {container[:12]}", outcome=outcome,
                    release=int(label) if label.isascii() and label.isdigit() else None, user="watch")


def _started_since(container: str, event: dict[str, object]) -> bool:
    """Whether the container runs now and started after the event happened."""
    try:
        found = engine.inspect(container)
    except MinipaasError:
        return False
    happened = int(str(event.get("timeNano") or 0))
    return found.status == "running" and happened > 0 and found.started_ns > happened


def _route_again(settings: Settings, app: str, container: str) -> None:
    """A crashed container the engine restarted: back into the route once it answers HTTP."""
    deadline = time.monotonic() + BACK_WITHIN
    port = None
    while time.monotonic() < deadline:
        try:
            found = engine.inspect(container, network=settings.app_network(app))
        except MinipaasError:
            return
        if found.status != "running":
            return
        port = port or int(found.labels.get(engine.PORT_LABEL, "5000"))
        if found.ip and _answers(found.ip, port):
            if not _of_live_release(settings, app, found.labels.get(engine.RELEASE_LABEL, "")):
                return  # a deploy moved on meanwhile (or its canary ended): this one retires
            label = found.labels.get(engine.RELEASE_LABEL, "")
            routes.add_container(settings, app, f"{found.ip}:{port}", container,
                                 release=int(label) if label.isascii() and label.isdigit() else None)
            print(f"watch: {container[:12]} of {app}: answering again; routed", file=sys.stderr, flush=True)
            return
        time.sleep(0.2)


def _of_live_release(settings: Settings, app: str, release: str) -> bool:
    """The live release's, or its canary's (which has its share of the route)."""
    return release in {str(number) for number in releaselog.routed_numbers(Host(settings), app)}


def _answers(ip: str, port: int) -> bool:
    conn = http.client.HTTPConnection(ip, port, timeout=2)
    try:
        conn.request("GET", "/", headers={"User-Agent": "minipaas-watch"})
        return conn.getresponse().status < 500
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
