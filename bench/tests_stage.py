#!/usr/bin/env python3
"""What a cached test stage costs a warm push: the same push with the app's tests on and with them off.

The app is tests/apps/tested (npm test: `node --test`, a devDependency). Each run makes an empty commit
(a new sha, the same files: nothing new to build) and times `git push` until it exits, the new release
live (its health check passed and its route switched):
  tests on    the build has the test stage; every layer of it is cached (`Tests (cached)`), so the
              difference against `tests off` is what the test and release stages cost when nothing ran;
  tests off   the same app with `settings:set APP tests off`: no test stage (the production install
              of the node buildpack without tests).
Both with the host's builder (BuildKit where its Docker has it) and with MINIPAAS_BUILDER=legacy, each
kind on its own app, warmed by two pushes first. The kinds run in turn (rotating order), so that a slow
moment of the machine spreads over all of them. The ratio and the difference are medians against
`tests off` with the same builder, measured in the same run; the target: at most +0.1 s.

    /opt/minipaas/venv/bin/python bench/tests_stage.py [--runs 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import BenchHost, bench_host, commit, log, machine, phase_durations, table_row, timed_push

APP = Path(__file__).resolve().parent.parent / "tests" / "apps" / "tested"
BUILDERS = ("buildkit", "legacy")
KINDS = tuple(f"tests {state} {builder}" for builder in BUILDERS for state in ("on", "off"))
TARGET = 0.1  # seconds a cached test stage may add


@dataclass
class Results:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    build: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})  # `Building` to `Built`
    notes: list[str] = field(default_factory=list)


def measure(runs: int) -> Results:
    results = Results()
    with bench_host() as host:
        checkouts = {kind: _warm(host, kind) for kind in KINDS}
        for run in range(runs):
            order = KINDS[run % len(KINDS):] + KINDS[:run % len(KINDS)]
            for kind in order:
                checkout, env = checkouts[kind]
                commit(checkout, f"run {run}: nothing new")
                push = timed_push(checkout, "master", env=env)
                if push.returncode != 0:
                    raise RuntimeError(f"{kind}: push failed:\n{push.text}")
                wanted = "Tests (cached)" if " on " in kind else "Tests skipped"
                if any(line.startswith("-----> npm ci") and not line.endswith("(cached)") for _, line in push.lines):
                    # The legacy builder's stage images are untagged: gc (after each deploy's drain delay) prunes
                    # them with the dangling images, and the next build starts without their cache.
                    results.notes.append(f"{kind}, run {run}: the layer cache was gone (gc); not counted")
                    log(results.notes[-1])
                    continue
                if wanted not in push.text or "Running tests" in push.text:
                    raise RuntimeError(f"{kind}: expected `{wanted}` and no test run:\n{push.text}")
                results.seconds[kind].append(push.seconds)
                [build] = phase_durations(push, [("build", "-----> Building ", "-----> Built ")])
                if build is not None:
                    results.build[kind].append(build)
                log(f"{kind}: {push.seconds:.2f}s (build {build or 0:.2f}s)")
    return results


def _warm(host: BenchHost, kind: str) -> tuple[Path, dict[str, str]]:
    """An app of its own for `kind`, pushed twice (the second push finds every layer cached)."""
    _tests, state, builder = kind.split()
    app = host.create_app(f"t{state}{builder[0]}")
    if state == "off":
        host.cli("settings:set", app, "tests", "off")
    env = {**host.env, "MINIPAAS_BUILDER": builder if builder == "legacy" else "auto"}
    checkout = host.checkout(app, APP)
    for warm in range(2):
        commit(checkout, f"warm-up {warm}")
        push = timed_push(checkout, "master", env=env)
        if push.returncode != 0:
            raise RuntimeError(f"{kind}: warm-up push failed:\n{push.text}")
    log(f"{kind}: {app} warm")
    return checkout, env


def report(results: Results, runs: int) -> str:
    lines = [f"Machine: {machine()}", f"Runs: {runs} per kind (an empty commit each: nothing new to build)"]
    for title, numbers in (("push until live", results.seconds), ("its build (`Building` to `Built`)", results.build)):
        lines += ["", f"| {title} | median s | min s | max s | n | against tests off |", "|---|---|---|---|---|---|"]
        for kind in KINDS:
            values, baseline = numbers[kind], numbers[kind.replace(" on ", " off ")]
            ratio = ""
            if " on " in kind and values and baseline:
                on, off = statistics.median(values), statistics.median(baseline)
                verdict = "within" if on - off <= TARGET else "over"
                ratio = f"{on / off:.2f}x, {on - off:+.2f} s ({verdict} the +{TARGET} s target)"
            lines.append(table_row(kind, values, ratio))
    lines += [f"- {note}" for note in results.notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    results = measure(args.runs)
    print(report(results, args.runs))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2))


if __name__ == "__main__":
    main()
