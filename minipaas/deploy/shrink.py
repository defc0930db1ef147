"""A canary's Swarm services scaled down in place (`ps:scale` beside a canary: docs/cluster-design.md).

A Swarm picks the tasks a scale-down stops itself, and no call of its API names them beforehand; but it marks them
(desired state `shutdown`) within a few hundredths of a second of the update, and their node's agent sends the stop
signal about 3 s later (moby's 2 s gossip-convergence delay, there so that load balancers drop a task first). So
the count is lowered, the tasks read at once until the marked ones are known, and those leave the release's version
of the route right away, well before their stop; the release keeps its weight. Then the wait until they are gone.

Only beside a canary: a release alone scales down by a rollout at the new count (placement.py), which drains its
old tasks for the app's full `drain-seconds`; a rollout would replace the canary.
"""

from __future__ import annotations

import time

from minipaas.cluster import releases
from minipaas.deploy import bringup, formation
from minipaas.progress import Progress
from minipaas.state import apps
from minipaas.state.host import Host

STOP_ALLOWANCE = 30.0  # seconds, on top of the ~3 s before the stop signal and the task's stop grace period


def beside_canary(host: Host, app: str, number: int, services: dict[str, tuple[str, int]],
                  progress: Progress) -> dict[str, frozenset[str]]:
    """Lower each service of release `number` (name → (process, new count)); the web tasks the Swarm stops leave
    the release's own version of the route as soon as they are known. Returns them by service, for `wait_gone`
    (once both releases are scaled: their stops overlap)."""
    stopping: dict[str, frozenset[str]] = {}
    for name, (process, count) in services.items():
        started = time.monotonic()
        shrunk = releases.scale_down(name, count)
        stopping[name] = shrunk.stopping
        said = f"-----> Scaled {name} to {count} task{'s' if count != 1 else ''}: the Swarm stops " \
               f"{len(shrunk.stopping)} (marked after {shrunk.marked_after:.2f}s)"
        if process == formation.WEB:
            routed = bringup.stable_targets(host, app, number)
            bringup.route(host, app, number, {a: t for a, t in routed.items() if t not in shrunk.stopping},
                          alongside=True)
            said += f", out of the route after {time.monotonic() - started:.2f}s"
        progress(said)
    return stopping


def wait_gone(host: Host, app: str, stopping: dict[str, frozenset[str]], progress: Progress) -> None:
    """Wait until the tasks `beside_canary` saw stopping are gone: their stop signal comes ~3 s after the scale,
    then the app has its stop grace period (`drain-seconds`)."""
    if not stopping:
        return
    grace = releases.stop_grace(int(apps.get_setting(host, app, "drain-seconds")))
    waited = time.monotonic()
    deadline = waited + 3.0 + grace + STOP_ALLOWANCE
    for name, tasks in stopping.items():
        releases.wait_gone(name, tasks, deadline=deadline)
    progress(f"       the stopped tasks gone {time.monotonic() - waited:.1f}s later")
