#!/usr/bin/env python3
"""Concurrency at scale: pushes to many apps at once and to one app at once, with `gc` and `ps:restore` beside
them, then a count of what is left over (the 20-app version of tests/engine/test_concurrency.py).

On one throwaway host (tests/helpers/host.py's `paas_host`), with tests/apps/env-echo (a Dockerfile app):
  first pushes     one push to each of N new apps, all at once (cold: every app's first build);
  second pushes    one more push to each app, all at once (each retires the app's first container);
  one app          M pushes to the first app at once, each from its own clone of the same commit: one deploys,
                   the others wait for it and are refused in one line (their branch moved);
and a `gc` and a `ps:restore` started with each round. Every push must deploy, or say it waits and then deploy
or be refused in one line; the final state must be the last push that deployed. Then, once the retirements are
done and a gc ran, what this home holds on the engine, on disk, in nginx's routing and in the database that no
live release accounts for (`leftovers`: containers, images, networks, rows, files, routes), expected 0 each.

    /opt/minipaas/venv/bin/python bench/concurrent_pushes.py [--apps 20] [--same 5]

It prints two Markdown tables (rounds; leftovers) and exits 1 if a push did neither, or anything is left over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import log, machine

# The tests' helpers (tests/helpers) by their package name, from the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.concurrency import (
    MOVED,
    Running,
    leftovers,
    minipaas_errors,
    settled,
    start_cli,
    start_push,
    write_server,
)
from tests.helpers.host import APPS, Paas, paas_host

KINDS = {"container": "containers", "image": "images", "network": "networks", "release": "rows",
         "retirement": "rows", "route": "routes", "nginx": "routes"}


def _kind(line: str) -> str:
    """Which column a line of `leftovers` counts in."""
    if "runs no web container" in line:
        return "containers"
    if "has no live release" in line:
        return "rows"
    if " is routed to " in line:
        return "routes"
    return KINDS.get(line.split()[0], "files")


def round_of(paas: Paas, name: str, checkouts: list[Path]) -> dict[str, object]:
    """Push every checkout at once, with a gc and a ps:restore; what each push did, and when each ended."""
    started = time.monotonic()
    runs: list[Running] = [start_push(paas, c) for c in checkouts]
    runs += [start_cli(paas, "gc"), start_cli(paas, "ps:restore")]
    ended: dict[str, tuple[int, str, float]] = {}

    def wait(run: Running) -> None:
        code, out = run.finish()
        ended[run.name] = (code, out, time.monotonic() - started)

    threads = [threading.Thread(target=wait, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = {"deployed": 0, "waited": 0, "refused": 0, "neither": 0, "build turn": 0}
    for run in runs[:-2]:
        code, out, _ = ended[run.name]
        waited = "Waiting for another push to" in out
        outcomes["waited"] += waited
        outcomes["build turn"] += "Waiting for another app's build" in out
        errors = minipaas_errors(out)
        if code == 0 and "is live at" in out and not errors:
            outcomes["deployed"] += 1
        elif code != 0 and waited and len(errors) == 1 and MOVED.fullmatch(errors[0]):
            outcomes["refused"] += 1
        else:
            outcomes["neither"] += 1
            log(f"{name}: {run.name} neither deployed nor was refused in one line:\n{out}")
    for what in ("gc", "ps:restore"):
        if ended[what][0] != 0:
            outcomes["neither"] += 1
            log(f"{name}: {what} failed:\n{ended[what][1]}")
    seconds = [ended[run.name][2] for run in runs[:-2]]
    return {"round": name, "pushes": len(checkouts), **outcomes, "wall": max(seconds),
            "p50": statistics.median(seconds), "gc": ended["gc"][2], "restore": ended["ps:restore"][2]}


def measure(apps_count: int, same: int) -> tuple[list[dict[str, object]], dict[str, int], list[str]]:
    top = Path(tempfile.mkdtemp(prefix="minipaas-bench-"))
    try:
        with paas_host(top / "work") as paas:
            return _measure(paas, apps_count, same)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _measure(paas: Paas, apps_count: int, same: int) -> tuple[list[dict[str, object]], dict[str, int], list[str]]:
    apps = []
    for _ in range(apps_count):
        app = paas.new_app("cb")
        paas.run("settings:set", app, "drain-seconds", "2")
        apps.append(app)
    checkouts = [paas.checkout(app, APPS / "env-echo") for app in apps]
    for app, checkout in zip(apps, checkouts, strict=True):
        write_server(checkout, f"{app}-1")
    rounds = [round_of(paas, "first pushes", checkouts)]
    for app, checkout in zip(apps, checkouts, strict=True):
        write_server(checkout, f"{app}-2")
    rounds.append(round_of(paas, "second pushes", checkouts))
    clones = []
    for n in range(same):
        clone = paas.work / f"{apps[0]}-clone{n}"
        shutil.copytree(checkouts[0], clone)
        write_server(clone, f"take-{n}")
        clones.append(clone)
    rounds.append(round_of(paas, f"{same} pushes to one app", clones))

    problems = []
    for app in apps:  # the final state is the last push that deployed
        release = next(r for r in json.loads(paas.run("releases", app, "--json").stdout) if r["status"] == "live")
        body = paas.get(app).body
        if paas.repo_ref(app) != release["sha"] or not body.startswith((f"{app}-2 ", "take-")):
            problems.append(f"{app}: branch {paas.repo_ref(app)[:7]}, live {release['sha'][:7]}, answers {body!r}")
    started = time.monotonic()
    settled(paas)
    log(f"retirements and gcs settled in {time.monotonic() - started:.1f}s")
    left = leftovers(paas)
    counts = dict.fromkeys(("containers", "images", "networks", "rows", "files", "routes"), 0)
    for line in left:
        counts[_kind(line)] += 1
    return rounds, counts, problems + left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--same", type=int, default=5, help="pushes to one app at once")
    args = parser.parse_args()
    log(f"{args.apps} apps, {args.same} pushes to one app, on {machine()}")
    rounds, counts, problems = measure(args.apps, args.same)
    print(f"\n{args.apps} apps at once, {args.same} pushes to one app at once, a gc and a ps:restore beside each "
          f"round ({machine()}):\n")
    print("| round | pushes | deployed | told to wait (push) | refused in one line | neither | waited for a build "
          "turn | last push done (s) | push done, p50 (s) | gc done (s) | ps:restore done (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rounds:
        print(f"| {r['round']} | {r['pushes']} | {r['deployed']} | {r['waited']} | {r['refused']} | {r['neither']} "
              f"| {r['build turn']} | {r['wall']:.1f} | {r['p50']:.1f} | {r['gc']:.1f} | {r['restore']:.1f} |")
    print("\nLeft over once the retirements were done and a gc ran:\n")
    print("| " + " | ".join(counts) + " |")
    print("|" + "---|" * len(counts))
    print("| " + " | ".join(str(v) for v in counts.values()) + " |")
    for line in problems:
        print(f"- {line}")
    return 1 if problems or any(r["neither"] for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
