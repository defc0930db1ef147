#!/usr/bin/env python3
"""How long a sleeping app takes to answer its first request, against a cold `docker run` of the same image.

On an isolated minipaas host (bench/harness.py): tests/apps/express-procfile (Express, its web process only) pushed
once and set to `idle 1s`. Then, `--wakes` times, interleaved:

  wake       wait until the app sleeps (its route `sleep`, no container left), then GET / through nginx: the
             seconds until its 200 (the request is held while minipaas starts the release's image with its
             config, health-checks it and routes it);
  cold run   `docker run -d` of the same image with the same command, published on a loopback port, then GET /
             until it answers 200: the seconds from the `docker run` to that answer (the container is removed
             after each).

Prints a Markdown table (median, min, max, n) and the ratio of the medians. Everything is removed at the end.

    /opt/minipaas/venv/bin/python bench/wake.py [--wakes 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from pathlib import Path

from harness import ROOT, BenchHost, bench_host, commit, docker, free_port, log, machine, table_row

APP_SOURCE = ROOT / "tests" / "apps" / "express-procfile"


def _answers(port: int, host: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _asleep(paas: BenchHost, app: str) -> bool:
    routes = (paas.home / "nginx" / "routes").read_text()
    return f"{app} sleep" in routes.splitlines() and not docker(
        "ps", "-aq", "--filter", f"label=minipaas={paas.home}", "--filter", f"label=minipaas.app={app}").split()


def _wait(condition: object, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def one_wake(paas: BenchHost, app: str) -> float:
    _wait(lambda: _asleep(paas, app), f"{app} to sleep")
    started = time.monotonic()
    if not _answers(paas.port, f"{app}.paas.test"):
        raise SystemExit(f"{app} did not answer 200 at its wake")
    return time.monotonic() - started


def one_cold_run(image: str) -> float:
    port = free_port()
    started = time.monotonic()
    # The image's labels name the bench host's home and app: overridden, or the app's next sleep would take the
    # container for one of its own and remove it.
    container = docker("run", "-d", "--label", "minipaas=wake-bench", "--label", "minipaas.app=", "-e", "PORT=5000",
                       "-p", f"127.0.0.1:{port}:5000", image,
                       "/bin/sh", "-c", "exec node web.js").strip()
    try:
        deadline = started + 60
        while not _answers(port, "localhost"):
            if time.monotonic() > deadline:
                raise SystemExit("the cold container did not answer within 60 s")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        docker("rm", "-f", container, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with bench_host() as paas:
        app = paas.create_app("wake")
        checkout = paas.checkout(app, APP_SOURCE)
        commit(checkout, "express")
        paas.push(checkout)
        image = f"{json.loads(paas.cli('releases', app, '--json').stdout)[0]['image']}"
        log(f"{app} deployed ({image}); idle 1s")
        paas.cli("settings:set", app, "idle", "1s")
        wakes, colds = [], []
        for i in range(args.wakes):
            wakes.append(one_wake(paas, app))
            colds.append(one_cold_run(image))
            log(f"{i + 1}/{args.wakes}: wake {wakes[-1]:.2f}s, cold docker run {colds[-1]:.2f}s")
    ratio = statistics.median(wakes) / statistics.median(colds)
    print("| until the first 200 (s) | median | min | max | n | |")
    print("|---|---|---|---|---|---|")
    print(table_row("wake of a sleeping app (held request)", wakes, f"{ratio:.2f}x the cold run"))
    print(table_row("cold `docker run` of its image", colds))
    if args.json:
        args.json.write_text(json.dumps({"wakes": wakes, "cold_runs": colds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
