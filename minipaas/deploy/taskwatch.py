"""In a cluster, each app's route kept equal to its live release's running web tasks (docs/cluster.md).

The Swarm moves tasks behind minipaas' back: a node dies and its tasks are started again elsewhere, on other
ports; a task crashes and its replacement gets a new port. Engine 20.10 has no events for tasks, so the watcher
(`minipaas watch`) runs `follow` in a thread that looks about every second at the live release's web service of
every app: an address that is no longer a running task on a ready node leaves the route at once; a new running
task is health-checked from here (the app's CHECKS or health-check path, in a thread of its own, so a slow one
holds up nothing) and only then joins the route.

It never fights a deploy: an app whose lock is held (a push, a scale, `ps:stop`, a drain) is skipped for that
round, and only the service of the release recorded live is looked at; a retiring service is not.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from minipaas.cluster import membership, releases
from minipaas.deploy import containers, formation, health
from minipaas.errors import MinipaasError
from minipaas.routing import routes
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import try_app_lock
from minipaas.state.releaselog import Serving
from minipaas.state.settings import Settings

POLL_SECONDS = 1.0
FIREWALL_SECONDS = 10.0  # how often a round also looks whether the manager's firewall names every node
RETRY_SECONDS = 10.0  # a task that failed its health check is checked again after this long


@dataclass
class _Seen:
    """What the rounds remember: per app, the tasks found healthy and not routed yet, the ones being checked, and
    when a failed one may be checked again."""

    healthy: dict[str, set[str]] = field(default_factory=dict)
    checking: set[tuple[str, str]] = field(default_factory=set)
    failed: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _say(line: str) -> None:
    print(f"watch: {line}", file=sys.stderr, flush=True)


def follow(settings: Settings) -> None:
    """Poll until the process ends (the watcher's thread); outside a cluster each round is one file read."""
    seen = _Seen()
    looked = 0.0
    while True:
        try:
            if membership.registry_address(settings):
                if time.monotonic() - looked > FIREWALL_SECONDS:  # a node joined by hand: the Swarm may move tasks
                    looked = time.monotonic()                      # there before any deploy
                    releases.before_placing(settings)
                one_round(Host(settings), seen)
        except MinipaasError as exc:
            _say(f"tasks: {exc.message}")
        except Exception as exc:  # the engine went away for a moment: the next round asks again
            _say(f"tasks: {type(exc).__name__}: {exc}")
        time.sleep(POLL_SECONDS)


def one_round(host: Host, seen: _Seen) -> None:
    for current in releaselog.lives(host):
        if current.serving != Serving.CONTAINER:
            continue
        with try_app_lock(host.settings, current.app) as held:
            if held:  # else a deploy (or a scale, a stop, a drain) has it: it sets the route itself
                _keep(host, current, seen)


def _keep(host: Host, current: releaselog.Release, seen: _Seen) -> None:
    """Under the app's lock: the route becomes the running tasks that are routed already or found healthy."""
    app, settings = current.app, host.settings
    name = releases.service_name(settings, app, formation.WEB, current.number)
    # A routed task keeps its address while its node is not down: just after the manager's engine restarted, the
    # Swarm has not heard from the other nodes yet, and their tasks no longer say their ports (releases.addresses).
    running = releases.task_addresses(name, known=routes.owned(settings, app))
    routed = routes.addresses(settings, app)
    with seen.lock:
        healthy = seen.healthy.setdefault(app, set())
        healthy &= set(running)
        wanted = {address: task for address, task in running.items() if address in routed or address in healthy}
        new = [a for a in running if a not in wanted and (app, a) not in seen.checking
               and seen.failed.get((app, a), 0.0) <= time.monotonic()]
        seen.checking.update((app, a) for a in new)
    if set(wanted) != set(routed) and (wanted or running or routed):
        gone, added = sorted(set(routed) - set(wanted)), sorted(set(wanted) - set(routed))
        if wanted:
            routes.switch(settings, app, wanted, release=current.number)
        else:
            routes.unroute(settings, app)
        _say(f"{app}: route {len(routed)} → {len(wanted)} tasks"
             + (f"; unrouted {' '.join(gone)}" if gone else "") + (f"; routed {' '.join(added)}" if added else ""))
    if new:
        checks = containers.checks_for(host, app, current.sha)
        timeout = float(apps.get_setting(host, app, "healthcheck-timeout"))
        for address in new:
            threading.Thread(target=_check, args=(seen, app, name, address, running[address], checks, timeout),
                             daemon=True).start()


def _check(seen: _Seen, app: str, name: str, address: str, task: str, checks: health.Checks,
           timeout: float) -> None:
    """A new task's health check; healthy, the next round routes it (if it still runs and is still live)."""
    try:
        health.wait_address(address, name=name, checks=checks, deadline=time.monotonic() + timeout,
                            progress=lambda _line: None,
                            gone=lambda: releases.why_gone(name, task))
    except MinipaasError as exc:
        _say(f"{app}: {exc.message}; checked again in {RETRY_SECONDS:.0f}s")
        with seen.lock:
            seen.checking.discard((app, address))
            seen.failed[(app, address)] = time.monotonic() + RETRY_SECONDS
        return
    except Exception as exc:
        _say(f"{app}: checking {address}: {type(exc).__name__}: {exc}")
        with seen.lock:
            seen.checking.discard((app, address))
        return
    with seen.lock:
        seen.checking.discard((app, address))
        seen.failed.pop((app, address), None)
        seen.healthy.setdefault(app, set()).add(address)
