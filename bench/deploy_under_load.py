#!/usr/bin/env python3
"""Failed requests while deploying: wrk through minipaas' private nginx during K consecutive pushes, then
during `ps:scale web=3` and back to 1, and during a rollback and a roll forward (both profiles at once).

Two load profiles, both on loopback and bounded in time (wrk -d, stopped with SIGINT once the
deploys and the retirements after them are done):
  keep-alive   2 threads, 16 keep-alive connections, GET / and POST /echo alternately (tests/load/mixed.lua);
  close        1 thread, 4 connections, GET / with `Connection: close` (a new connection per request).
Each deploy changes server.js (a warm build) and is checked to serve its new text. Optionally, the
same load first runs for a while without deploys, for comparison.

    /opt/minipaas/venv/bin/python bench/deploy_under_load.py [--deploys 10] [--mode concurrent|sequential]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    DOMAIN,
    BenchHost,
    bench_host,
    commit,
    log,
    machine,
    new_marker,
    set_marker,
    timed_push,
)

LUA = Path(__file__).resolve().parent.parent / "tests" / "load" / "mixed.lua"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Profile:
    name: str
    args: tuple[str, ...]


PROFILES = (
    Profile("keep-alive GET/POST", ("-t2", "-c16", "-s", str(LUA))),
    Profile("Connection: close GET", ("-t1", "-c4", "-H", "Connection: close")),
)


@dataclass
class WrkResult:
    phase: str
    profile: str
    deploys: int
    seconds: float
    requests: int
    non_2xx_3xx: int
    connect: int
    read: int
    write: int
    timeout: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    ended_early: bool
    output: str

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@dataclass
class Phase:
    name: str
    results: list[WrkResult] = field(default_factory=list)
    push_seconds: list[float] = field(default_factory=list)
    live_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changes: int = 0  # deploys, scalings or rollbacks made under the load


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, object]:
    """The counts of a wrk summary (wrk 4.x text output)."""
    done = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if not done:
        raise RuntimeError(f"no wrk summary in:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    pct = dict(re.findall(r"^\s*(\d+)%\s+(\S+)", output, re.M))
    connect, read, write, timeout = (int(g) for g in errors.groups()) if errors else (0, 0, 0, 0)
    return {
        "requests": int(done.group(1)),
        "seconds": _ms(done.group(2)) / 1000,
        "non_2xx_3xx": int(non2xx.group(1)) if non2xx else 0,
        "connect": connect, "read": read, "write": write, "timeout": timeout,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": _ms(pct["50"]) if "50" in pct else None,
        "p99_ms": _ms(pct["99"]) if "99" in pct else None,
        "max_ms": _ms(latency.group(3)) if latency else None,
    }


def start_wrk(host: BenchHost, app: str, profile: Profile, max_seconds: int) -> subprocess.Popen[str]:
    url = f"http://127.0.0.1:{host.port}/"  # loopback only
    return subprocess.Popen(
        ["wrk", f"-d{max_seconds}s", "--timeout", "10s", "--latency", "-H", f"Host: {app}.{DOMAIN}",
         *profile.args, url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_wrk(proc: subprocess.Popen[str]) -> tuple[str, bool]:
    """SIGINT makes wrk stop and print its summary; returns (output, whether it had ended on its own)."""
    ended = proc.poll() is not None
    if not ended:
        proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output, ended


def load_phase(host: BenchHost, app: str, checkout: Path, name: str, profiles: tuple[Profile, ...], *,
               deploys: int, idle_seconds: float, max_seconds: int, drain: int) -> Phase:
    """K consecutive pushes under load (none: the same load alone for `idle_seconds`)."""

    def push(phase: Phase, k: int) -> None:
        marker = new_marker()
        set_marker(checkout, marker)
        commit(checkout, f"deploy {k + 1} under load")
        done = timed_push(checkout, "master", env=host.env, port=host.port, app=app, marker=marker)
        if done.returncode != 0 or done.served is None:
            phase.notes.append(f"deploy {k + 1} failed or never served its text:\n{done.text}")
            return
        phase.push_seconds.append(done.seconds)
        phase.live_seconds.append(done.served)
        log(f"{name}: deploy {k + 1}/{deploys} live after {done.served:.2f}s")

    return under_load(host, app, name, profiles, [push] * deploys, idle_seconds=idle_seconds,
                      max_seconds=max_seconds, drain=drain)


def scale_phase(host: BenchHost, app: str, profiles: tuple[Profile, ...], *, max_seconds: int,
                drain: int) -> Phase:
    """`ps:scale web=3`, all three serving, then `ps:scale web=1`, the other two retired, under load."""

    def scale(count: int) -> Callable[[Phase, int], None]:
        def step(phase: Phase, _k: int) -> None:
            host.cli("ps:scale", app, f"web={count}")
            if not wait_serving(host, app, count, timeout=60):
                phase.notes.append(f"web={count}: not {count} serving containers within 60 s")
            log(f"scaled to web={count}")
        return step

    return under_load(host, app, "ps:scale 1 -> 3 -> 1", profiles, [scale(3), scale(1)], idle_seconds=0,
                      max_seconds=max_seconds, drain=drain)


def rollback_phase(host: BenchHost, app: str, profiles: tuple[Profile, ...], *, max_seconds: int,
                   drain: int) -> Phase:
    """`releases:rollback` to the previous release, then back to the newest one, under load."""
    [newest] = [r["number"] for r in json.loads(host.cli("releases", app, "--json").stdout) if r["status"] == "live"]

    def rollback(target: str) -> Callable[[Phase, int], None]:
        def step(phase: Phase, _k: int) -> None:
            started = time.monotonic()
            host.cli("releases:rollback", app, *([target] if target else []))
            phase.push_seconds.append(time.monotonic() - started)
            log(f"rolled back{' to ' + target if target else ''}")
        return step

    return under_load(host, app, "rollback and forward again", profiles, [rollback(""), rollback(str(newest))],
                      idle_seconds=0, max_seconds=max_seconds, drain=drain)


def wait_serving(host: BenchHost, app: str, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(host.cli("ps", app, "--json").stdout)
        if sum(1 for r in rows if r["process"] == "web" and r["health"] == "serving") == count:
            return True
        time.sleep(0.25)
    return False


def under_load(host: BenchHost, app: str, name: str, profiles: tuple[Profile, ...],
               steps: list[Callable[[Phase, int], None]], *, idle_seconds: float, max_seconds: int,
               drain: int) -> Phase:
    """The load profiles running while `steps` run one after the other, until the retirements after them
    are done; wrk's counts per profile."""
    phase = Phase(name)
    procs = [start_wrk(host, app, p, max_seconds) for p in profiles]
    started = time.monotonic()
    try:
        time.sleep(1)  # connections up before the first change
        if not steps:
            time.sleep(idle_seconds)
        for k, step in enumerate(steps):
            if time.monotonic() - started > max_seconds - 30:
                phase.notes.append(f"stopped after {k} changes: close to --max-seconds")
                break
            step(phase, k)
            phase.changes += 1
        if steps:
            # The old containers are retired after the drain delay, still under load: wait for that.
            if not host.wait_retired(app, timeout=drain + 60):
                phase.notes.append("old containers were still there after the drain delay + 60 s")
            time.sleep(1)
    finally:
        outputs = [stop_wrk(proc) for proc in procs]
    for profile, (output, ended) in zip(profiles, outputs, strict=True):
        counts = parse_wrk(output)
        phase.results.append(WrkResult(phase=name, profile=profile.name, deploys=phase.changes,
                                       ended_early=ended, output=output, **counts))  # type: ignore[arg-type]
        if ended:
            phase.notes.append(f"{profile.name}: wrk reached -d{max_seconds}s before the changes were done")
    return phase


def report(phases: list[Phase], argv: list[str], about: str) -> str:
    out = [
        f"deploys under load, {time.strftime('%Y-%m-%d %H:%M %Z')}; {about}",
        f"command: {' '.join(argv)}",
        "",
        "| phase | load profile | changes | seconds | requests | non-2xx/3xx | socket errors "
        "(connect/read/write/timeout) | requests/s | p50 ms | p99 ms | max ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for phase in phases:
        for r in phase.results:
            out.append(
                f"| {r.phase} | {r.profile} | {r.deploys} | {r.seconds:.1f} | {r.requests} | {r.non_2xx_3xx} | "
                f"{r.socket_errors} ({r.connect}/{r.read}/{r.write}/{r.timeout}) | {r.rps:.0f} | "
                f"{_fmt(r.p50_ms)} | {_fmt(r.p99_ms)} | {_fmt(r.max_ms)} |")
    out.append("")
    for phase in phases:
        if phase.live_seconds:
            out.append(f"{phase.name}: push-to-live under load median {statistics.median(phase.live_seconds):.2f} s, "
                       f"max {max(phase.live_seconds):.2f} s (git push median "
                       f"{statistics.median(phase.push_seconds):.2f} s) over {len(phase.live_seconds)} deploys")
    failed = sum(r.non_2xx_3xx + r.socket_errors for p in phases for r in p.results if r.deploys)
    verdict = "MET" if failed == 0 else "MISSED"
    out.append(f"target 0 failed requests during deploys, scaling and rollbacks: {failed} {verdict}")
    notes = [f"{p.name}: {n}" for p in phases for n in p.notes]
    if notes:
        out += ["", "notes:"] + [f"- {n}" for n in notes]
    return "\n".join(out)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=10, help="consecutive deploys under load (default 10)")
    parser.add_argument("--mode", choices=("concurrent", "sequential"), default="concurrent",
                        help="both load profiles at once (default), or one after the other with K deploys each")
    parser.add_argument("--idle-seconds", type=float, default=10,
                        help="first run the same load this long without deploys, for comparison (0: skip)")
    parser.add_argument("--max-seconds", type=int, default=300, help="upper bound of each wrk run (default 300)")
    parser.add_argument("--drain-seconds", type=int, default=None,
                        help="set the app's drain-seconds (default: keep minipaas' default)")
    parser.add_argument("--json", type=Path, help="also write every measurement (and wrk's output) there")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) for inspection")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if args.deploys < 1:
        parser.error("--deploys must be at least 1")
    about = machine()
    phases: list[Phase] = []
    with bench_host(keep=args.keep) as host:
        app = host.create_app("load")
        checkout = host.checkout(app)
        if args.drain_seconds is not None:
            host.cli("settings:set", app, "drain-seconds", str(args.drain_seconds))
        drain = int(json.loads(host.cli("settings", app, "--json").stdout)["drain-seconds"])
        marker = new_marker()
        set_marker(checkout, marker)
        commit(checkout, "first deploy")
        first = timed_push(checkout, "master", env=host.env, port=host.port, app=app, marker=marker, serve_timeout=900)
        if first.returncode != 0 or first.served is None:
            raise RuntimeError(f"first deploy failed:\n{first.text}")
        log(f"{app} live; drain-seconds {drain}")
        groups = [PROFILES] if args.mode == "concurrent" else [(p,) for p in PROFILES]
        for group in groups:
            label = "both at once" if len(group) > 1 else group[0].name
            common = {"max_seconds": args.max_seconds, "drain": drain}
            if args.idle_seconds > 0:
                phases.append(load_phase(host, app, checkout, f"no deploys ({label})", group, deploys=0,
                                         idle_seconds=args.idle_seconds, **common))
            phases.append(load_phase(host, app, checkout, f"{args.deploys} deploys ({label})", group,
                                     deploys=args.deploys, idle_seconds=0, **common))
        common = {"max_seconds": args.max_seconds, "drain": drain}
        phases.append(scale_phase(host, app, PROFILES, **common))
        phases.append(rollback_phase(host, app, PROFILES, **common))
    argv = ["python", "bench/deploy_under_load.py", *sys.argv[1:]]
    print(report(phases, argv, about))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(p), "results": [asdict(r) for r in p.results]} for p in phases],
                                        indent=1), encoding="utf-8")
    failed = sum(r.non_2xx_3xx + r.socket_errors for p in phases for r in p.results if r.deploys)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
