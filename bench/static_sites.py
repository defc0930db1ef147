#!/usr/bin/env python3
"""Static sites on minipaas: requests/s against a plain nginx, and what 50 sites cost.

On an isolated minipaas host (bench/harness.py: temp MINIPAAS_HOME, private nginx on a free
loopback port):

  memory 0   RSS/PSS of the private nginx masters and their workers right after `minipaas init`;
  req/s      tests/apps/static-site pushed as one app, then wrk (keep-alive, -t2 -c32 -d8s by default,
             3 runs each, minipaas and plain runs interleaved) on its page (GET /, also with
             `Accept-Encoding: gzip`) and its CSS asset, through minipaas' vhost (Host: APP.paas.test)
             and through a plain nginx started here on another loopback port: the same main, events
             and http-level directives as minipaas' generated front.conf (user, workers, connections,
             mime.types, sendfile, keep-alive, buffered access log), and a minimal
             `server { listen; root; }` over a copy of the same files;
  50 sites   50 distinct static apps (copies of the fixture, the app's name in the page) created,
             then pushed one after the other; containers and images of the home (expected 0), nginx
             memory again, disk under HOME/static, push times, and a GET / of every site through nginx.

Everything is removed at the end, also on errors, Ctrl-C and SIGTERM.

    /opt/minipaas/venv/bin/python bench/static_sites.py [--runs 3] [--seconds 8] [--sites 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    DOMAIN,
    ROOT,
    BenchHost,
    bench_host,
    commit,
    docker,
    free_port,
    log,
    machine,
    quit_nginx,
    timed_push,
)
from harness import wrk as harness_wrk

FIXTURE = ROOT / "tests" / "apps" / "static-site"
PAGE_TITLE = "Static home"
CSS = "/css/site.0123abcd.css"
# (label, path, extra request headers)
TARGETS: list[tuple[str, str, dict[str, str]]] = [
    ("page `/` (index.html, 410 B)", "/", {}),
    ("page `/`, `Accept-Encoding: gzip`", "/", {"Accept-Encoding": "gzip"}),
    ("page `/index.html` (no index lookup)", "/index.html", {}),
    (f"CSS asset `{CSS}` (102 B)", CSS, {}),
]
# http-level directives of front.conf that the plain nginx copies verbatim (access_log: with its own path)
COPIED_HTTP = ("include", "default_type", "server_tokens", "sendfile", "tcp_nopush", "tcp_nodelay",
               "keepalive_timeout", "keepalive_requests", "open_file_cache", "access_log")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- wrk ---------------------------------------------------------------------------------------

@dataclass
class WrkRun:
    server: str  # minipaas or plain
    target: str
    rps: float
    requests: int
    non_2xx_3xx: int
    socket_errors: int
    p50_ms: float | None
    p99_ms: float | None
    load: str


def wrk(port: int, path: str, app: str, headers: dict[str, str], *, threads: int, connections: int,
        seconds: int) -> tuple[float, int, int, int, float | None, float | None]:
    """One keep-alive wrk run on 127.0.0.1:port; (req/s, requests, non-2xx/3xx, socket errors, p50, p99)."""
    run = harness_wrk(f"http://127.0.0.1:{port}{path}", {"Host": f"{app}.{DOMAIN}", **headers}, threads=threads,
                      connections=connections, seconds=seconds)
    return run.rps, run.requests, run.non_2xx_3xx, run.socket_errors, run.p50_ms, run.p99_ms


def fetch(port: int, app: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": f"{app}.{DOMAIN}", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- the plain nginx ---------------------------------------------------------------------------

def plain_conf(front_conf: Path, prefix: Path, root: Path, port: int) -> str:
    """A plain nginx with front.conf's main/events/http settings and one minimal server."""
    text = front_conf.read_text(encoding="utf-8")
    main = [line.strip() for line in text.splitlines()
            if re.match(r"(user|worker_processes|worker_rlimit_nofile)\s", line.strip())]
    events = re.search(r"events\s*\{([^}]*)\}", text)
    if not events or "worker_connections" not in events.group(1):
        raise RuntimeError(f"{front_conf}: no events {{ worker_connections }} block to copy")
    http = text[text.index("http {"):]
    copied = []
    for line in http.splitlines()[1:]:
        if line.startswith("    ") and not line.startswith("     ") and line.strip().split(" ")[0] in COPIED_HTTP:
            directive = line.strip()
            if directive.startswith("include ") and "mime.types" not in directive:
                continue  # minipaas' own http.conf (its vhosts)
            if directive.startswith("access_log "):
                directive = re.sub(r"^access_log \S+", f"access_log {prefix}/access.log", directive)
            copied.append(directive)
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    body = "\n".join(f"    {d}" for d in copied)
    return (f"# plain nginx baseline of bench/static_sites.py (settings copied from {front_conf})\n"
            + "\n".join(main) + f"\npid {prefix}/plain.pid;\nerror_log {prefix}/error.log warn;\n\n"
            f"events {{{events.group(1).rstrip()}\n}}\n\nhttp {{\n{body}\n{temp}\n\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n        root {root};\n    }}\n}}\n")


@contextlib.contextmanager
def plain_nginx(host: BenchHost) -> Iterator[tuple[int, Path]]:
    """Start the plain nginx over a copy of the fixture; yields (port, conf path); stops it (SIGQUIT)."""
    prefix = host.work / "plain"
    root = prefix / "site"
    shutil.copytree(FIXTURE, root)
    (prefix / "tmp").mkdir()
    port = free_port()
    conf = prefix / "plain.conf"
    conf.write_text(plain_conf(host.home / "nginx" / "front.conf", prefix, root, port), encoding="utf-8")
    pid_file = prefix / "plain.pid"
    try:
        result = subprocess.run(["nginx", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"plain nginx did not start:\n{result.stderr}\n{conf.read_text()}")
        # Up once the master has forked all its workers (as many as the front's master has).
        front = nginx_masters(host.home / "nginx")
        expected = max(1, len(_workers(front[0]))) if front else 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if len(_workers(int(pid_file.read_text().strip()))) >= expected:
                    break
            time.sleep(0.02)
        log(f"plain nginx on 127.0.0.1:{port} ({conf})")
        yield port, conf
    finally:
        quit_nginx(pid_file)


# -- nginx memory ------------------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _workers(master: int) -> list[int]:
    return [c for c in _children(master) if "worker process" in _cmdline(c)]


def nginx_masters(path: Path) -> list[int]:
    """nginx masters whose command line names a file under `path`."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return sorted(pid for pid in pids
                  if (cmd := _cmdline(pid)).startswith("nginx: master process") and f"{path}/" in cmd)


def settle(masters: list[int], limit: float = 20) -> None:
    """Wait (bounded) until no worker of an older configuration is still shutting down."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any("shutting down" in _cmdline(c) for m in masters for c in _children(m)):
            return
        time.sleep(0.1)


@dataclass
class Memory:
    label: str
    processes: int
    rss_kib: int
    pss_kib: int
    load: str


def _status_kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def nginx_memory(label: str, path: Path) -> Memory:
    masters = nginx_masters(path)
    if not masters:
        raise RuntimeError(f"no nginx master runs with a configuration under {path}")
    settle(masters)
    pids = sorted({*masters, *(c for m in masters for c in _children(m))})
    rss = sum(_status_kib(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(_status_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return Memory(label, len(pids), rss, pss, load())


# -- disk --------------------------------------------------------------------------------------

def disk_usage(path: Path) -> tuple[int, int, int]:
    """(files, apparent bytes of the files, allocated bytes of everything) under path, like `du`:
    each inode once, symlinks not followed."""
    seen: set[tuple[int, int]] = set()
    files = apparent = allocated = 0
    for folder, dirs, names in os.walk(path):
        entries = [os.path.join(folder, n) for n in (*dirs, *names)]
        for entry in [folder, *entries] if folder == str(path) else entries:
            st = os.lstat(entry)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                files += 1
                apparent += st.st_size
    return files, apparent, allocated


# -- the measurements --------------------------------------------------------------------------

@dataclass
class Results:
    about: str = ""
    memory: list[Memory] = field(default_factory=list)
    runs: list[WrkRun] = field(default_factory=list)
    responses: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> server -> description
    sites: int = 0
    create_seconds: list[float] = field(default_factory=list)
    push_seconds: list[float] = field(default_factory=list)
    served_seconds: list[float] = field(default_factory=list)
    pushes_wall: float = 0.0
    destroy_wall: float = 0.0
    containers: int = -1
    images: int = -1
    answered: int = 0
    css_answered: int = 0
    static_disk: tuple[int, int, int] = (0, 0, 0)
    repos_disk: tuple[int, int, int] = (0, 0, 0)
    vhosts: int = 0
    loads: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def push_site(host: BenchHost, checkout: Path, app: str, marker: str) -> tuple[float, float]:
    push = timed_push(checkout, "master", env=host.env, port=host.port, app=app, marker=marker, serve_timeout=30)
    if push.returncode != 0 or push.served is None:
        raise RuntimeError(f"push of {app} failed or was never served:\n{push.text}")
    return push.seconds, push.served


def throughput(host: BenchHost, results: Results, *, runs: int, seconds: int, threads: int, connections: int) -> None:
    app = host.create_app("page")
    checkout = host.checkout(app, FIXTURE)
    commit(checkout, "the fixture as it is")
    push_site(host, checkout, app, PAGE_TITLE)
    with plain_nginx(host) as (plain_port, _conf):
        results.memory.append(nginx_memory("plain nginx (reference: 1 master, same settings)", host.work / "plain"))
        servers = {"minipaas": host.port, "plain": plain_port}
        for label, path, headers in TARGETS:
            results.responses[label] = {}
            for server, port in servers.items():
                status, got, body = fetch(port, app, path, headers)
                if status != 200:
                    raise RuntimeError(f"{server} answered {status} for {path}")
                enc = got.get("content-encoding", "")
                results.responses[label][server] = f"{len(body)} B{' ' + enc if enc else ''}"
        for port in servers.values():  # warm-up: first connections, page cache, worker start-up
            wrk(port, "/", app, {}, threads=threads, connections=connections, seconds=2)
        for n in range(runs):
            for label, path, headers in TARGETS:
                order = list(servers.items()) if n % 2 == 0 else list(reversed(servers.items()))
                for server, port in order:
                    now = load()
                    rps, requests, bad, errors, p50, p99 = wrk(port, path, app, headers, threads=threads,
                                                               connections=connections, seconds=seconds)
                    results.runs.append(WrkRun(server, label, rps, requests, bad, errors, p50, p99, now))
                    log(f"run {n + 1}: {server:8} {label}: {rps:.0f} req/s (load {now})")
    host.destroy_app(app)


def many_sites(host: BenchHost, results: Results, count: int) -> None:
    created: list[tuple[str, Path]] = []
    for _ in range(count):
        started = time.monotonic()
        app = host.create_app("site")
        results.create_seconds.append(time.monotonic() - started)
        checkout = host.checkout(app, FIXTURE)
        index = checkout / "index.html"
        index.write_text(index.read_text(encoding="utf-8").replace(PAGE_TITLE, f"{PAGE_TITLE} of {app}"),
                         encoding="utf-8")
        commit(checkout, f"the site of {app}")
        created.append((app, checkout))
    log(f"{count} apps created; pushing them one after the other")
    results.loads["before the pushes"] = load()
    started = time.monotonic()
    for i, (app, checkout) in enumerate(created, 1):
        pushed, served = push_site(host, checkout, app, f"{PAGE_TITLE} of {app}")
        results.push_seconds.append(pushed)
        results.served_seconds.append(served)
        if i % 10 == 0:
            log(f"{i} sites pushed (load {load()})")
    results.pushes_wall = time.monotonic() - started
    results.sites = count
    results.loads["after the pushes"] = load()
    home = str(host.home)
    results.containers = len(docker("ps", "-aq", "--filter", f"label=minipaas={home}").split())
    results.images = len(docker("images", "-q", "--filter", f"label=minipaas={home}").split())
    results.memory.append(nginx_memory(f"minipaas front + router, {count} static sites", host.home))
    results.vhosts = len(list((host.home / "nginx" / "sites").glob("*.conf")))
    for app, _checkout in created:
        status, _, body = fetch(host.port, app, "/")
        if status == 200 and f"{PAGE_TITLE} of {app}".encode() in body:
            results.answered += 1
        else:
            results.notes.append(f"{app}: GET / answered {status} {body[:80]!r}")
        if fetch(host.port, app, CSS)[0] == 200:
            results.css_answered += 1
    results.static_disk = disk_usage(host.home / "static")
    results.repos_disk = disk_usage(host.home / "repos")
    started = time.monotonic()
    for app, _checkout in created:
        host.destroy_app(app)
    results.destroy_wall = time.monotonic() - started
    log(f"{count} sites destroyed in {results.destroy_wall:.1f}s")
    # As many reloads behind it as the 50-site figure: what stays once the sites are gone.
    results.memory.append(nginx_memory(f"minipaas front + router, 0 apps again (after the {count} were destroyed)",
                                       host.home))


# -- report ------------------------------------------------------------------------------------

def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _med(values: list[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(statistics.median(values)) if values else "-"


def report(r: Results, args: argparse.Namespace, argv: list[str]) -> str:
    out = [f"static sites, {time.strftime('%Y-%m-%d %H:%M %Z')}; {r.about}",
           f"command: {' '.join(argv)}",
           "load average (1/5/15 min): " + "; ".join(f"{k} {v}" for k, v in r.loads.items()), ""]
    if r.runs:
        out += [f"Requests/s, one static page, wrk -t{args.threads} -c{args.connections} -d{args.seconds}s "
                f"keep-alive, {args.runs} runs each (interleaved), median [min–max]:", "",
                "| request | response minipaas / plain | minipaas req/s | plain nginx req/s | ratio minipaas/plain "
                "| p99 ms minipaas / plain | failed |",
                "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
        for label, _path, _headers in TARGETS:
            m = [x for x in r.runs if x.target == label and x.server == "minipaas"]
            p = [x for x in r.runs if x.target == label and x.server == "plain"]
            if not m or not p:
                continue
            mr, pr = [x.rps for x in m], [x.rps for x in p]
            failed = sum(x.non_2xx_3xx + x.socket_errors for x in m + p)
            resp = r.responses.get(label, {})
            out.append(
                f"| {label} | {resp.get('minipaas', '?')} / {resp.get('plain', '?')} "
                f"| {statistics.median(mr):.0f} [{min(mr):.0f}–{max(mr):.0f}] "
                f"| {statistics.median(pr):.0f} [{min(pr):.0f}–{max(pr):.0f}] "
                f"| {statistics.median(mr) / statistics.median(pr):.2f} "
                f"| {_med([x.p99_ms for x in m if x.p99_ms is not None], '{:.1f}')} / "
                f"{_med([x.p99_ms for x in p if x.p99_ms is not None], '{:.1f}')} | {failed} |")
        loads = sorted({float(x.load.split()[0]) for x in r.runs})
        out += ["", f"1-minute load average when the wrk runs started: {loads[0]:.2f}–{loads[-1]:.2f}", ""]
    if r.sites:
        s_files, s_apparent, s_alloc = r.static_disk
        _, r_apparent, r_alloc = r.repos_disk
        ok = r.answered == r.sites and r.containers == 0
        out += [f"{r.sites} static sites (copies of tests/apps/static-site, the app's name in the page), "
                "pushed one after the other:", "",
                "| measurement | value |", "| --- | ---: |",
                f"| containers of the home (`docker ps -a --filter label=minipaas=HOME`) | {r.containers} |",
                f"| images of the home (`docker images --filter label=minipaas=HOME`) | {r.images} |",
                f"| vhosts in HOME/nginx/sites | {r.vhosts} |",
                f"| sites answering GET / 200 with their own page through nginx | {r.answered}/{r.sites} |",
                f"| sites answering their CSS asset 200 | {r.css_answered}/{r.sites} |",
                f"| pushes, all {r.sites} back to back (s) | {r.pushes_wall:.1f} |",
                f"| push, `git push` until it exits, median [min–max] (s) | {_med(r.push_seconds)} "
                f"[{min(r.push_seconds):.2f}–{max(r.push_seconds):.2f}] |",
                f"| push until the page is served, median (s) | {_med(r.served_seconds)} |",
                f"| `apps:create`, median (s) | {_med(r.create_seconds)} |",
                f"| `apps:destroy --force` of all {r.sites} (s) | {r.destroy_wall:.1f} |",
                f"| disk under HOME/static: files, apparent / allocated | {s_files} files, "
                f"{s_apparent / 1024:.0f} KiB / {s_alloc / 1024:.0f} KiB |",
                f"| allocated per site under HOME/static | {s_alloc / 1024 / r.sites:.1f} KiB |",
                f"| for comparison, the bare repos under HOME/repos (apparent / allocated) | "
                f"{r_apparent / 1024:.0f} KiB / {r_alloc / 1024:.0f} KiB |",
                "",
                f"{r.sites} sites, no container and every site served: {'MET' if ok else 'MISSED'}", ""]
    if r.memory:
        out += ["nginx memory (masters + workers; RSS counts shared pages once per process, PSS splits them):", "",
                "| nginx | processes | VmRSS sum MiB | PSS sum MiB | load at measurement |",
                "| --- | ---: | ---: | ---: | --- |"]
        out += [f"| {m.label} | {m.processes} | {_mib(m.rss_kib)} | {_mib(m.pss_kib)} | {m.load} |" for m in r.memory]
        zero = next((m for m in r.memory if m.label.startswith("minipaas front + router, 0")), None)
        many = next((m for m in r.memory if m.label.startswith(f"minipaas front + router, {r.sites} ")), None)
        again = next((m for m in r.memory if m.label.startswith("minipaas front + router, 0 apps again")), None)
        if zero and many and r.sites:
            out += ["", f"{r.sites} sites: {_mib(many.rss_kib - zero.rss_kib)} MiB more RSS and "
                        f"{_mib(many.pss_kib - zero.pss_kib)} MiB more PSS than right after init"
                    + (f"; once they were destroyed (as many reloads behind), {_mib(many.rss_kib - again.rss_kib)} MiB "
                       f"RSS and {_mib(many.pss_kib - again.pss_kib)} MiB PSS of that went away "
                       f"({(many.pss_kib - again.pss_kib) / r.sites:.0f} KiB PSS per site)." if again else ".")]
    if r.notes:
        out += ["", "notes:"] + [f"- {n}" for n in r.notes]
    return "\n".join(out)


def _sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the cleanup of bench_host and plain_nginx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per server and request (default 3)")
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run (default 8, at most 60)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections (default 32)")
    parser.add_argument("--sites", type=int, default=50,
                        help="static sites to create and push (default 50, at most 500)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the many-sites part")
    parser.add_argument("--json", type=Path, help="also write every measurement there")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) for inspection")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_throughput:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if not (1 <= args.runs <= 20 and 1 <= args.seconds <= 60 and 0 <= args.sites <= 500):
        parser.error("--runs 1..20, --seconds 1..60, --sites 0..500")
    signal.signal(signal.SIGTERM, _sigterm)
    results = Results(about=machine())
    results.loads["start"] = load()
    with bench_host(keep=args.keep) as host:
        results.memory.append(nginx_memory("minipaas front + router, 0 apps (after init)", host.home))
        if not args.skip_throughput:
            throughput(host, results, runs=args.runs, seconds=args.seconds, threads=args.threads,
                       connections=args.connections)
            results.loads["after the wrk runs"] = load()
        if args.sites:
            many_sites(host, results, args.sites)
    results.loads["end"] = load()
    argv = ["python", "bench/static_sites.py", *sys.argv[1:]]
    print(report(results, args, argv))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
