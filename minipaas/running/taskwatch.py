"""In a cluster, each app's route kept equal to its live release's running web tasks, and a canary's beside them in
a version of their own (docs/cluster-design.md).

The Swarm moves tasks behind minipaas' back: a node dies and its tasks are started again elsewhere, on other
ports; a task crashes and its replacement gets a new port. Engine 20.10 has no events for tasks, so the watcher
(`minipaas watch`) runs `follow` in a thread that looks about every second at the live release's web service of
every app, and at its canary's (whose tasks stay in the canary's version, at the canary's weight): an address that
is no longer a running task on a ready node leaves the route at once; a new running task is health-checked from
here (the app's CHECKS or health-check path, in a thread of its own, so a slow one holds up nothing) and only then
joins its release's version.

It never fights a deploy: an app whose lock is held (a push, a scale, `ps:stop`, a drain) is skipped for that
round, and only the services of the releases recorded live or canary are looked at; a retiring service is not.

Every few seconds it also reads the nodes' states: a node the Swarm marks down is the `node-down` event (for the
notifications, access/notify.py), once, when it goes down.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from minipaas.access import events
from minipaas.adapters import engine
from minipaas.cluster import membership, releases
from minipaas.deploy import containers, formation, health
from minipaas.errors import MinipaasError
from minipaas.routing import routes
from minipaas.state import canaries, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import try_app_lock
from minipaas.state.releaselog import Serving
from minipaas.state.settings import Settings

POLL_SECONDS = 1.0
NODES_SECONDS = 5.0  # how often the nodes' states are read (node-down)
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
    states: dict[str, str] = {}  # node id -> its Swarm state at the last look (node-down)
    counted = 0.0
    while True:
        try:
            if membership.registry_address(settings):
                if time.monotonic() - looked > FIREWALL_SECONDS:  # a node joined by hand: the Swarm may move tasks
                    looked = time.monotonic()                      # there before any deploy
                    releases.before_placing(settings)
                one_round(Host(settings), seen)
                if time.monotonic() - counted > NODES_SECONDS:
                    counted = time.monotonic()
                    for node in newly_down(states, engine.swarm.nodes()):
                        events.announce(Host(settings), "node-down", app="", user="watch",
                                        command=f"node-down {node.hostname}",
                                        outcome=f"node {node.hostname} ({node.address or node.id[:12]}) is down")
        except MinipaasError as exc:
            _say(f"tasks: {exc.message}")
        except Exception as exc:  # the engine went away for a moment: the next round asks again
            _say(f"tasks: {type(exc).__name__}: {exc}")
        time.sleep(POLL_SECONDS)


def newly_down(states: dict[str, str], nodes: list[engine.swarm.NodeInfo]) -> list[engine.swarm.NodeInfo]:
    """The nodes the Swarm says are down now and were not at the last look (a node down when the watcher starts
    was told by the watcher before it); `states` becomes their states now."""
    down = [n for n in nodes if n.status == "down" and states.get(n.id, "down") != "down"]
    states.clear()
    states.update({n.id: n.status for n in nodes})
    return down


def one_round(host: Host, seen: _Seen) -> None:
    for current in releaselog.lives(host):
        if current.serving != Serving.CONTAINER:
            continue
        with try_app_lock(host.settings, current.app) as held:
            if held:  # else a deploy (or a scale, a stop, a drain) has it: it sets the route itself
                _keep(host, current, seen)


def _keep(host: Host, current: releaselog.Release, seen: _Seen) -> None:
    """Under the app's lock: the route becomes the running tasks that are routed already or found healthy, each in
    its own release's version (the live release's, and a canary's beside it at the canary's weight)."""
    app, settings = current.app, host.settings
    running = canaries.of(host, app)
    sides = [(current, 100)]
    if running is not None and running.stable == current.number:
        sides = [(current, 100 - running.weight), (releaselog.get(host, app, running.release), running.weight)]
    # A routed task keeps its address while its node is not down: just after the manager's engine restarted, the
    # Swarm has not heard from the other nodes yet, and their tasks no longer say their ports (releases.addresses).
    owned = routes.owned(settings, app)
    names = {rel.number: releases.service_name(settings, app, formation.WEB, rel.number) for rel, _ in sides}
    tasks = {number: releases.task_addresses(name, known=owned) for number, name in names.items()}
    before = routes.versions(settings, app)
    routed = {address for v in before for address in v.targets}
    with seen.lock:
        healthy = seen.healthy.setdefault(app, set())
        healthy &= {address for found in tasks.values() for address in found}
        wanted = wanted_versions([(rel.number, weight, tasks[rel.number]) for rel, weight in sides], routed, healthy)
        now = time.monotonic()
        new = [(rel, a) for rel, _ in sides for a in tasks[rel.number] if a not in routed and a not in healthy
               and (app, a) not in seen.checking and seen.failed.get((app, a), 0.0) <= now]
        seen.checking.update((app, a) for _, a in new)
    if not same_route(wanted, before):
        if wanted:
            routes.set_versions(settings, app, wanted)
        else:
            routes.unroute(settings, app)
        had = {a for v in wanted for a in v.targets}
        gone, added = sorted(routed - had), sorted(had - routed)
        _say(f"{app}: route {describe(before)} → {describe(wanted)}"
             + (f"; unrouted {' '.join(gone)}" if gone else "") + (f"; routed {' '.join(added)}" if added else ""))
    plans: dict[str, health.Plan] = {}  # each release's commit read once a round
    for rel, address in new:
        if rel.sha not in plans:  # as it always was here: a CHECKS file or the healthcheck-path, not app.json's
            plans[rel.sha] = containers.health_plan(host, app, formation.read(host, app, rel.sha), app_json=False)
        threading.Thread(target=_check, args=(seen, app, names[rel.number], address, tasks[rel.number][address],
                                              plans[rel.sha]), daemon=True).start()


def wanted_versions(sides: list[tuple[int, int, dict[str, str]]], routed: set[str],
                    healthy: set[str]) -> list[routes.Version]:
    """The route the watcher keeps (pure): for each release (its number, its weight, its web service's running tasks
    as address → task), the tasks routed already (in whichever version) or found healthy, in that release's version:
    two services' tasks are never merged. A release with none leaves the route, its weight shared by the others, and
    comes back at its own weight once a task of it is healthy."""
    kept = [routes.Version(number, weight, {a: t for a, t in found.items() if a in routed or a in healthy})
            for number, weight, found in sides]
    return routes.renormalised([v for v in kept if v.targets])


def same_route(wanted: list[routes.Version], now: list[routes.Version]) -> bool:
    """Whether the route is already this one: each release at its weight with these addresses."""
    def key(versions: list[routes.Version]) -> list[tuple[int, int, frozenset[str]]]:
        return sorted((v.release, v.weight, frozenset(v.targets)) for v in versions)
    return key(wanted) == key(now)


def describe(versions: list[routes.Version]) -> str:
    """`2=80 (3 tasks) 3=20 (1 task)`; `none` when unrouted."""
    return " ".join(f"{v.release}={v.weight} ({len(v.targets)} task{'s' if len(v.targets) != 1 else ''})"
                    for v in versions) or "none"


def _check(seen: _Seen, app: str, name: str, address: str, task: str, plan: health.Plan) -> None:
    """A new task's health check; healthy, the next round routes it (if it still runs and is still live)."""
    try:
        health.run(plan, health.Task(name, address, gone=lambda: releases.why_gone(name, task)),
                   progress=lambda _line: None)
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
