"""bench/scale.py's measurements on a host at size: the commands' times, memory and disk, the hot path
against a plain nginx, deploys under load across every other app, builds against the other apps' latency,
and ps:restore. Each returns plain data; scale.py prints it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import BenchHost, Push, docker, git, log, new_marker, run, timed_push
from scale_setup import App, Fleet, answer, background_done, serving_all
from scale_tools import (
    Load,
    Memory,
    Wrk,
    burn_commit,
    container_memory_mib,
    counter,
    du_bytes,
    home_containers,
    hosts_script,
    loadavg,
    median,
    nginx_memory,
    plain_nginx,
    set_tiny_marker,
    sysctl,
    watcher_memory,
    wrk_for,
)

# -- the commands --------------------------------------------------------------------------


@dataclass
class Command:
    label: str
    seconds: list[float]
    load: str


def commands(host: BenchHost, fleet: Fleet, runs: int) -> list[Command]:
    """Wall time of each command as a user runs it (a new interpreter each time), `runs` times."""
    container = fleet.of("container app", reviews=False)[0].name
    review = next((a.name for a in fleet.reviews if a.container), container)
    wanted = [("minipaas --help (the interpreter's floor)", ["--help"]),
              ("apps:list", ["apps:list"]), ("apps:list --json", ["apps:list", "--json"]),
              (f"ps {container}", ["ps", container]), (f"ps {review} (a review app)", ["ps", review]),
              ("report", ["report"]), ("report --json", ["report", "--json"])]
    out = []
    for label, args in wanted:
        load = loadavg()
        seconds = []
        for _ in range(runs):
            started = time.monotonic()
            host.cli(*args)
            seconds.append(time.monotonic() - started)
        out.append(Command(label, seconds, load))
        log(f"{label}: median {median(seconds) * 1000:.0f} ms")
    return out


# -- memory, disk, the pool ----------------------------------------------------------------


@dataclass
class Footprint:
    memory: list[Memory] = field(default_factory=list)
    app_mib: list[float] = field(default_factory=list)  # each running container of the home
    site_bytes: list[int] = field(default_factory=list)  # allocated under static/<site>, each site
    repo_bytes: list[int] = field(default_factory=list)
    counters: dict[str, str] = field(default_factory=dict)
    load: str = ""


def footprint(host: BenchHost, fleet: Fleet) -> Footprint:
    out = Footprint(load=loadavg())
    out.memory = [nginx_memory(host.home), watcher_memory(host.home)]
    out.app_mib = container_memory_mib(home_containers(host.home))
    out.site_bytes = [du_bytes(host.home / "static" / a.name) for a in fleet.sites]
    out.repo_bytes = [du_bytes(host.home / "repos" / f"{a.name}.git") for a in fleet.apps if a.parent is None]
    networks = docker("network", "ls", "-q", "--filter", f"label=minipaas={host.home}").split()
    out.counters = {
        "networks of the home": str(len(networks)),
        "networks on the engine": str(len(docker("network", "ls", "-q").split())),
        "containers of the home (running)": str(len(home_containers(host.home))),
        "routes in the routing table": str(sum(1 for line in (host.home / "nginx" / "routes").read_text().splitlines()
                                            if len(line.split()) > 1)),
        "vhosts": str(len(list((host.home / "nginx" / "sites").glob("*.conf")))),
        "iptables rules (filter)": str(counter(["iptables", "-S"])),
        "iptables rules (nat)": str(counter(["iptables", "-t", "nat", "-S"])),
        "host neighbour entries (IPv4)": str(counter(["ip", "-4", "neigh", "show"])),
        "net.ipv4.neigh.default.gc_thresh3": sysctl("net.ipv4.neigh.default.gc_thresh3"),
    }
    pool = [line for line in host.cli("report").stdout.splitlines() if "MINIPAAS_SUBNETS" in line]
    out.counters["report's line on the address pool"] = pool[0].strip() if pool else "(none)"
    return out


# -- the hot path ----------------------------------------------------------------------------


@dataclass
class HotPath:
    target: str
    round: int
    run: Load


def routed(host: BenchHost, fleet: Fleet) -> dict[str, str]:
    """host name → the address nginx routes it to, for every container app (the routing table: `app 12=100
    host:port ...`, each version's `release=weight` before its addresses)."""
    table = {}
    for line in (host.home / "nginx" / "routes").read_text().splitlines():
        app, *fields = line.split()
        addresses = [f for f in fields if "=" not in f]
        if addresses:
            table[app] = addresses[0]
    return {a.host_name: table[a.name] for a in fleet.containers if a.name in table}


def hot_path(host: BenchHost, fleet: Fleet, *, rounds: int, seconds: int, connections: int) -> list[HotPath]:
    """wrk -t1 across every container app, through minipaas and through a plain nginx routing the same apps
    (bench/proxy_overhead.py's baseline, one server and upstream per app), in interleaved rounds."""
    routes = routed(host, fleet)
    script = host.work / "hot.lua"
    script.write_text(hosts_script(sorted(routes), count_failures=False), encoding="utf-8")
    out = []
    with plain_nginx(host.work, host.home / "nginx" / "front.conf", routes) as plain_port:
        targets = {"plain nginx": plain_port, "minipaas": host.port}
        for port in targets.values():  # warm: every app's first connections
            wrk_for(port, script, 2, connections=connections)
        for number in range(1, rounds + 1):
            order = list(targets.items()) if number % 2 else list(reversed(targets.items()))
            for target, port in order:
                got = wrk_for(port, script, seconds, connections=connections)
                out.append(HotPath(target, number, got))
                log(f"round {number} {target:<12} {got.rps:>8.0f} req/s p50 {got.p50_ms} p99 {got.p99_ms} ms "
                    f"(load {got.load})")
    return out


# -- deploys under load ----------------------------------------------------------------------


class AppPoller(threading.Thread):
    """GET / of one app after another (a new connection each), over and over: which apps failed, and when."""

    def __init__(self, port: int, apps: Sequence[App]) -> None:
        super().__init__(daemon=True)
        self.port, self.apps = port, list(apps)
        self.requests = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.halt.is_set():
            for app in self.apps:
                if self.halt.is_set():
                    return
                status, body = answer(self.port, app.host_name, timeout=5)
                self.requests += 1
                if status != 200:
                    self.failures.append(f"{time.monotonic() - started:.2f}s {app.name} {status} {body[:40]!r}")


@dataclass
class Deploy:
    app: str
    push_seconds: float
    served: float | None  # until the new text was served
    healthy_at: float | None  # when the push said its new container was healthy
    live_at: float | None  # when the push said the release is live

    @property
    def switch(self) -> float | None:
        """From the new container's health check passing until nginx served it."""
        return None if self.served is None or self.healthy_at is None else self.served - self.healthy_at


@dataclass
class UnderLoad:
    deploys: list[Deploy] = field(default_factory=list)
    wrk: Load | None = None
    polled: int = 0
    failures: list[str] = field(default_factory=list)
    load: str = ""
    hosts: int = 0


def deploy_checkout(host: BenchHost, fleet: Fleet) -> Path:
    path = host.work / "deploys"
    run(["git", "clone", "-q", str(fleet.sources["container app"]), str(path)])
    git(path, "remote", "add", "paas", "/dev/null")
    return path


def deploy(host: BenchHost, checkout: Path, app: App) -> Deploy:
    """A source change pushed to `app` (a warm build), until nginx serves it."""
    marker = new_marker()
    git(checkout, "checkout", "-q", "-B", f"deploy-{app.name}", "origin/master")
    set_tiny_marker(checkout, marker)
    git(checkout, "commit", "-q", "-am", f"deploy {marker}")
    git(checkout, "remote", "set-url", "paas", str(host.home / "repos" / f"{app.name}.git"))
    push: Push = timed_push(checkout, f"deploy-{app.name}:master", env=host.env, port=host.port,
                            app=app.name, marker=marker)
    if push.returncode != 0:
        raise RuntimeError(f"the deploy of {app.name} failed:\n{push.text}")
    return Deploy(app.name, push.seconds, push.served, push.first("healthy after"), push.first(" is live at "))


def under_load(host: BenchHost, fleet: Fleet, *, deploys: int, connections: int) -> UnderLoad:
    """`deploys` pushes to container apps, one after the other, while wrk and a poller go through every other
    app (container apps and sites) through nginx."""
    chosen = fleet.of("container app", reviews=False)[:deploys]
    others = [a for a in fleet.apps if a not in chosen]
    script = host.work / "others.lua"
    script.write_text(hosts_script([a.host_name for a in others], count_failures=True), encoding="utf-8")
    checkout = deploy_checkout(host, fleet)
    out = UnderLoad(load=loadavg(), hosts=len(others))
    poller = AppPoller(host.port, others)
    load = Wrk(host.port, script, connections=connections)
    poller.start()
    try:
        time.sleep(2)
        for app in chosen:
            done = deploy(host, checkout, app)
            out.deploys.append(done)
            log(f"deploy of {app.name}: pushed in {done.push_seconds:.2f} s, switch {done.switch} s")
            time.sleep(1)
    finally:
        out.wrk = load.stop()
        poller.halt.set()
        poller.join(10)
    out.polled, out.failures = poller.requests, poller.failures
    return out


# -- a build against the other apps' latency ------------------------------------------------


@dataclass
class BuildRun:
    cpus: str  # the build-cpus setting; "" for no build
    wrk: Load
    push_seconds: float = 0.0


def builds(host: BenchHost, fleet: Fleet, *, cpus: Sequence[str], burn_seconds: int, connections: int,
           threads: int) -> list[BuildRun]:
    """The other container apps under wrk, with no build, then during a build that keeps `threads` CPUs busy
    for `burn_seconds`, once per build-cpus value."""
    builder = fleet.of("container app", reviews=False)[-1]
    others = [a for a in fleet.containers if a is not builder]
    script = host.work / "latency.lua"
    script.write_text(hosts_script([a.host_name for a in others], count_failures=True), encoding="utf-8")
    checkout = host.work / "burn"
    run(["git", "clone", "-q", str(fleet.sources["container app"]), str(checkout)])
    git(checkout, "remote", "add", "paas", str(host.home / "repos" / f"{builder.name}.git"))
    # The first build of the build script's dependencies' layers, outside the measurement.
    burn_commit(checkout, new_marker(), threads=1, seconds=1)
    run(["git", "push", "-q", "paas", "master"], cwd=checkout, env=host.env)
    background_done(host.home)
    out = [BuildRun("", wrk_for(host.port, script, burn_seconds, connections=connections))]
    log(f"no build: p99 {out[0].wrk.p99_ms} ms")
    for value in cpus:
        host.cli("settings:set", builder.name, "build-cpus", value)
        background_done(host.home)
        marker = new_marker()
        burn_commit(checkout, marker, threads=threads, seconds=burn_seconds)
        load = Wrk(host.port, script, connections=connections)
        push = timed_push(checkout, "master", env=host.env)
        got = load.stop()
        if push.returncode != 0:
            raise RuntimeError(f"the build with build-cpus {value} failed:\n{push.text}")
        out.append(BuildRun(value, got, push.seconds))
        log(f"build-cpus {value}: push {push.seconds:.1f} s, p99 {got.p99_ms} ms")
    return out


# -- ps:restore ------------------------------------------------------------------------------


@dataclass
class Restore:
    how: str
    containers: int
    stop_seconds: float
    restore_seconds: float
    serving_seconds: float | None  # from the start of ps:restore until every app answered 200
    load: str
    output_tail: list[str] = field(default_factory=list)


def _restart_engine() -> str:
    """The Docker engine restarted as a package upgrade does: systemd's unit where there is one; else dockerd (which
    install.sh started in the background) told to stop, then started the same way. Returns how."""
    if Path("/run/systemd/system").is_dir():
        run(["systemctl", "restart", "docker"], timeout=600)
        how = "the Docker engine restarted (`systemctl restart docker`)"
    else:
        pid = int(run(["pgrep", "-xo", "dockerd"]).stdout)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 300
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with open("/var/log/minipaas-dockerd.log", "ab") as out:
            subprocess.Popen(["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        how = "the Docker engine restarted (SIGTERM to dockerd, then dockerd started again, as install.sh does)"
    deadline = time.monotonic() + 300
    while run(["docker", "info"], check=False, timeout=60).returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
    return how


def restore(host: BenchHost, fleet: Fleet, *, restart_engine: bool) -> Restore:
    """Every app container of the home stopped with `docker stop` (or, with `restart_engine`, the Docker
    engine restarted), then `ps:restore`, timed until it exits and until every app answers 200."""
    ids = home_containers(host.home)
    load = loadavg()
    started = time.monotonic()
    if restart_engine:
        how = _restart_engine()
    else:
        for start in range(0, len(ids), 50):
            docker("stop", "-t", "2", *ids[start:start + 50], timeout=600)
        how = "every app container stopped with `docker stop` (the engine kept running)"
    stopped = time.monotonic() - started
    down = [a for a in fleet.containers if answer(host.port, a.host_name)[0] == 200]
    if down:
        log(f"{len(down)} container apps still answer 200 after the stop (e.g. {down[0].name})")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "minipaas", "ps:restore"], env=host.env, capture_output=True,
                            text=True, timeout=3600)
    restored = time.monotonic() - started
    serving = serving_all(host.port, fleet.apps, timeout=600)
    if result.returncode != 0:
        log(f"ps:restore failed ({result.returncode}): {result.stderr[-500:]}")
    return Restore(how, len(ids), stopped, restored, None if serving is None else restored + serving, load,
                   result.stdout.splitlines()[-3:] + result.stderr.splitlines()[-3:])
