"""`cluster:drain NODE` and `cluster:activate NODE`: a node's tasks move before they stop (docs/cluster-design.md).

Swarm's own drain (`docker node update --availability drain`) stops the node's tasks at once and starts their
replacements elsewhere (a service without `--update-order start-first` stops first; measured in
tests/test_cluster_failures.py), while nginx still sends those tasks requests. So minipaas drains in this order:

1. the node is paused: the Swarm places no new task on it, the running ones go on serving;
2. every app with a task of its live release there is rolled out again (the deploy's own sequence, a release of
   kind `drain`): a new service whose tasks all land on the other nodes, each health-checked, then the route
   switched to them; the old service retires after the app's drain delay, as after any deploy;
3. once no task of minipaas' services runs on the node any more (the retirements done), the node is drained:
   the Swarm has nothing of minipaas' left to stop there.

Moving only the node's own tasks (scale up by their count, then back down) was rejected: a Swarm scale-down picks
the tasks it stops itself, routed ones included, and stops them before nginx could stop sending them requests.
A failure on the way sets the node's availability back to what it was; apps already moved stay moved (they serve
from the other nodes, a valid state).
"""

from __future__ import annotations

import time

from minipaas.cluster import membership, releases
from minipaas.deploy import rollout
from minipaas.errors import DeployFailed
from minipaas.progress import Progress
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Serving

RETIRE_ALLOWANCE = 60.0  # seconds on top of the longest drain delay for the retirers to remove the old services


def drain(host: Host, name: str, progress: Progress) -> None:
    s = host.settings
    node = membership.find_node(s, name)
    if node.availability == "drain":
        progress(f"=====> {node.hostname} is drained already")
        return
    started = time.monotonic()
    progress(f"-----> Pausing {node.hostname}: no new task goes there")
    membership.set_availability(node, "pause")
    try:
        moved = _move_apps(host, node.id, progress)
        longest = max((int(apps.get_setting(host, app, "drain-seconds")) for app in moved), default=0)
        deadline = time.monotonic() + longest + RETIRE_ALLOWANCE
        while left := releases.tasks_on_node(s, node.id):
            if time.monotonic() > deadline:
                raise DeployFailed(f"tasks still run on {node.hostname} after the drain delay: "
                                   + ", ".join(f"{n} ({c})" for n, c in sorted(left.items())))
            time.sleep(0.25)
    except BaseException:
        progress(f"!     {node.hostname} back to {node.availability}")
        membership.set_availability(node, node.availability)
        raise
    membership.set_availability(node, "drain")
    progress(f"=====> {node.hostname} drained in {time.monotonic() - started:.1f}s "
             f"({len(moved)} app{'s' if len(moved) != 1 else ''} moved first: {', '.join(moved) or 'none'})")


def _move_apps(host: Host, node_id: str, progress: Progress) -> list[str]:
    """Roll out again every app whose live release has a task on the node; returns those apps."""
    moved = []
    for app in sorted({release.app for release in releaselog.lives(host)}):
        with app_lock(host.settings, app, progress):
            current = releaselog.live(host, app)
            if current is None or current.serving != Serving.CONTAINER:
                continue
            here = set(releases.tasks_on_node(host.settings, node_id)) & set(releases.app_services(host.settings, app))
            if not any(releases.release_of(name) == current.number for name in here):
                continue
            progress(f"-----> Moving {app} off the node: release {current.number} rolled out again")
            rollout.roll_out(host, app, kind=Kind.DRAIN, sha=current.sha, image=current.image,
                             buildpack=current.buildpack, progress=progress, env=current.config)
            moved.append(app)
    return moved


def activate(host: Host, name: str, progress: Progress) -> None:
    """The node takes new tasks again (the Swarm does not move running ones back by itself)."""
    node = membership.find_node(host.settings, name)
    if node.availability == "active":
        progress(f"=====> {node.hostname} is active already")
        return
    membership.set_availability(node, "active")
    progress(f"=====> {node.hostname} is active: new tasks may run there")
