"""Apps that sleep when idle and wake at their first request (issue 24).

An app whose `idle` setting (a review app: its parent's `review-apps-idle`) is not 0 and that served no request for
that long is put to sleep by a thread of the watcher (`follow_idle`): its route becomes `sleep` (nginx holds its
requests from then on), its live release's containers are stopped and removed, and the sleeps table says since when.
nginx says when each app last served a request (routes.last_requests: its metrics' flush notes it; no log is read).

A request to a sleeping app is held by nginx (nginx/lua/minipaas/wake.lua), which asks for one wake however many
requests wait; another thread of the watcher long-polls nginx's control server for them (`follow_wakes`) and wakes
each app as a deploy brings a release up: the live release's image with its config, started, health-checked and
routed by placement's `start` (deploy/bringup.py), no new release. A wake that fails (its image is gone, the app does
not answer) leaves the app sleeping: its held requests get a 503 saying why, `ps` says it too, and the next request
tries again. `ps:start` wakes one by hand (running/restore.py); `ps:restore` leaves sleeping apps asleep.

Static and Markdown sites have no container and never sleep; nor does an app with a canary (its guard judges its
traffic), nor one in a cluster (its Swarm services are not stopped so; not built yet).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.deploy import containers, formation, placement
from minipaas.errors import DeployFailed, MinipaasError
from minipaas.progress import Progress
from minipaas.routing import domains, proxy, routes
from minipaas.state import apps, canaries, locks, releaselog, sleeps
from minipaas.state.host import Host
from minipaas.state.releaselog import Serving
from minipaas.state.settings import Settings

LONGEST_CHECK = 10.0  # seconds between two looks at the idle apps, at most
SHORTEST_CHECK = 0.5  # ... and at least (an `idle 3s` is looked at every second)
DRAIN = 1.0  # seconds a sleeping app's containers finish what they were answering before they stop
WAKE_POLL = 20.0  # seconds the long poll of nginx's wakes waits for one


def _say(line: str) -> None:
    print(f"watch: {line}", file=sys.stderr, flush=True)


def idle_for(now: float, limit: int, *, last_request: float | None, awake_since: float | None) -> bool:
    """Whether an app has been idle for its `limit` seconds: no request since `now - limit`, nor awake since (a
    deploy, a wake or the watcher's first look count as a request)."""
    since = max(last_request or 0.0, awake_since or 0.0)
    return now - since >= limit


def check_interval(limits: dict[str, int]) -> float:
    """How often to look: a third of the shortest idle time, between SHORTEST_CHECK and LONGEST_CHECK seconds."""
    return max(SHORTEST_CHECK, min(LONGEST_CHECK, min(limits.values(), default=30) / 3))


def follow_idle(settings: Settings) -> None:
    """The watcher's thread that puts idle apps to sleep, until the process ends."""
    host = Host(settings)  # SQLite: a connection of this thread's own
    known: dict[str, float] = {}  # app -> its last request as far as this thread knows (nginx's restart forgets)
    first_look: dict[str, float] = {}  # app -> when this thread first saw it may sleep
    limits: dict[str, int] = {}
    said = ""  # the last failure said: the same one again (nginx down for a while) is not said at every look
    while True:
        failure = ""
        try:
            limits = apps.idle_limits(host)
            if limits:
                sleep_idle(host, limits, known, first_look)
        except MinipaasError as exc:
            failure = exc.message
        except Exception as exc:  # one bad look must not end the thread (the next one may do)
            failure = f"{type(exc).__name__}: {exc}"
        if failure and failure != said:
            _say(f"idle apps: {failure}")
        said = failure
        time.sleep(check_interval(limits))


def sleep_idle(host: Host, limits: dict[str, int], known: dict[str, float], first_look: dict[str, float]) -> None:
    """Put to sleep each app of `limits` idle for its time."""
    s = host.settings
    now, last = routes.last_requests(s)
    for app, seen in last.items():
        known[app] = max(seen, known.get(app, 0.0))
    table = routes.read(s)  # once, not per app
    woke = sleeps.woke_at(host)
    live_since = releaselog.live_since(host)
    for app, limit in limits.items():
        if not table.get(app):  # asleep (no version), or not routed (no web process, ps:stop)
            continue
        awake_since = max(first_look.setdefault(app, now), woke.get(app, 0.0), live_since.get(app, 0.0))
        if idle_for(now, limit, last_request=known.get(app), awake_since=awake_since):
            try:
                put_to_sleep(host, app, limit, _say)
            except MinipaasError as exc:
                _say(f"{app}: not put to sleep: {exc.message}")


def put_to_sleep(host: Host, app: str, limit: int, progress: Progress) -> bool:
    """Route the app to sleep, then stop and remove its live release's containers; False when it cannot sleep now
    (a deploy holds its lock, it has a canary, it runs no container, it is in a cluster)."""
    s = host.settings
    with locks.try_app_lock(s, app) as got:
        if not got:
            return False  # a deploy or a wake of it runs: not idle
        current = releaselog.live(host, app)
        where = placement.for_host(host, app)
        if current is None or current.serving != Serving.CONTAINER or canaries.of(host, app) is not None \
                or not isinstance(where, placement.Containers) or not routes.addresses(s, app):
            return False
        now, last = routes.last_requests(s)  # again, under the lock: a request may have come since the look
        if now - last.get(app, 0.0) < limit:
            return False
        retiring = releaselog.retiring(host, app)
        mine = [c for c in containers.app_containers(host, app)
                if c.labels.get(engine.RELEASE_LABEL) == str(current.number) and c.id not in retiring]
        # A vhost (and http.conf) an older minipaas wrote has no @minipaas_wake: made current first (nginx reloads
        # only when it changed), or the app's requests could not wake it.
        proxy.write_site(host, app, domains.of(host, app))
        routes.sleep(s, app)  # from now on nginx holds its requests
        sleeps.slept(host, app)
        time.sleep(DRAIN)  # what the containers were answering when the route changed
        for c in mine:
            engine.remove(c.id, timeout=10)  # SIGTERM first, as a retirement
        removed = ", ".join(c.name for c in mine)
        progress(f"{app}: idle for {limit}s; asleep (release {current.number}; removed {removed})")
        return True


def follow_wakes(settings: Settings) -> None:
    """The watcher's thread that wakes the sleeping apps nginx holds requests for, until the process ends."""
    while True:
        try:
            wanted = routes.wanted_wakes(settings, wait=WAKE_POLL)
        except MinipaasError:  # nginx is down (its own watcher starts it again) or reloading
            time.sleep(1)
            continue
        for app in wanted:
            threading.Thread(target=wake_for_nginx, args=(settings, app), daemon=True).start()


def wake_for_nginx(settings: Settings, app: str) -> None:
    """Wake the app, then tell nginx how it went: its held requests go on, or get a 503 saying why."""
    started = time.monotonic()
    host = Host(settings)
    failure = ""
    try:
        wake(host, app, _say)
        _say(f"{app}: awake ({time.monotonic() - started:.2f}s)")
    except MinipaasError as exc:
        failure = exc.message
    except Exception as exc:  # nginx must hear of it, or its requests wait for nothing
        failure = f"{type(exc).__name__}: {exc}"
    if failure:
        _say(f"{app}: the wake failed: {failure}")
        sleeps.wake_failed(host, app, failure)
    try:
        routes.woken(settings, app, failure)
    except MinipaasError as exc:
        _say(f"{app}: nginx did not hear of its wake: {exc.message}")


def wake(host: Host, app: str, progress: Progress) -> None:
    """Wake the app, under its lock (a deploy or another wake of it first)."""
    with locks.app_lock(host.settings, app, progress):
        wake_locked(host, app, progress)


def wake_locked(host: Host, app: str, progress: Progress) -> bool:
    """The live release's containers started from its image with its config, health-checked and routed (the app's
    lock held); False when the app does not sleep (woken meanwhile, or a deploy routed it). A failure leaves it
    asleep, as it was, and raises."""
    if app not in routes.sleeping(host.settings):
        return False
    current = releaselog.live(host, app)
    if current is None:
        raise DeployFailed(f"{app} has no live release to wake")
    if not current.image or engine.image_id(current.image) is None:
        raise DeployFailed(f"the image of release {current.number} is gone (gc or `docker rmi`); "
                           f"`minipaas ps:restart {app}` builds it again")
    where = placement.for_host(host, app)
    where.prepare()
    release = placement.Release(number=current.number, commit=formation.read(host, app, current.sha),
                                image=current.image, env=current.config)
    try:
        where.start(release, progress)  # start, health-check, route (the same bring-up as a deploy's)
    except BaseException:
        where.undo()
        raise
    sleeps.woke(host, app)
    return True


def describe(host: Host, app: str, *, when: Callable[[float], str]) -> list[str]:
    """What `ps` says of a sleeping app (nothing for an awake one)."""
    if app not in routes.sleeping(host.settings):
        return []
    found = sleeps.of(host, app)
    lines = [f"=====> {app} is sleeping (idle){f' since {when(found.slept_at)}' if found else ''}: its next request "
             "wakes it (or `ps:start`)"]
    if found and found.wake_error:
        lines.append(f" !     its last wake failed: {found.wake_error}")
    return lines
