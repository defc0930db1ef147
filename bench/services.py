#!/usr/bin/env python3
"""Services: the time from `postgres:link` / `redis:link` to the app live with the URL, and the memory of an
idle Postgres and Redis.

On one app of tests/apps/services-app whose master is live, each run:
  postgres:link      `postgres:link db APP` until GET /env of the app says it has DATABASE_URL (the command
                     rolls out a config release: a new container, its health check, the switch);
  postgres:unlink    `postgres:unlink db APP` until /env says it no longer has it;
  redis:link, redis:unlink  the same with REDIS_URL.
Then `docker stats` of each service's container (the services have run since the start, idle but for the
app's connection). The service images are built first if the host lacks them (not timed).

    /opt/minipaas/venv/bin/python bench/services.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from harness import bench_host, commit, docker, log, machine, median_min_max, table_row

APP = Path(__file__).resolve().parent.parent / "tests" / "apps" / "services-app"
KINDS = ("postgres:link", "postgres:unlink", "redis:link", "redis:unlink")
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def mebibytes(usage: str) -> float:
    """`12.5MiB / 256MiB` (docker stats' MemUsage) as MiB used."""
    match = re.match(r"([0-9.]+)([KMG]?i?B)", usage.strip())
    if not match:
        raise ValueError(f"cannot read docker stats' {usage!r}")
    return float(match.group(1)) * UNITS[match.group(2)] / 1024**2


def measure(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    seconds: dict[str, list[float]] = {k: [] for k in KINDS}
    memory: dict[str, list[float]] = {"postgres": [], "redis": []}
    with bench_host() as host:
        app = host.create_app("svc")
        checkout = host.checkout(app, APP)
        commit(checkout, "first")
        host.push(checkout)
        host.cli("postgres:create", "db")
        host.cli("redis:create", "cache")
        try:
            def timed(command: str, name: str, key: str, want: bool) -> float:
                start = time.monotonic()
                host.cli(command, name, app)
                while time.monotonic() - start < 120:
                    status, body = host.get(app, "/env")
                    if status == 200 and json.loads(body)[key] is want:
                        return time.monotonic() - start
                    time.sleep(0.05)
                raise RuntimeError(f"{command} never showed on {app}")

            for run in range(runs):
                seconds["postgres:link"].append(timed("postgres:link", "db", "database", True))
                seconds["redis:link"].append(timed("redis:link", "cache", "redis", True))
                status, body = host.get(app, "/count")
                if status != 200:
                    raise RuntimeError(f"the linked app fails: {body}")
                host.wait_retired(app)
                for kind, service in (("postgres", "db"), ("redis", "cache")):
                    ref = json.loads(host.cli(f"{kind}:info", service, "--json").stdout)["container"]
                    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", ref).strip()
                    memory[kind].append(mebibytes(usage))
                seconds["postgres:unlink"].append(timed("postgres:unlink", "db", "database", False))
                seconds["redis:unlink"].append(timed("redis:unlink", "cache", "redis", False))
                log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in seconds.items())
                    + ", " + ", ".join(f"{k} {v[-1]:.1f} MiB" for k, v in memory.items()))
        finally:
            host.cli("postgres:destroy", "db", "--force", check=False)
            host.cli("redis:destroy", "cache", "--force", check=False)
    return seconds, memory


def report(seconds: dict[str, Sequence[float]], memory: dict[str, Sequence[float]], runs: int) -> str:
    lines = [f"Machine: {machine()}; {runs} runs, medians.", "",
             "| command, until the app is live with(out) the URL | median s | min s | max s | runs | |",
             "|---|---|---|---|---|---|"]
    lines += [table_row(kind, seconds[kind]) for kind in KINDS]
    lines += ["", "| idle service container (docker stats) | median MiB | min MiB | max MiB | samples |",
              "|---|---|---|---|---|"]
    for kind, values in memory.items():
        med, low, high = median_min_max(values)
        lines.append(f"| {kind} | {med:.1f} | {low:.1f} | {high:.1f} | {len(values)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds, memory = measure(args.runs)
    print(report(seconds, memory, args.runs))


if __name__ == "__main__":
    main()
