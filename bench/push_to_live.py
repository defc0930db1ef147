#!/usr/bin/env python3
"""Push-to-live times of minipaas on this machine, against plain `docker build` + `docker run`.

Each run, on a fresh app (examples/hello) of an isolated minipaas host:
  cold       a first push whose dependency layer is not cached (package.json gets a unique
             description, so `COPY package.json package-lock.json` and `npm ci` after it rerun);
  warm       a push changing server.js only;
  no-op      `git push paas master:main`: the live commit to the other deploy branch (the hook
             finds it already live and does nothing);
  raw warm   the build context minipaas generates for a server.js change (same code path, captured
             in-process), built with plain `docker build` (the same legacy builder and cache), then
             `docker run -d` on the minipaas network and polled until it answers with the change;
  raw cold   the same with a dependency-busting package.json change.
Push-to-live is from `git push` starting until GET / through nginx answers 200 with the new text.

    /opt/minipaas/venv/bin/python bench/push_to_live.py [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from harness import (
    BenchHost,
    Poller,
    Push,
    bench_host,
    bust_dependencies,
    commit,
    docker,
    git,
    log,
    machine,
    new_marker,
    phase_durations,
    run,
    set_marker,
    step_cached,
    table_row,
    timed_push,
)

NPM_STEP = "RUN npm ci"
SOURCE_STEP = "COPY --chown=node:node src/"
WARM_TARGET = 3.0
RATIO_TARGET = 1.5

# Phases of a push, each between two events (None: the push start / the push exit); events are
# the first output line containing the text.
PHASES: list[tuple[str, str | None, str | None]] = [
    ("git transfer, hook start, lock, reconcile", None, "-----> Building "),
    ("build context (git archive, Dockerfile, tar)", "-----> Building ", "Step 1/"),
    ("docker build (all steps)", "Step 1/", "Successfully tagged"),
    ("container create + start", "-----> Starting ", "-----> Waiting for "),
    ("health check until first answer", "-----> Waiting for ", "healthy after"),
    ("router switch (nginx -t, reload) + records", "healthy after", "=====> "),
    ("hook exit, ref update, git exit", "=====> ", None),
]


@dataclass
class Raw:
    build: float  # `docker build` alone
    total: float  # build + `docker run -d` + first 200 with the change
    npm_cached: bool | None
    source_cached: bool | None


@dataclass
class Results:
    cold: list[Push] = field(default_factory=list)
    warm: list[Push] = field(default_factory=list)
    noop: list[Push] = field(default_factory=list)
    raw_warm: list[Raw] = field(default_factory=list)
    raw_cold: list[Raw] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the raw baseline ----------------------------------------------------------------------

class _Captured(Exception):
    """Raised in place of the Docker build, once minipaas has made its build context."""


def build_context(host: BenchHost, app: str, sha: str, release: int) -> bytes:
    """The exact tar context minipaas' builds.build sends to Docker for this commit (nothing is built)."""
    from unittest import mock

    from minipaas import builds
    from minipaas import settings as settings_mod

    captured: list[bytes] = []

    def capture(_settings: object, _app: str, context: IO[bytes], **_kwargs: object) -> None:
        captured.append(context.read())
        raise _Captured

    settings = settings_mod.load(host.env)
    with mock.patch.object(builds, "run_builder", capture), contextlib.suppress(_Captured):
        builds.build(settings, app, release, builds.inspect(settings, app, sha), lambda _line: None)
    if not captured:
        raise RuntimeError("minipaas built no context")
    return captured[0]


def raw_baseline(host: BenchHost, app: str, checkout: Path, *, cold: bool, n: int) -> Raw:
    """Plain docker build + docker run of minipaas' context for a new commit, until it serves the change."""
    marker = new_marker()
    set_marker(checkout, marker)
    if cold:
        bust_dependencies(checkout)
    sha = commit(checkout, f"raw baseline {n}")
    # Stored in the app's repo on a branch that does not deploy, then the checkout goes back.
    run(["git", "push", "-f", "paas", "HEAD:refs/heads/bench-raw"], cwd=checkout, env=host.env)
    git(checkout, "reset", "-q", "--hard", "HEAD~1")
    # minipaas' own tar, byte for byte, so that the builder's cache keys are the same; gzipped because
    # the docker CLI takes a stdin context starting with a PAX header (as this one does) for a
    # Dockerfile (it peeks at 512 bytes only); the daemon unpacks it.
    context = host.work / f"raw-context-{n}-{'cold' if cold else 'warm'}.tar.gz"
    context.write_bytes(gzip.compress(build_context(host, app, sha, 1000 + n), compresslevel=1))
    tag = f"mpbench-raw/{app}:{n}"
    network = host.settings_network
    build_env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder minipaas' API calls use
    container = ""
    try:
        started = time.monotonic()
        with context.open("rb") as stdin:
            build = subprocess.run(["docker", "build", "-t", tag, "-"], stdin=stdin, capture_output=True,
                                   env=build_env, timeout=900)
        built = time.monotonic() - started
        output = build.stdout.decode(errors="replace").splitlines()
        if build.returncode != 0:
            raise RuntimeError("raw docker build failed:\n" + "\n".join(output[-30:]) + build.stderr.decode())
        container = docker("run", "-d", "--network", network, "-e", "PORT=5000", tag).strip()
        ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                    container).strip()
        poller = Poller(5000, "raw", marker, started, address=ip)
        poller.start()
        poller.join(120)
        poller.stop.set()
        if poller.served is None:
            raise RuntimeError("raw container never served the change")
        return Raw(build=built, total=poller.served, npm_cached=step_cached(output, NPM_STEP),
                   source_cached=step_cached(output, SOURCE_STEP))
    finally:
        if container:
            docker("rm", "-f", container, check=False)
        docker("rmi", tag, check=False)


# -- one run -------------------------------------------------------------------------------

def pushed(host: BenchHost, checkout: Path, refspec: str, app: str, marker: str | None,
           serve_timeout: float = 60) -> Push:
    push = timed_push(checkout, refspec, env=host.env, port=host.port, app=app, marker=marker,
                      serve_timeout=serve_timeout)
    if push.returncode != 0:
        raise RuntimeError(f"git push {refspec} failed:\n{push.text}")
    if marker and push.served is None:
        raise RuntimeError(f"pushed, but nginx never served {marker}:\n{push.text}")
    return push


def one_run(host: BenchHost, n: int, results: Results, *, raw_cold: bool) -> None:
    app = host.create_app("bench")
    checkout = host.checkout(app)
    try:
        marker = new_marker()
        set_marker(checkout, marker)
        bust_dependencies(checkout)
        commit(checkout, "cold")
        cold = pushed(host, checkout, "master", app, marker, serve_timeout=900)
        if step_cached(cold.lines, NPM_STEP) is not False:
            results.notes.append(f"run {n}: the cold push found `npm ci` cached (not cold)")
        results.cold.append(cold)
        log(f"run {n}: cold push-to-live {cold.served:.2f}s (push {cold.seconds:.2f}s)")

        marker = new_marker()
        set_marker(checkout, marker)
        commit(checkout, "warm")
        warm = pushed(host, checkout, "master", app, marker)
        if step_cached(warm.lines, NPM_STEP) is not True or step_cached(warm.lines, SOURCE_STEP) is not False:
            results.notes.append(f"run {n}: the warm push did not reuse `npm ci` or did not rebuild the source")
        results.warm.append(warm)
        log(f"run {n}: warm push-to-live {warm.served:.2f}s (push {warm.seconds:.2f}s)")

        noop = pushed(host, checkout, "master:main", app, None)
        if "nothing to do" not in noop.text:
            results.notes.append(f"run {n}: the no-op push was not treated as one:\n{noop.text}")
        results.noop.append(noop)
        log(f"run {n}: no-op push {noop.seconds:.2f}s")

        if not host.wait_retired(app, timeout=60):  # the retirement after the drain delay: not during a baseline
            results.notes.append(f"run {n}: old containers still there 60 s after the warm push")
        raw = raw_baseline(host, app, checkout, cold=False, n=n)
        if raw.npm_cached is not True or raw.source_cached is not False:
            results.notes.append(f"run {n}: the raw warm build did not reuse `npm ci` or did not rebuild the source")
        results.raw_warm.append(raw)
        log(f"run {n}: raw warm {raw.total:.2f}s (docker build {raw.build:.2f}s)")
        if raw_cold:
            raw = raw_baseline(host, app, checkout, cold=True, n=n)
            if raw.npm_cached is not False:
                results.notes.append(f"run {n}: the raw cold build found `npm ci` cached")
            results.raw_cold.append(raw)
            log(f"run {n}: raw cold {raw.total:.2f}s (docker build {raw.build:.2f}s)")
    finally:
        host.destroy_app(app)


# -- report --------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(name: str, values: list[float], ratio: float | None = None, ratio_of: str = "") -> str:
    return table_row(name, values, f"{ratio:.2f}x {ratio_of}" if ratio is not None else "")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def phases(push: Push) -> list[float | None]:
    return phase_durations(push, PHASES)


def build_steps(push: Push) -> list[tuple[str, float]]:
    """(step, seconds) for each Docker build step: from its `Step k/n` line to the next one."""
    marks: list[tuple[float, str]] = []
    for at, line in push.lines:
        match = re.search(r"Step (\d+/\d+ : .*)", line)
        if match:
            text = match.group(1)
            marks.append((at, text if len(text) <= 60 else text[:57] + "..."))
        elif "Successfully built" in line:
            marks.append((at, ""))
    return [(text, marks[i + 1][0] - at) for i, (at, text) in enumerate(marks[:-1])]


def report(results: Results, runs: int, argv: list[str], about: str) -> str:
    served = {k: [p.served for p in getattr(results, k) if p.served is not None] for k in ("cold", "warm")}
    raw_warm = [r.total for r in results.raw_warm]
    raw_cold = [r.total for r in results.raw_cold]
    warm_ratio = (statistics.median(served["warm"]) / statistics.median(raw_warm)
                  if served["warm"] and raw_warm else None)
    cold_ratio = (statistics.median(served["cold"]) / statistics.median(raw_cold)
                  if served["cold"] and raw_cold else None)
    out = [
        f"push-to-live, {runs} runs, {time.strftime('%Y-%m-%d %H:%M %Z')}; {about}",
        f"command: {' '.join(argv)}",
        "",
        "| measurement (seconds) | median | min | max | runs | ratio of medians |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        _row("cold push-to-live (git push → new text served)", served["cold"], cold_ratio, "raw cold"),
        _row("cold: `git push` exits", [p.seconds for p in results.cold]),
        _row("warm push-to-live (server.js changed)", served["warm"], warm_ratio, "raw warm"),
        _row("warm: `git push` exits", [p.seconds for p in results.warm]),
        _row("no-op push (`master:main`, already live)", [p.seconds for p in results.noop]),
        _row("raw cold: docker build + run + first 200", raw_cold),
        _row("raw cold: docker build alone", [r.build for r in results.raw_cold]),
        _row("raw warm: docker build + run + first 200", raw_warm),
        _row("raw warm: docker build alone", [r.build for r in results.raw_warm]),
        "",
    ]
    if results.warm:
        per_run = [phases(p) for p in results.warm]
        out += ["Where a warm push's time goes (from the arrival times of its output lines; medians):", "",
                "| phase | median s | share of push |", "| --- | ---: | ---: |"]
        total = statistics.median(p.seconds for p in results.warm)
        for i, (name, _, _) in enumerate(PHASES):
            med = _median([v for r in per_run if (v := r[i]) is not None])
            out.append(f"| {name} | {_fmt(med)} | {'-' if med is None else f'{100 * med / total:.0f}%'} |")
        out.append(f"| `git push` total | {total:.2f} | 100% |")
        first_served = [p.served - p.seconds for p in results.warm if p.served is not None]
        out += ["", f"New text first served {statistics.median(first_served):+.2f}s (median) relative to "
                    "`git push` exiting.", ""]
        steps: dict[str, list[float]] = {}
        order: list[str] = []
        for push in results.warm:
            for text, seconds in build_steps(push):
                key = re.sub(r'minipaas\.release="\d+" minipaas\.sha="\w+"', "...", text)
                key = re.sub(r"^(\d+/\d+ : LABEL).*", r"\1 minipaas=... (release, sha)", key)
                if key not in steps:
                    order.append(key)
                steps.setdefault(key, []).append(seconds)
        out += ["Warm build, per Docker step (median s between step lines):", "",
                "| step | median s |", "| --- | ---: |"]
        out += [f"| `{key}` | {statistics.median(steps[key]):.3f} |" for key in order]
        out.append("")
    if served["warm"]:
        warm_median = statistics.median(served["warm"])
        ok_abs = warm_median <= WARM_TARGET
        ok_ratio = warm_ratio is not None and warm_ratio <= RATIO_TARGET
        out.append(f"target warm push-to-live ≤ {WARM_TARGET:.0f} s median: {warm_median:.2f} s "
                   f"{'MET' if ok_abs else 'MISSED'}")
        out.append(f"target warm ≤ {RATIO_TARGET}x raw warm baseline: "
                   f"{'-' if warm_ratio is None else f'{warm_ratio:.2f}x'} {'MET' if ok_ratio else 'MISSED'}")
    if results.notes:
        out += ["", "notes:"] + [f"- {note}" for note in results.notes]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default 5)")
    parser.add_argument("--no-raw-cold", action="store_true", help="skip the raw cold baseline")
    parser.add_argument("--json", type=Path, help="also write every measurement there")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) for inspection")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    results = Results()
    about = machine()
    with bench_host(keep=args.keep) as host:
        for n in range(1, args.runs + 1):
            one_run(host, n, results, raw_cold=not args.no_raw_cold)
    argv = ["python", "bench/push_to_live.py", *sys.argv[1:]]
    print(report(results, args.runs, argv, about))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
