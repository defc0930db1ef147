#!/usr/bin/env python3
"""minipaas at size on one host: 100 container apps and 500 static or Markdown sites at once, 200 of them
review apps, then what a deploy, the hot path, the commands, memory, disk and ps:restore cost at that size.

On an isolated minipaas host (bench/harness.py: temp MINIPAAS_HOME, private nginx on a free loopback port,
real `git push`es through the real hook):

  setup      --apps container apps (a tiny Node app made here, no dependency, one checkout pushed to every
             app: its layers are built once), --sites sites (tests/apps/static-site, and --markdown of them
             tests/apps/markdown-docs), --reviews of them review apps (a branch pushed to a parent; of them
             --container-reviews of container apps), created and pushed --jobs at a time; each step timed,
             the first and the last tenth compared (what grows with the number of apps);
  commands   `apps:list`, `ps APP`, `report` (and their --json), each --runs times, a new interpreter each
             time as a user runs them (target: under 200 ms);
  footprint  the memory of nginx (masters and workers), of the watcher and of each idle app container, the
             disk of each site and repository, the home's networks, the engine's iptables rules and the host's
             neighbour table (what runs out first: docs/benchmarks.md);
  hot path   wrk -t1 across every container app (the Host header changes at each request) through minipaas
             and through a plain nginx routing the same apps (one server and keep-alive upstream per app),
             --rounds interleaved rounds of --seconds (target: >= 0.9x the plain nginx's requests/s);
  deploys    --deploys pushes to container apps one after the other while wrk and a poller go through every
             other app: each switch (from the push's "healthy" line until nginx served the new text; target
             under 1 s) and the requests that failed in the other apps (target: 0);
  builds     wrk across the other container apps, without a build, then during a build that keeps 2 CPUs busy
             for --burn seconds, once per --build-cpus value: the other apps' p99 against the build's limit;
  restore    every app container stopped with `docker stop` (the Docker engine itself is restarted only with
             --restart-engine), then `ps:restore`, until it exits and until every app answers 200 again.
Nothing is made until the 1-minute load average has stayed under --quiet for a minute (at most --quiet-wait
minutes, then it stops); each measurement waits for that again (at most 30 minutes, then it measures anyway)
and says the load it ran at. The commands run as an installed minipaas runs them: with their bytecode cached.
Everything is removed at the end (apps:destroy --force of every app, --jobs at a time; then the harness'
cleanup), also on errors and Ctrl-C.

    /opt/minipaas/venv/bin/python bench/scale.py                    # the full size (about an hour)
    /opt/minipaas/venv/bin/python bench/scale.py --apps 5 --sites 20 --reviews 5 --quiet 0   # a try
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

from harness import bench_host, log, machine, new_marker
from scale_phases import (
    BuildRun,
    Command,
    Footprint,
    HotPath,
    Restore,
    UnderLoad,
    builds,
    commands,
    footprint,
    hot_path,
    restore,
    under_load,
)
from scale_report import report
from scale_setup import Fleet, background_done, build, check_all, destroy, plan
from scale_tools import wait_quiet


@dataclass
class Results:
    about: str
    command: str
    started: str
    fleet: Fleet | None = None
    wrong_after_setup: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    footprint: Footprint | None = None
    hot: list[HotPath] = field(default_factory=list)
    under_load: UnderLoad | None = None
    builds: list[BuildRun] = field(default_factory=list)
    restore: Restore | None = None
    wrong_after_restore: list[str] = field(default_factory=list)
    destroy_seconds: float | None = None
    loads: dict[str, str] = field(default_factory=dict)


def _sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the cleanup of bench_host and the plain nginx


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=100, help="container apps, review apps included (100)")
    parser.add_argument("--sites", type=int, default=500, help="static and Markdown sites, review apps included (500)")
    parser.add_argument("--reviews", type=int, default=200, help="how many of all those are review apps (200)")
    parser.add_argument("--container-reviews", type=int, default=None,
                        help="how many of the review apps are container apps (default: a quarter of --reviews)")
    parser.add_argument("--markdown", type=float, default=0.2, help="the share of Markdown sites (0.2)")
    parser.add_argument("--jobs", type=int, default=2, help="apps created, pushed and destroyed at once (2)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (7)")
    parser.add_argument("--rounds", type=int, default=3, help="hot path rounds (3)")
    parser.add_argument("--seconds", type=int, default=6, help="seconds of each hot path wrk run (6)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--deploys", type=int, default=5, help="deploys under load (5)")
    parser.add_argument("--build-cpus", default="2,1,0.5", help="build-cpus values to build with (2,1,0.5)")
    parser.add_argument("--burn", type=int, default=12, help="seconds the build keeps 2 CPUs busy (12)")
    parser.add_argument("--quiet", type=float, default=1.5,
                        help="wait for a 1-minute load average under this before each measurement (1.5; 0: don't)")
    parser.add_argument("--quiet-wait", type=int, default=60,
                        help="minutes to wait for that before the setup; then it stops, having made nothing (60)")
    parser.add_argument("--setup-quiet", type=float, default=None,
                        help="the load average to wait for before the setup instead (0: start at once; the setup's "
                             "timings are then slower, each measurement still waits for --quiet)")
    parser.add_argument("--restart-engine", action="store_true",
                        help="restart the Docker engine (service docker restart) before ps:restore, instead of "
                             "stopping the apps' containers: not on a machine others use")
    parser.add_argument("--skip", default="", help="phases to leave out, comma-separated "
                        "(commands,footprint,hot,deploys,builds,restore)")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write every measurement there")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) for inspection")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if not (1 <= args.apps <= 1000 and 0 <= args.sites <= 2000 and 0 <= args.reviews < args.apps + args.sites):
        parser.error("--apps 1..1000, --sites 0..2000, --reviews fewer than the apps and sites together")
    if args.deploys >= args.apps:
        parser.error("--deploys must be fewer than --apps")
    if args.container_reviews is None:
        args.container_reviews = args.reviews // 4
    return args


def main() -> int:
    args = options()
    skip = set(filter(None, args.skip.split(",")))
    signal.signal(signal.SIGTERM, _sigterm)
    results = Results(about=machine(), command=" ".join(["python", "bench/scale.py", *sys.argv[1:]]),
                      started=time.strftime("%Y-%m-%d %H:%M %Z"))
    marker = new_marker()
    # A noisy run measures nothing: nothing is made until the machine is quiet (or --quiet 0 says not to wait).
    setup_quiet = args.quiet if args.setup_quiet is None else args.setup_quiet
    results.loads["before the setup"] = wait_quiet(setup_quiet, give_up=args.quiet_wait * 60)
    if results.loads["before the setup"].endswith("(not quiet)"):
        raise SystemExit(f"the 1-minute load average stayed at or above {setup_quiet} for {args.quiet_wait} minutes; "
                         "nothing was made (--quiet 0 runs anyway)")
    try:
        _measure(args, skip, results, marker)
    finally:  # what was measured is printed also when a later phase fails (and its error after it)
        results.loads["end"] = wait_quiet(0)
        print(report(results, args))
        if args.json:
            json.dump(asdict(results), args.json, indent=1, default=str)
    return 0


def _measure(args: argparse.Namespace, skip: set[str], results: Results, marker: str) -> None:
    with bench_host(keep=args.keep) as host:
        # The commands as an installed minipaas runs them: with their bytecode cached (pip compiles it at install).
        host.env.pop("PYTHONDONTWRITEBYTECODE", None)
        wanted = plan(args.apps, args.sites, args.reviews, args.container_reviews, args.markdown)
        log(f"making {len(wanted)} apps, {args.jobs} at a time")
        fleet = results.fleet = build(host, wanted, jobs=args.jobs, marker=marker)
        background_done(host.home)
        results.wrong_after_setup = check_all(host.port, fleet.apps, marker)
        log(f"{len(fleet.apps)} apps made in {fleet.setup_seconds:.0f} s; "
            f"{len(results.wrong_after_setup)} do not answer as they should")
        try:
            if "commands" not in skip:
                results.loads["commands"] = wait_quiet(args.quiet)
                results.commands = commands(host, fleet, args.runs)
            if "footprint" not in skip:
                results.footprint = footprint(host, fleet)
            if "hot" not in skip:
                results.loads["hot path"] = wait_quiet(args.quiet)
                results.hot = hot_path(host, fleet, rounds=args.rounds, seconds=args.seconds,
                                       connections=args.connections)
            if "deploys" not in skip:
                results.loads["deploys under load"] = wait_quiet(args.quiet)
                results.under_load = under_load(host, fleet, deploys=args.deploys, connections=args.connections)
                background_done(host.home)
            if "builds" not in skip:
                results.loads["builds"] = wait_quiet(args.quiet)
                results.builds = builds(host, fleet, cpus=args.build_cpus.split(","), burn_seconds=args.burn,
                                        connections=args.connections, threads=2)
                background_done(host.home)
            if "restore" not in skip:
                results.loads["restore"] = wait_quiet(args.quiet)
                results.restore = restore(host, fleet, restart_engine=args.restart_engine)
                results.wrong_after_restore = check_all(host.port, fleet.apps)
        finally:
            log(f"destroying {len(fleet.apps)} apps, {args.jobs} at a time")
            results.destroy_seconds = destroy(host, fleet, args.jobs)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
