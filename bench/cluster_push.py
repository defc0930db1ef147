#!/usr/bin/env python3
"""Push to live of a 6-replica app: a cluster of 3 nodes against one host (issue 15).

The same app (tests/apps/dockerfile, `ps:scale web=6`, 2 s drain delay) on two minipaas hosts made in the same run:

  one host   plain containers on this machine's engine (the default);
  cluster    `cluster:init` on a node container (tests/helpers/cluster_nodes.py: dockerd in containers) with two workers
             joined by `cluster:join-command`; the build on the manager, the image pushed to the cluster's
             registry, one Swarm service of 6 tasks spread over the nodes, each task health-checked at node:port.

Per host: the first push (cluster: the base image's layers go to the registry and every node pulls them), then
`--pushes` source-only pushes (server.js answers a new marker). "live" is the time from `git push` to the first
GET / through minipaas' nginx that answers the new marker (harness.timed_push). Medians over the warm pushes of
all runs; the ratio is cluster / one host, measured in the same run. Each run makes both hosts afresh and removes
everything it made, failure included.

Not alike, and said in docs/benchmarks.md: the cluster's manager is a node container limited to 0.8 CPU (it
builds there), one host builds on the whole machine; the cluster's nodes share this machine's 2 cores.

    /opt/minipaas/venv/bin/python bench/cluster_push.py [--runs 2] [--pushes 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import log, machine, table_row, timed_push

# The tests' helpers (tests/helpers) by their package name, from the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.cluster_nodes import manager_host
from tests.helpers.host import APPS, Paas, commit, paas_host

REPLICAS = 6
SERVER = """const http = require("http");
http.createServer((req, res) => res.end("release {marker}\\n")).listen(process.env.PORT || 5000);
"""


@contextmanager
def _one_host(work: Path) -> Iterator[Paas]:
    with paas_host(work) as paas:
        yield paas


@contextmanager
def _cluster(work: Path) -> Iterator[Paas]:
    with paas_host(work) as paas, manager_host(paas):
        yield paas


def _pushes(paas: Paas, count: int) -> dict[str, list[float]]:
    """The first push and `count` source-only pushes: seconds to `git push` exit and to the marker served."""
    app = paas.new_app("b")
    paas.run("ps:scale", app, f"web={REPLICAS}")
    paas.run("settings:set", app, "drain-seconds", "2")
    checkout = paas.checkout(app, APPS / "dockerfile")
    found: dict[str, list[float]] = {"first push": [], "first live": [], "push": [], "live": []}
    for index in range(count + 1):
        marker = uuid.uuid4().hex[:12]
        (checkout / "server.js").write_text(SERVER.replace("{marker}", marker), encoding="utf-8")
        commit(checkout, f"marker {marker}")
        push = timed_push(checkout, "master", env=paas.env, port=paas.port, app=app, marker=marker,
                          serve_timeout=240)
        if push.returncode != 0 or push.served is None:
            raise SystemExit(f"push {index + 1} failed or was never served:\n{push.text[-3000:]}")
        first = index == 0
        found["first push" if first else "push"].append(push.seconds)
        found["first live" if first else "live"].append(push.served)
        log(f"  push {index + 1}: exited after {push.seconds:.2f}s, live after {push.served:.2f}s")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pushes", type=int, default=3, help="warm pushes per host and run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    where = machine()
    results: dict[str, dict[str, list[float]]] = {
        name: {"first push": [], "first live": [], "push": [], "live": []} for name in ("one host", "cluster")}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-push-", dir="/var/tmp") as top:
        for run in range(args.runs):
            for name, make in (("one host", _one_host), ("cluster", _cluster)):
                log(f"run {run + 1}/{args.runs}: {name}")
                with make(Path(top) / f"{name.replace(' ', '-')}-{run}") as paas:
                    for key, values in _pushes(paas, args.pushes).items():
                        results[name][key].extend(values)
    print(f"{where}; {args.runs} runs, each: one host, then a fresh 3-node cluster; "
          f"{args.pushes} warm pushes per host and run; 6 web processes\n")
    print("| what | median s | min | max | n | cluster / one host |")
    print("|---|---|---|---|---|---|")
    for key, label in (("first live", "first push, to live"), ("live", "source-only push, to live"),
                       ("push", "source-only push, `git push` exits")):
        base = statistics.median(results["one host"][key])
        for name in ("one host", "cluster"):
            values = results[name][key]
            ratio = "" if name == "one host" else f"{statistics.median(values) / base:.2f}x"
            print(table_row(f"{label}: {name}", values, ratio))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
