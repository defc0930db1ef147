#!/usr/bin/env python3
"""Review apps: a new branch live at its own URL, against a warm push of the app itself.

Each run, on one app of examples/hello whose master is live:
  app warm push      a source change pushed to master, until GET / of the app serves it (the baseline);
  new review app     a new branch with a source change pushed, until GET / at <slug>.<app>.<domain> serves
                     it (the review app's row, vhost and network are made, then the same build and switch:
                     the dependency layers are the app's, cached);
  review warm push   another change to that branch, until its URL serves it;
  branch deletion    `git push paas :branch`, until the push returns (containers, images, vhost gone).
Kinds alternate within each run; the ratio column is the median against the app's warm push, measured
in the same run.

    /opt/minipaas/venv/bin/python bench/review_apps.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

from harness import bench_host, commit, git, log, machine, new_marker, set_marker, table_row, timed_push

KINDS = ("app warm push", "new review app", "review warm push", "branch deletion")


def measure(runs: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {k: [] for k in KINDS}
    with bench_host() as host:
        app = host.create_app("rv")
        checkout = host.checkout(app)
        commit(checkout, "first")
        if timed_push(checkout, "master", env=host.env).returncode != 0:
            raise SystemExit("the first push failed")

        def change(ref: str, served_as: str) -> float:
            marker = new_marker()
            set_marker(checkout, marker)
            commit(checkout, f"change {marker}")
            push = timed_push(checkout, f"HEAD:{ref}", env=host.env, port=host.port, app=served_as, marker=marker)
            if push.returncode != 0 or push.served is None:
                raise RuntimeError(f"push of {ref} failed or never served:\n{push.text}")
            return push.served

        for run in range(runs):
            branch = f"bench-{run}-{new_marker()[:6]}"
            seconds["app warm push"].append(change("master", app))
            git(checkout, "checkout", "-q", "-b", branch)
            seconds["new review app"].append(change(branch, f"{branch}.{app}"))
            seconds["review warm push"].append(change(branch, f"{branch}.{app}"))
            deleted = timed_push(checkout, f":{branch}", env=host.env)
            if deleted.returncode != 0 or "removed" not in deleted.text:
                raise RuntimeError(f"deleting {branch} failed:\n{deleted.text}")
            seconds["branch deletion"].append(deleted.seconds)
            git(checkout, "checkout", "-q", "master")
            git(checkout, "branch", "-q", "-D", branch)
            log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in seconds.items()))
    return seconds


def report(seconds: dict[str, Sequence[float]], runs: int) -> str:
    base = statistics.median(seconds["app warm push"])
    lines = [f"Machine: {machine()}; {runs} runs of each, medians in seconds.", "",
             "| push, until served | median | min | max | runs | ratio |", "|---|---|---|---|---|---|"]
    for kind in KINDS:
        ratio = "" if kind == "app warm push" else f"{statistics.median(seconds[kind]) / base:.2f}x app warm push"
        lines.append(table_row(kind, seconds[kind], ratio))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(report(measure(args.runs), args.runs))


if __name__ == "__main__":
    main()
