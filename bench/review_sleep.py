#!/usr/bin/env python3
"""50 review apps of which 45 sleep (issue 24): how many containers the host runs for them, and `apps:list`'s time.

One app (examples/hello) with `review-apps-idle` short (`--idle`, default 20 s) and no cap on running review apps;
`--apps` branches (default 50) pushed as review apps in one `git push`; then `--awake` of them (default 5) get a
request every second while the others are left alone, until the others all sleep (the watcher's idle thread). The
table: review apps, sleeping, awake, the host's web containers of review apps (docker ps), `apps:list`'s and
`ps`'s wall time (median of `--runs` calls, each a new process, as a user's), and one wake (the first request to a
sleeping review app until it answers 200).

    /opt/minipaas/venv/bin/python bench/review_sleep.py [--apps 50] [--awake 5] [--idle 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness import bench_host, commit, docker, log, machine, median_min_max, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--awake", type=int, default=5)
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with bench_host() as host:
        app = host.create_app("sl")
        for key, value in (("review-apps-limit", str(args.apps + 5)), ("review-apps-max", "0"),
                           ("review-apps-idle", f"{args.idle}s")):
            host.cli("settings:set", app, key, value)
        checkout = host.checkout(app)
        commit(checkout, "first")
        host.push(checkout)
        branches = [f"b{n:02d}" for n in range(args.apps)]
        started = time.monotonic()
        run(["git", "push", "-q", "paas", *(f"HEAD:refs/heads/{b}" for b in branches)], cwd=checkout, env=host.env,
            timeout=3600)
        log(f"{args.apps} review apps pushed in {time.monotonic() - started:.0f} s")
        names = {b: f"{b}.{app}" for b in branches}
        awake = branches[:args.awake]

        def rows() -> list[dict[str, object]]:
            listed = json.loads(host.cli("apps:list", "--json").stdout)
            return [r for r in listed if r.get("parent") == app]

        deadline = time.monotonic() + 10 * args.idle + 300
        while True:
            for branch in awake:  # the ones in use: a request a second
                status, _ = host.get(names[branch])
                if status != 200:
                    log(f"{names[branch]} answered {status}")
            listed = rows()
            sleeping = sum(1 for r in listed if r.get("sleeping"))
            if sleeping >= args.apps - args.awake or time.monotonic() > deadline:
                break
            time.sleep(1)
        def review_web() -> list[str]:
            return [c for c in docker("ps", "--filter", f"label=minipaas={host.home}", "--filter",
                                      "label=minipaas.process=web", "--format",
                                      '{{.Label "minipaas.app"}}').split() if c.startswith(f"{app}--")]

        # The route says `sleep` first; the containers go after a 1 s drain: wait for them (30 s at most).
        settle = time.monotonic() + 30
        while len(review_web()) > len(listed) - sleeping and time.monotonic() < settle:
            time.sleep(0.5)
        containers = review_web()
        timings = {}
        for command in (("apps:list",), ("ps", f"{app}--{awake[0]}")):
            seconds = []
            for _ in range(args.runs):
                begun = time.monotonic()
                host.cli(*command)
                seconds.append(time.monotonic() - begun)
            timings[" ".join(command[:1])] = median_min_max(seconds)
        sleeper = next(b for b in branches if b not in awake)
        begun = time.monotonic()
        status, _ = host.get(names[sleeper])
        wake = time.monotonic() - begun
    print(f"\nMachine: {machine()}; review-apps-idle {args.idle}s, {args.awake} review apps in use.\n")
    print("| review apps | sleeping | awake | their web containers | apps:list (s) | ps of one (s) | one wake (s) |")
    print("|---|---|---|---|---|---|---|")
    (lm, lmin, lmax), (pm, pmin, pmax) = timings["apps:list"], timings["ps"]
    print(f"| {len(listed)} | {sleeping} | {len(listed) - sleeping} | {len(containers)} | {lm:.3f} ({lmin:.3f}-"
          f"{lmax:.3f}) | {pm:.3f} ({pmin:.3f}-{pmax:.3f}) | {wake:.2f} (HTTP {status}) |")
    if sleeping < args.apps - args.awake:
        sys.exit(f"only {sleeping} slept within the deadline")


if __name__ == "__main__":
    main()
