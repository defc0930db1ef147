"""A cluster release's tasks brought to serving (docs/cluster-design.md): waited for until they run, each web task
health-checked from the manager at its node's address and port, then the app's route switched to them. The deploy,
`ps:scale`, `ps:start` and `ps:restore` go through `route` (deploy/placement.py's `Services`), and so does a canary's
switch: its tasks take their share beside the stable release's (deploy/canary.py).

What is not the release's fault does not fail it: a task lost with its node on the way (the Swarm starts it
elsewhere: that one is waited for and checked), a node that could not pull the image while the registry restarted
(the Swarm tries again: cluster/releases.py's `Pulls`), tasks that had failed before a service was scaled back up
(`ignore`). A process that exits, a check that does not pass in time: the release fails, in the Swarm's or the
check's words.
"""

from __future__ import annotations

import itertools
import time

from minipaas.cluster import releases
from minipaas.deploy import bringup, containers, formation, health
from minipaas.errors import DeployFailed
from minipaas.progress import Progress
from minipaas.routing import proxy
from minipaas.source.commit import Commit
from minipaas.state import apps
from minipaas.state.host import Host

PULL_ALLOWANCE = 120.0  # seconds the nodes get to pull a new image, on top of the app's healthcheck-timeout


def route(host: Host, app: str, registry: str, *, number: int, commit: Commit, wanted: dict[str, tuple[str, int]],
          progress: Progress, known: frozenset[str] = frozenset(),
          ignore: dict[str, frozenset[str]] | None = None, split: bringup.Split | None = None,
          alongside: bool = False) -> None:
    """Wait until each service (name → (process, tasks)) runs its tasks, health-check the web tasks not in `known`
    (addresses already routed and healthy), then switch the app's route to all the web tasks (a canary's `split`,
    `alongside`: as bringup.route). `ignore`: per service, the tasks that had failed before. `commit`: the
    release's, as read once."""
    timeout = int(apps.get_setting(host, app, "healthcheck-timeout"))
    deadline = time.monotonic() + timeout + PULL_ALLOWANCE
    plan: health.Plan | None = None  # made at the first web task to check, as a container's
    # Routed tasks by id: the Swarm may no longer say their ports (the manager restarted), minipaas still knows them.
    owned = {task: address for task, address in proxy.routed_tasks(host.settings, app).items() if address in known}
    pulls = releases.Pulls(host.settings, registry, progress)
    targets: dict[str, str] = {}
    for name, (process, count) in wanted.items():
        started = time.monotonic()
        healthy: set[str] = set(known)
        for attempt in itertools.count():
            found = releases.wait_running(name, count, deadline=deadline, web=process == formation.WEB, known=owned,
                                          ignore=(ignore or {}).get(name, frozenset()), pulls=pulls)
            if attempt == 0:
                progress(f"       {count} task{'s' if count > 1 else ''} of {name} running after "
                         f"{time.monotonic() - started:.1f}s")
            fresh = {a: t for a, t in found.items() if a not in healthy}
            if fresh and plan is None:
                plan = containers.health_plan(host, app, commit)
            lost = _checked(name, fresh, plan, progress) if plan is not None else set()
            healthy |= set(fresh) - lost
            if not lost:
                break
        targets.update(found)
    bringup.route(host, app, number, targets, split=split, alongside=alongside)


def _checked(name: str, tasks: dict[str, str], plan: health.Plan, progress: Progress) -> set[str]:
    """Health-check each web task (address → task id) from here with the release's plan, at its node's address and
    port; returns the addresses whose task went away with its node meanwhile."""
    if not tasks:
        return set()
    deadline = time.monotonic() + plan.timeout
    lost: set[str] = set()

    def gone(address: str, task: str) -> str | None:
        why = releases.why_gone(name, task)
        if why == releases.NODE_LOST:
            lost.add(address)
        return why

    progress(f"-----> Checking each task {plan.goal(each=True)} (timeout {plan.timeout}s)")
    slowest = 0.0
    for address, task in tasks.items():
        try:
            target = health.Task(name, address, gone=lambda a=address, t=task: gone(a, t))
            slowest = max(slowest, health.run(plan, target, deadline=deadline, progress=progress))
        except DeployFailed:
            if address not in lost:
                raise
            progress(f"       {name} at {address}: {releases.NODE_LOST}; the Swarm starts that task elsewhere")
    healthy = len(tasks) - len(lost)
    if healthy:
        progress(f"       {healthy} task{'s' if healthy > 1 else ''} healthy (the slowest after {slowest:.1f}s)")
    return lost
