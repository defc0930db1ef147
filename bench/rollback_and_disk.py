#!/usr/bin/env python3
"""Rollback time against a warm push, and the disk one app uses after many deploys, with gc on and off.

On an isolated minipaas host (bench/harness.py: temp MINIPAAS_HOME, private nginx on a free
loopback port), examples/hello (Express) with `drain-seconds 0`:

  rollback   release A, then release B (a server.js change) are pushed; then, --runs times, in turn:
             `minipaas releases:rollback APP N` to A or B (alternately: the two releases' images are
             reused, nothing is built), timed from the command's start until GET / through nginx
             answers 200 with that release's text; and, as the baseline, a warm push (a one-line
             server.js change) timed from `git push` until its text is served. Interleaved, so that
             both see the same load. Before each measurement the old containers are gone.
  disk       for keep-releases 5 (retention on, the default) and then 0 (keep everything, gc off):
             a fresh app, --deploys source-change pushes (each confirmed served), then a wait until the
             background gc settles (the number of minipaas/APP images and of the home's containers
             unchanged for 3 s); then the images (`docker images -q minipaas/APP`), the home's
             containers (all states), `report --json` image_bytes (every image at its full size,
             base layers included), the distinct layers the app's images add on top of the
             minipaas/node base (from `docker history`), `gc APP --dry-run`, and the growth of Docker's
             disk over the deploys: `du -sbx` of Docker's root dir and the engine's LayersSize
             (`docker system df`'s Images SIZE, in bytes). Both growths are of the whole engine:
             other work on the machine shows up in them.

Everything is removed at the end, also on errors, Ctrl-C and SIGTERM.

    /opt/minipaas/venv/bin/python bench/rollback_and_disk.py [--runs 5] [--deploys 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    DOMAIN,
    BenchHost,
    Poller,
    Push,
    bench_host,
    commit,
    docker,
    log,
    machine,
    new_marker,
    phase_durations,
    run,
    set_marker,
    table_row,
    timed_push,
)

RETRIES = 2
SETTLE_SECONDS = 3.0
SETTLE_TIMEOUT = 180.0
BASE_REPOSITORY = "minipaas/node"

# Phases of a rollback, between two lines of its output (None: the command's start / its exit).
ROLLBACK_PHASES: list[tuple[str, str | None, str | None]] = [
    ("CLI start, imports, app lock", None, "-----> Rolling"),
    ("reconcile, pending record", "-----> Rolling", "-----> Starting"),
    ("container create + start", "-----> Starting", "-----> Waiting for"),
    ("health check until first answer", "-----> Waiting for", "healthy after"),
    ("router switch (nginx -t, reload) + records", "healthy after", "is live at"),
    ("after 'live': retirer spawn, exit", "is live at", None),
]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- timed commands ------------------------------------------------------------------------

def timed_command(args: list[str], *, env: dict[str, str], port: int, app: str, marker: str,
                  serve_timeout: float = 60) -> Push:
    """Run a command, timing its output lines, and poll GET / through nginx until `marker` is served."""
    started = time.monotonic()
    poller = Poller(port, f"{app}.{DOMAIN}", marker, started)
    poller.start()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    try:
        for raw in proc.stdout:
            lines.append((time.monotonic() - started, raw.decode(errors="replace").strip()))
        returncode = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    if returncode == 0:
        poller.join(serve_timeout)
    poller.stop.set()
    poller.join(5)
    return Push(returncode, seconds, poller.served, [(at, text) for at, text in lines if text])


def pushed(host: BenchHost, checkout: Path, app: str, marker: str, failures: list[str], what: str,
           serve_timeout: float = 60) -> Push:
    """A timed push of the checked-out commit; a rejected push is noted in `failures` and retried
    (at most RETRIES times: the commit did not reach the app's repo, so the same push goes again)."""
    for _attempt in range(RETRIES + 1):
        push = timed_push(checkout, "master", env=host.env, port=host.port, app=app, marker=marker,
                          serve_timeout=serve_timeout)
        if push.returncode == 0:
            break
        hook_errors = [line for _, line in push.lines if line.startswith("!") and not line.startswith("! [")]
        reason = " / ".join(" ".join(line.split()) for line in hook_errors[:2]) or push.text[-300:]
        failures.append(f"{what}: push rejected: {reason}")
        log(f"{what}: push rejected ({reason}); pushing again")
    else:
        raise RuntimeError(f"git push failed {RETRIES + 1} times:\n{push.text}")
    if push.served is None:
        raise RuntimeError(f"pushed, but nginx never served {marker}:\n{push.text}")
    return push


def source_change(checkout: Path, message: str) -> str:
    marker = new_marker()
    set_marker(checkout, marker)
    commit(checkout, message)
    return marker


def live_release(host: BenchHost, app: str) -> int:
    found = json.loads(host.cli("releases", app, "--json").stdout)
    live = [int(r["number"]) for r in found if r["status"] == "live"]
    if len(live) != 1:
        raise RuntimeError(f"{app}: {len(live)} live releases: {found}")
    return live[0]


# -- part 1: rollback against a warm push --------------------------------------------------

@dataclass
class RollbackResults:
    rollback: list[Push] = field(default_factory=list)
    warm: list[Push] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rollback_part(host: BenchHost, runs: int, results: RollbackResults) -> None:
    app = host.create_app("rb")
    checkout = host.checkout(app)
    try:
        host.cli("settings:set", app, "drain-seconds", "0")
        markers: dict[int, str] = {}
        for name in ("A", "B"):
            marker = source_change(checkout, f"release {name}")
            pushed(host, checkout, app, marker, results.notes, f"release {name}", serve_timeout=900)
            markers[live_release(host, app)] = marker
        a, b = sorted(markers)
        log(f"rollback: releases {a} (A) and {b} (B) pushed")
        for n in range(1, runs + 1):
            target = a if n % 2 else b
            if not host.wait_retired(app):
                results.notes.append(f"run {n}: old containers still there 60 s after the last switch")
            done = timed_command([sys.executable, "-m", "minipaas", "releases:rollback", app, str(target)],
                                 env=host.env, port=host.port, app=app, marker=markers[target])
            if done.returncode != 0 or done.served is None:
                raise RuntimeError(f"rollback to {target} failed or was never served:\n{done.text}")
            if any(line.startswith("-----> Building") for _, line in done.lines):
                results.notes.append(f"run {n}: the rollback built something")
            results.rollback.append(done)
            results.targets.append(target)
            log(f"run {n}: rollback to {target} served after {done.served:.2f}s (command {done.seconds:.2f}s)")

            if not host.wait_retired(app):
                results.notes.append(f"run {n}: old containers still there 60 s after the rollback")
            warm = pushed(host, checkout, app, source_change(checkout, f"warm {n}"), results.notes,
                          f"rollback part, warm push {n}")
            results.warm.append(warm)
            log(f"run {n}: warm push served after {warm.served:.2f}s (push {warm.seconds:.2f}s)")
    finally:
        host.destroy_app(app)


# -- part 2: disk after many deploys -------------------------------------------------------

@dataclass
class DiskMode:
    keep_releases: int
    deploys: int
    images: int = 0
    containers: int = 0
    releases: int = 0
    report_images: int = 0
    report_image_bytes: int = 0
    own_layer_bytes: int = 0
    own_layers: int = 0
    gc_dry_run_items: int = 0
    du_before: int | None = None
    du_after: int | None = None
    layers_before: int | None = None
    layers_after: int | None = None
    settle_seconds: float = 0.0
    served: list[float] = field(default_factory=list)
    pushes: list[float] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _unix_socket() -> str | None:
    value = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return value.removeprefix("unix://") if value.startswith("unix://") else None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def layers_size() -> int | None:
    """The engine's LayersSize (`docker system df`: Images SIZE, every distinct layer once), in bytes."""
    path = _unix_socket()
    if path is None:
        return None
    conn = _UnixHTTPConnection(path)
    try:
        conn.request("GET", "/system/df")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return int(json.loads(body).get("LayersSize") or 0)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def docker_root_du() -> int | None:
    """`du -sbx` of Docker's root dir: -x, not into the running containers' overlay mounts (each would
    count a whole root filesystem). Files vanishing under du, as they do here, are not an error."""
    root = docker("info", "--format", "{{.DockerRootDir}}", check=False).strip() or "/var/lib/docker"
    out = run(["du", "-sbx", root], check=False, timeout=300).stdout.strip().splitlines()
    match = re.match(r"(\d+)\s", out[-1] + " ") if out else None
    return int(match.group(1)) if match else None


def app_images(host: BenchHost, app: str) -> list[str]:
    """The app's images in this bench home's instance (`mp-<hash>/APP`, as settings name it)."""
    from minipaas.state import settings

    return sorted(set(docker("images", "-q", settings.load(host.env).image_repository(app)).split()))


def home_containers(host: BenchHost) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=minipaas={host.home}").split()


def own_layers(images: list[str]) -> tuple[int, int]:
    """(bytes, count) of the distinct layers these images add on top of their base image.

    An image's history (newest first) ends with its base's (`minipaas/node:<version>`, from the image's
    label): those entries are left out by position, since a base made by `docker import` and BuildKit's
    steps show no IDs (`<missing>`). Entries with an ID (the legacy builder's) shared by several images
    count once; BuildKit's, without one, once per image: with BuildKit the count is an upper bound (a
    `node_modules` layer all the images share is counted in each).
    """
    base_lengths: dict[str, int] = {}
    seen: dict[str, int] = {}
    for image in images:
        version = docker("image", "inspect", "--format", '{{index .Config.Labels "minipaas.node.version"}}',
                         image, check=False).strip()
        base = f"{BASE_REPOSITORY}:{version}"
        if base not in base_lengths:
            base_lengths[base] = len(_history(base)) if version else 0
        history = _history(image)
        for index, line in enumerate(history[:len(history) - base_lengths[base]]):
            entry_id, size = line.split("\t")
            key = entry_id if entry_id != "<missing>" else f"{image}#{index}"
            seen[key] = int(size)
    return sum(seen.values()), sum(1 for size in seen.values() if size > 0)


def _history(image: str) -> list[str]:
    return docker("history", "--no-trunc", "--human=false", "--format", "{{.ID}}\t{{.Size}}", image).splitlines()


def wait_settled(host: BenchHost, app: str) -> float:
    """Wait until the number of the app's images and the home's containers stays put for SETTLE_SECONDS."""
    started = time.monotonic()
    last = (len(app_images(host, app)), len(home_containers(host)))
    stable_since = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        time.sleep(0.5)
        now = (len(app_images(host, app)), len(home_containers(host)))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_SECONDS:
            return stable_since - started
    raise RuntimeError(f"{app}: images/containers still changing after {SETTLE_TIMEOUT:.0f}s: {last}")


def disk_part(host: BenchHost, keep_releases: int, deploys: int) -> DiskMode:
    mode = DiskMode(keep_releases=keep_releases, deploys=deploys)
    app = host.create_app(f"disk{keep_releases}")
    checkout = host.checkout(app)
    try:
        host.cli("settings:set", app, "drain-seconds", "0")
        host.cli("settings:set", app, "keep-releases", str(keep_releases))
        mode.loads.append(load())
        mode.du_before, mode.layers_before = docker_root_du(), layers_size()
        for n in range(1, deploys + 1):
            push = pushed(host, checkout, app, source_change(checkout, f"deploy {n}"), mode.failures,
                          f"keep-releases {keep_releases}, deploy {n}", serve_timeout=900)
            assert push.served is not None
            mode.served.append(push.served)
            mode.pushes.append(push.seconds)
            if n % 10 == 0:
                log(f"keep-releases {keep_releases}: {n} deploys, last served after {push.served:.2f}s")
        mode.loads.append(load())
        mode.settle_seconds = wait_settled(host, app)
        mode.du_after, mode.layers_after = docker_root_du(), layers_size()
        images = app_images(host, app)
        mode.images = len(images)
        mode.containers = len(home_containers(host))
        mode.releases = len(json.loads(host.cli("releases", app, "--json").stdout))
        row = next(r for r in json.loads(host.cli("report", "--json").stdout) if r["app"] == app)
        mode.report_images, mode.report_image_bytes = int(row["images"]), int(row["image_bytes"])
        mode.own_layer_bytes, mode.own_layers = own_layers(images)
        dry = host.cli("gc", app, "--dry-run").stdout
        mode.gc_dry_run_items = sum(1 for line in dry.splitlines() if "would remove" in line)
        log(f"keep-releases {keep_releases}: {mode.images} images, {mode.containers} containers, "
            f"report {mode.report_image_bytes / 1e6:.0f} MB, own layers {mode.own_layer_bytes / 1e6:.2f} MB")
    finally:
        host.destroy_app(app)
    return mode


# -- report --------------------------------------------------------------------------------

def _row(name: str, values: list[float], ratio: str = "") -> str:
    return table_row(name, values, ratio)


def _phases(push: Push) -> list[float | None]:
    return phase_durations(push, ROLLBACK_PHASES)


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def _growth(before: int | None, after: int | None) -> str:
    return "-" if before is None or after is None else f"{(after - before) / 1e6:+,.1f}"


def report(rb: RollbackResults, modes: list[DiskMode], argv: list[str], about: str, end_load: str) -> str:
    out = [f"rollback and disk, {time.strftime('%Y-%m-%d %H:%M %Z')}; {about}; load average at end {end_load}",
           f"command: {' '.join(argv)}", ""]
    if rb.rollback:
        rollback = [p.served for p in rb.rollback if p.served is not None]
        warm = [p.served for p in rb.warm if p.served is not None]
        ratio = statistics.median(rollback) / statistics.median(warm)
        out += [
            "| measurement (seconds) | median | min | max | runs | ratio of medians |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            _row("rollback (`releases:rollback APP N` start → old text served)", rollback,
                 f"{ratio:.2f}x warm push"),
            _row("rollback: command exits", [p.seconds for p in rb.rollback]),
            _row("warm push (`git push` start → new text served)", warm),
            _row("warm push: `git push` exits", [p.seconds for p in rb.warm]),
            "",
            "Where a rollback's time goes (from the arrival times of its output lines; medians):",
            "",
            "| phase | median s |",
            "| --- | ---: |",
        ]
        per_run = [_phases(p) for p in rb.rollback]
        for i, (name, _, _) in enumerate(ROLLBACK_PHASES):
            values = [v for r in per_run if (v := r[i]) is not None]
            out.append(f"| {name} | {statistics.median(values):.2f} |" if values else f"| {name} | - |")
        first_served = [p.served - p.seconds for p in rb.rollback if p.served is not None]
        out += ["", f"Old text first served {statistics.median(first_served):+.2f}s (median) relative to the "
                    f"command exiting; rollback targets in order: {', '.join(map(str, rb.targets))}.", ""]
    if modes:
        heads = [f"keep-releases {m.keep_releases}" + (" (default)" if m.keep_releases == 5 else " (gc off)")
                 for m in modes]
        rows: list[tuple[str, list[str]]] = [
            ("deploys (source-change pushes, drain-seconds 0)", [str(m.deploys) for m in modes]),
            ("pushes rejected (then pushed again)", [str(len(m.failures)) for m in modes]),
            ("release records", [str(m.releases) for m in modes]),
            ("`minipaas/APP` images (`docker images -q`)", [str(m.images) for m in modes]),
            ("containers of the home (all states)", [str(m.containers) for m in modes]),
            ("`gc APP --dry-run`: items it would still remove", [str(m.gc_dry_run_items) for m in modes]),
            ("`report --json`: images / image_bytes (MB, full sizes)",
             [f"{m.report_images} / {_mb(m.report_image_bytes)}" for m in modes]),
            ("distinct layers above the base, with data / their bytes (MB)",
             [f"{m.own_layers} / {m.own_layer_bytes / 1e6:.2f}" for m in modes]),
            ("Docker root dir `du -sbx`: growth over the deploys (MB)",
             [_growth(m.du_before, m.du_after) for m in modes]),
            ("engine LayersSize (`system df` Images SIZE): growth (MB)",
             [_growth(m.layers_before, m.layers_after) for m in modes]),
            ("push-to-live over the deploys: median / max (s)",
             [f"{statistics.median(m.served):.2f} / {max(m.served):.2f}" for m in modes]),
            ("gc settled (counts stable 3 s) after the last push (s)", [f"{m.settle_seconds:.1f}" for m in modes]),
            ("load average (1/5/15 min) before → after the deploys",
             [" → ".join(m.loads) for m in modes]),
        ]
        out += ["| after the deploys | " + " | ".join(heads) + " |",
                "| --- |" + " ---: |" * len(modes)]
        out += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
        out += ["", "Docker root dir before/after (MB): "
                + "; ".join(f"keep {m.keep_releases}: {_mb(m.du_before)} → {_mb(m.du_after)}" for m in modes),
                "LayersSize before/after (MB): "
                + "; ".join(f"keep {m.keep_releases}: {_mb(m.layers_before)} → {_mb(m.layers_after)}" for m in modes)]
    notes = rb.notes + [failure for m in modes for failure in m.failures]
    if notes:
        out += ["", "notes:"] + [f"- {note}" for note in notes]
    return "\n".join(out)


def _sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through bench_host's cleanup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rollbacks and warm pushes each (default 5)")
    parser.add_argument("--deploys", type=int, default=30, help="deploys per retention mode (default 30)")
    parser.add_argument("--keep-releases", type=int, default=5, help="the retention-on mode (default 5)")
    parser.add_argument("--skip-rollback", action="store_true", help="only the disk part")
    parser.add_argument("--skip-disk", action="store_true", help="only the rollback part")
    parser.add_argument("--json", type=Path, help="also write every measurement there")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) for inspection")
    args = parser.parse_args()
    if not (1 <= args.runs <= 50 and 1 <= args.deploys <= 200 and 1 <= args.keep_releases <= 100):
        parser.error("--runs 1..50, --deploys 1..200, --keep-releases 1..100")
    signal.signal(signal.SIGTERM, _sigterm)
    about = machine()
    rb = RollbackResults()
    modes: list[DiskMode] = []
    with bench_host(keep=args.keep) as host:
        if not args.skip_rollback:
            rollback_part(host, args.runs, rb)
        if not args.skip_disk:
            for keep_releases in (args.keep_releases, 0):
                modes.append(disk_part(host, keep_releases, args.deploys))
    argv = ["python", "bench/rollback_and_disk.py", *sys.argv[1:]]
    print(report(rb, modes, argv, about, load()))
    if args.json:
        args.json.write_text(json.dumps({"rollback": asdict(rb), "disk": [asdict(m) for m in modes]}, indent=1),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
