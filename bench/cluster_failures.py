#!/usr/bin/env python3
"""Failed requests and time to recover when a cluster loses a node: `cluster:drain`, Swarm's own drain, a node
killed (issue 15). Each run makes a fresh cluster of 3 node containers (tests/helpers/cluster_nodes.py: dockerd in
containers, `cluster:init`, `cluster:join-command`), pushes tests/apps/dockerfile at `ps:scale web=6` (2 s drain
delay), then, each under wrk load through minipaas' nginx (keep-alive GET/POST, tests/load/mixed.lua, 2 threads 16
connections; `Connection: close` GET, 1 thread 4 connections):

  minipaas drain   `cluster:drain node-2` (the node paused, the app rolled out again elsewhere, then drained);
                   recovered = the command returned;
  Swarm drain      `docker node update --availability drain node-3` straight to the Swarm (node-2 active again),
                   the watcher routing the replacements; recovered = 6 tasks running off node-3 and routed.
                   Also: how long before its replacements ran the Swarm stopped node-3's tasks;
  node killed      `docker kill` of node-2's container (node-3 active again); recovered = 6 tasks running
                   elsewhere and routed, by the watcher.

Then, before the kill, faults during a push (issue 20), each under the same load, each a new release of
tests/apps/dockerfile; settled = the app's only service is the live release's, its route exactly that service's
running tasks (as the nodes' engines list them), no release pending nor retirement left:

  registry down    the registry stopped before the push reaches it, started once the push waits for it;
  registry hung    the registry paused the moment the image is in it, restarted 2 s later (the nodes' pulls fail);
  manager restart  the manager's dockerd restarted (SIGTERM, then started again in place) once the push started
                   its service: the push is refused; settled = the watcher restored the old release;
  node lost        (after the kill above: node-1 and node-3 left) node-3 killed once a release whose tasks answer 503
                   for 5 s is being health-checked: the push waits for the Swarm's replacements on node-1.

Medians (and the spread) over the runs. Needs the Docker engine, `minipaas/node:26`, wrk, and the node image
tests/helpers/cluster_nodes.py makes (once, ~16 s). Everything made is removed, failure included.

    /opt/minipaas/venv/bin/python bench/cluster_failures.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from harness import log, machine

# The tests' helpers (tests/helpers) by their package name, from the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.cluster import commit_release, push_while, routed_addresses, running_tasks, service_names, settled
from tests.helpers.cluster_nodes import Cluster, docker, manager_host, wait_for
from tests.helpers.host import APPS, Paas, paas_host
from tests.helpers.load import LUA, start_wrk, stop_wrk

REPLICAS = 6
DEADLINE = 120.0
SECONDS = ("seconds", "push (s)", "settled after (s)")  # printed as times; the other columns are counts


def _live(cluster: Cluster) -> str:
    names = wait_for(lambda: (lambda found: found if len(found) == 1 else None)(service_names(cluster.nodes[0])),
                     "one live service", 60)
    assert isinstance(names, list)
    return str(names[0])


def _under_load(paas: Paas, app: str, action: Callable[[], None]) -> dict[str, float]:
    """`action` under both loads; its seconds and the failed requests (non-2xx/3xx plus socket errors)."""
    keepalive = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)  # the load runs before the action
        started = time.monotonic()
        action()
        seconds = time.monotonic() - started
        time.sleep(1)
    finally:
        ka, cl = stop_wrk(keepalive), stop_wrk(closing)
    return {"seconds": seconds, "requests": ka["requests"] + cl["requests"],
            "failed keep-alive": ka["non_2xx"] + ka["socket_errors"],
            "failed close": cl["non_2xx"] + cl["socket_errors"]}


def _recovered(paas: Paas, cluster: Cluster, app: str, service: str, gone: str) -> None:
    """6 tasks running off `gone` and the route exactly those."""
    def back() -> dict[str, str] | None:
        running = {a: n for a, n in running_tasks(cluster, service).items() if n != gone}
        return running if len(running) == REPLICAS and routed_addresses(paas, app) == sorted(running) else None

    wait_for(back, f"{REPLICAS} tasks off {gone}, routed", DEADLINE)


def _swarm_stop_lead(cluster: Cluster, service: str, node_hostname: str) -> float:
    """How long before the last replacement ran the Swarm stopped the last of the node's tasks (positive: stopped
    first), from the tasks' own timestamps."""
    manager = cluster.nodes[0]
    ids = manager.docker("service", "ps", "-q", service).split()
    tasks = json.loads(manager.docker("inspect", *ids))
    node_id = manager.docker("node", "inspect", "-f", "{{.ID}}", node_hostname).strip()

    def at(task: dict[str, object]) -> float:
        stamp = str((task.get("Status") or {}).get("Timestamp", ""))  # type: ignore[union-attr]
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()

    stopped = [at(t) for t in tasks if t["NodeID"] == node_id and t["DesiredState"] == "shutdown"]
    started = [at(t) for t in tasks if t["NodeID"] != node_id and t["DesiredState"] == "running"
               and (t.get("Status") or {}).get("State") == "running"]
    replacements = sorted(started)[-len(stopped):] if stopped else []
    return max(replacements) - max(stopped) if stopped and replacements else float("nan")


def _push_fault(paas: Paas, cluster: Cluster, app: str, faults: dict[str, Callable[[], object]], *,
                text: str, slow_start: float = 0.0, before: Callable[[], object] = lambda: None,
                replicas: int = REPLICAS) -> dict[str, float]:
    """A new release pushed with `faults` under load: the push's seconds and whether it went live, the seconds until
    the app settled (see the docstring), and the requests."""
    checkout = paas.checkout(app, APPS / "dockerfile")
    commit_release(checkout, text, slow_start=slow_start)
    outcome: dict[str, float] = {}

    def push() -> None:
        before()
        started = time.monotonic()
        code, output = push_while(paas, checkout, faults)
        outcome["push (s)"] = time.monotonic() - started
        outcome["went live"] = float(code == 0)
        if code:
            log("refused: " + " | ".join(line.split("remote:", 1)[1].strip() for line in output.splitlines()
                                         if line.startswith("remote: !")))
        wait_for(lambda: settled(paas, cluster, app, _live(cluster), replicas), "settled", DEADLINE, poll=0.5)

    found = _under_load(paas, app, push)
    found["settled after (s)"] = found.pop("seconds")
    return {**outcome, **found}


def _push_faults(paas: Paas, cluster: Cluster, app: str) -> dict[str, dict[str, float]]:
    manager = cluster.nodes[0]
    registry = ("-H", manager.engine)
    name = f"{paas.instance}.registry"
    found = {}
    log("registry down when the push reaches it")
    found["registry down"] = _push_fault(
        paas, cluster, app, {"pushing again once the registry answers": lambda: docker(*registry, "start", name)},
        text="registry down", before=lambda: docker(*registry, "stop", "-t", "1", name))

    def hang() -> None:
        docker(*registry, "pause", name)
        time.sleep(2)
        docker(*registry, "restart", "-t", "1", name)

    log("registry hung then restarted while the nodes pull")
    found["registry hung"] = _push_fault(paas, cluster, app, {"pushed in": hang}, text="registry hung")
    log("manager's engine restarted during a push")
    found["manager restart"] = _push_fault(paas, cluster, app, {"-----> Started the service": manager.restart_engine},
                                           text="manager restarted")
    return found


def _drain(paas: Paas) -> None:
    paas.run("cluster:drain", "node-2")


def one_run(work: Path) -> dict[str, dict[str, float]]:
    with paas_host(work) as paas, manager_host(paas) as cluster:
        manager = cluster.nodes[0]
        app = paas.new_app()
        paas.run("ps:scale", app, f"web={REPLICAS}")
        paas.run("settings:set", app, "drain-seconds", "2")
        paas.push(paas.checkout(app, APPS / "dockerfile"))
        _live(cluster)
        found: dict[str, dict[str, float]] = {}
        log("minipaas drain of node-2")
        found["minipaas drain"] = _under_load(paas, app, lambda: _drain(paas))
        paas.run("cluster:activate", "node-2")

        service = _live(cluster)
        log("Swarm's own drain of node-3")

        def swarm_drain() -> None:
            manager.docker("node", "update", "--availability", "drain", "node-3")
            _recovered(paas, cluster, app, service, "node-3")

        found["Swarm drain"] = _under_load(paas, app, swarm_drain)
        found["Swarm drain"]["stopped before the replacement ran (s)"] = _swarm_stop_lead(cluster, service, "node-3")
        manager.docker("node", "update", "--availability", "active", "node-3")
        found.update(_push_faults(paas, cluster, app))
        service = _live(cluster)

        log("node-2 killed")
        victim = cluster.nodes[1]

        def kill() -> None:
            docker("kill", victim.name)
            _recovered(paas, cluster, app, service, "node-2")

        found["node killed"] = _under_load(paas, app, kill)

        log("node-3 killed during a push's health checks")
        found["node lost (push)"] = _push_fault(paas, cluster, app, {"-----> Checking each task": lambda: docker(
            "kill", cluster.nodes[2].name)}, text="node lost", slow_start=5.0)
        return found


def _cells(runs: list[dict[str, dict[str, float]]], event: str, keys: tuple[str, ...]) -> str:
    """Per key: the median (and the spread) of seconds, or the median (and every run's value) of counts."""
    cells = []
    for key in keys:
        values = [run[event][key] for run in runs]
        cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})" if key in SECONDS
                     else f"{statistics.median(values):.0f} ({', '.join(f'{v:.0f}' for v in values)})")
    return " | ".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    where = machine()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-", dir="/var/tmp") as top:
        for index in range(args.runs):
            log(f"run {index + 1}/{args.runs}: a fresh cluster")
            runs.append(one_run(Path(top) / f"run{index}"))
            log(json.dumps(runs[-1]))
    print(f"{where}, {args.runs} runs, each on a fresh 3-node cluster, 6 web tasks\n")
    nodes = [event for event in runs[0] if "went live" not in runs[0][event]]
    pushes = [event for event in runs[0] if "went live" in runs[0][event]]
    print("| event | seconds to recover | requests | failed keep-alive | failed close |")
    print("|---|---|---|---|---|")
    for event in nodes:
        print(f"| {event} | {_cells(runs, event, ('seconds', 'requests', 'failed keep-alive', 'failed close'))} |")
    print("\n| fault during a push | went live | push (s) | settled after (s) | requests | failed keep-alive | "
          "failed close |")
    print("|---|---|---|---|---|---|---|")
    for event in pushes:
        live = sum(int(run[event]["went live"]) for run in runs)
        cells = _cells(runs, event, ("push (s)", "settled after (s)", "requests", "failed keep-alive", "failed close"))
        print(f"| {event} | {live} of {len(runs)} | {cells} |")
    leads = [run["Swarm drain"]["stopped before the replacement ran (s)"] for run in runs]
    print(f"\nSwarm's own drain stopped node-3's tasks {statistics.median(leads):.1f} s (median; "
          f"{', '.join(f'{v:.1f}' for v in leads)}) before their last replacement ran")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
