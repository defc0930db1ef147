"""What bench/scale.py is made of: the tiny apps it pushes, wrk across many apps, a plain nginx with many
apps routed, and the memory, disk and engine counters it reads.

Pure text where it can be (the sources, the wrk script, the plain nginx's configuration); the rest reads
/proc, the engine and the files of the bench's own home.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy_under_load import parse_wrk, stop_wrk
from harness import ROOT, commit, docker, free_port, git, log, quit_nginx
from static_sites import _status_kib, nginx_masters, settle

STATIC_FIXTURE = ROOT / "tests" / "apps" / "static-site"
MARKDOWN_FIXTURE = ROOT / "tests" / "apps" / "markdown-docs"

# A tiny container app: Node's own http module, no dependency. It answers `<marker> <Host>`, so that a poller
# sees which release serves and a check sees which app answered.
TINY_SERVER = """\
// A tiny app of bench/scale.py: answers "<marker> <host>" on every path.
const http = require("http");
const MARKER = "{marker}";
const server = http.createServer((req, res) => {{
  res.setHeader("Content-Type", "text/plain");
  res.end(`${{MARKER}} ${{req.headers.host || ""}}\\n`);
}});
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
"""
TINY_PACKAGE = {"name": "tiny", "version": "1.0.0", "private": True, "scripts": {"start": "node server.js"}}
TINY_LOCK = {"name": "tiny", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
             "packages": {"": {"name": "tiny", "version": "1.0.0"}}}
# A build step that keeps `threads` CPUs busy for `seconds` (worker threads), whatever it is given: how much of
# the host it takes is up to the build's CPU limit. The marker makes each build run it again.
BURN = """\
// bench/scale.py's build step ({marker}): {threads} busy threads for {seconds} s.
const {{ Worker, isMainThread }} = require("worker_threads");
const end = Date.now() + {seconds} * 1000;
if (isMainThread) {{
  for (let i = 1; i < {threads}; i++) new Worker(__filename);
}}
let x = 0;
while (Date.now() < end) x += Math.sqrt(x + 1);
"""


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def tiny_source(path: Path, marker: str) -> Path:
    """A git checkout of the tiny app on `master`; no remote (pushes name the repository)."""
    path.mkdir(parents=True)
    (path / "server.js").write_text(TINY_SERVER.format(marker=marker), encoding="utf-8")
    write_json(path / "package.json", TINY_PACKAGE)
    write_json(path / "package-lock.json", TINY_LOCK)
    git(path, "init", "-q", "-b", "master")
    commit(path, "a tiny app")
    return path


def set_tiny_marker(path: Path, marker: str) -> None:
    (path / "server.js").write_text(TINY_SERVER.format(marker=marker), encoding="utf-8")


def burn_commit(path: Path, marker: str, *, threads: int, seconds: int) -> None:
    """The tiny app with a build script that burns CPU (on the checkout's current branch)."""
    (path / "burn.js").write_text(BURN.format(marker=marker, threads=threads, seconds=seconds), encoding="utf-8")
    write_json(path / "package.json", {**TINY_PACKAGE, "scripts": {**TINY_PACKAGE["scripts"], "build": "node burn.js"}})
    set_tiny_marker(path, marker)
    commit(path, f"burn {marker}")


def fixture_source(path: Path, fixture: Path) -> Path:
    """A git checkout of a fixture (a static or a Markdown site) on `master`."""
    import shutil

    shutil.copytree(fixture, path)
    git(path, "init", "-q", "-b", "master")
    commit(path, f"the {fixture.name} fixture")
    return path


# -- wrk across many apps ------------------------------------------------------------------

def hosts_script(hosts: Sequence[str], *, count_failures: bool) -> str:
    """A wrk script that sends GET / with each request's Host header the next of `hosts` (each thread starts
    at another place). `count_failures`: also note the status of the first answers that were not 2xx/3xx, as
    `-- failed: STATUS` lines of wrk's output (a callback per response: slower, not for throughput). wrk does
    not say which request an answer belongs to: `AppPoller` says which apps failed."""
    names = ",\n".join(f'  "{h}"' for h in hosts)
    out = [f"-- bench/scale.py: GET / across {len(hosts)} apps, one Host after another", "local hosts = {", names, "}",
           "local i = 0", "local threads = {}",
           'setup = function(thread) table.insert(threads, thread); thread:set("offset", #threads * 7) end',
           "init = function(args) i = offset or 0 end",
           "request = function()", "  i = i % #hosts + 1",
           '  return wrk.format("GET", "/", { Host = hosts[i] })', "end"]
    if count_failures:
        out += ['failed = ""', "nfailed = 0",
                "response = function(status, headers, body)",
                "  if status >= 400 then",
                "    nfailed = nfailed + 1",
                '    if nfailed <= 20 then failed = failed .. "-- failed: " .. status .. "\\n" end',
                "  end", "end",
                "done = function(summary, latency, requests)",
                '  for _, thread in ipairs(threads) do io.write(thread:get("failed") or "") end', "end"]
    return "\n".join(out) + "\n"


@dataclass
class Load:
    """One wrk run's summary (deploy_under_load.parse_wrk) and the hosts that failed, if counted."""

    requests: int
    non_2xx_3xx: int
    socket_errors: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    seconds: float
    failed_lines: list[str]
    load: str

    @property
    def failed(self) -> int:
        return self.non_2xx_3xx + self.socket_errors


def _load(output: str, load: str) -> Load:
    got = parse_wrk(output)
    return Load(int(got["requests"]), int(got["non_2xx_3xx"]),  # type: ignore[call-overload]
                sum(int(got[k]) for k in ("connect", "read", "write", "timeout")),  # type: ignore[call-overload]
                float(got["rps"]), got["p50_ms"], got["p99_ms"], float(got["seconds"]),  # type: ignore[arg-type]
                [line[len("-- failed: "):] for line in output.splitlines() if line.startswith("-- failed: ")],
                load)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Wrk:
    """wrk through 127.0.0.1:port across many apps, until `stop()` (SIGINT: wrk prints its summary)."""

    def __init__(self, port: int, script: Path, *, threads: int = 1, connections: int = 16,
                 max_seconds: int = 600) -> None:
        self.load_at_start = loadavg()
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max_seconds}s", "--timeout", "5s", "--latency",
             "-s", str(script), f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> Load:
        output, _ended = stop_wrk(self.proc)
        return _load(output, self.load_at_start)


def wrk_for(port: int, script: Path, seconds: float, *, threads: int = 1, connections: int = 16) -> Load:
    runner = Wrk(port, script, threads=threads, connections=connections, max_seconds=int(seconds) + 30)
    time.sleep(seconds)
    return runner.stop()


# -- a plain nginx with many apps ------------------------------------------------------------

def plain_conf(front_conf: Path, prefix: Path, port: int, routes: dict[str, str]) -> str:
    """A hand-written reverse proxy for many apps (host name → one container address): front.conf's main and
    events settings, a server and an upstream with keep-alive per app, as bench/proxy_overhead.py has for one."""
    text = front_conf.read_text(encoding="utf-8")
    main = [line.strip() for line in text.splitlines()
            if re.match(r"(user|worker_processes|worker_rlimit_nofile)\s", line.strip())]
    events = re.search(r"events\s*\{([^}]*)\}", text)
    if not events:
        raise RuntimeError(f"{front_conf}: no events block to copy")
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    apps = []
    for n, (host, address) in enumerate(sorted(routes.items())):
        apps.append(f"""    upstream app{n} {{
        server {address};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name {host};
        location / {{
            proxy_pass http://app{n};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}""")
    return f"""# plain nginx baseline of bench/scale.py: {len(routes)} apps
{chr(10).join(main)}
pid {prefix}/plain.pid;
error_log {prefix}/error.log warn;
events {{{events.group(1).rstrip()}
}}
http {{
    access_log off;
    server_names_hash_bucket_size 256;
{temp}
{chr(10).join(apps)}
}}
"""


@contextlib.contextmanager
def plain_nginx(work: Path, front_conf: Path, routes: dict[str, str]) -> Iterator[int]:
    """A plain nginx routing each host name to its address; yields its port; stopped (SIGQUIT) after."""
    prefix = work / "plain"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "plain.conf"
    conf.write_text(plain_conf(front_conf, prefix, port, routes), encoding="utf-8")
    result = subprocess.run(["nginx", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"plain nginx did not start:\n{result.stderr}")
    pid_file = prefix / "plain.pid"
    try:
        yield port
    finally:
        quit_nginx(pid_file)


# -- memory, disk, the engine ----------------------------------------------------------------

@dataclass
class Memory:
    what: str
    processes: int
    rss_mib: float
    pss_mib: float


def process_memory(what: str, pids: Sequence[int]) -> Memory:
    rss = sum(_status_kib(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(_status_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return Memory(what, len(pids), rss / 1024, pss / 1024)


def nginx_memory(home: Path) -> Memory:
    masters = nginx_masters(home)
    settle(masters)
    children = []
    for master in masters:
        with contextlib.suppress(OSError):
            children += [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    return process_memory("nginx (master and workers)", sorted({*masters, *children}))


def watcher_memory(home: Path) -> Memory:
    try:
        pid = int((home / "nginx" / "run" / "watch.pid").read_text().strip())
    except (OSError, ValueError):
        return Memory("watcher (not running)", 0, 0.0, 0.0)
    return process_memory("watcher (`minipaas watch`)", [pid])


_SIZE = re.compile(r"([\d.]+)\s*([KMG]i?B|B)")
_UNIT_MIB = {"B": 1 / 2**20, "KiB": 1 / 1024, "KB": 1 / 1024, "MiB": 1.0, "MB": 1.0, "GiB": 1024.0, "GB": 1024.0}


def container_memory_mib(containers: Sequence[str]) -> list[float]:
    """Each container's memory as `docker stats` counts it (without the page cache)."""
    out: list[float] = []
    for start in range(0, len(containers), 100):
        text = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", *containers[start:start + 100],
                      check=False, timeout=300)
        for line in text.splitlines():
            match = _SIZE.match(line.strip())
            if match:
                out.append(float(match.group(1)) * _UNIT_MIB[match.group(2)])
    return out


def home_containers(home: Path, *, running: bool = True) -> list[str]:
    return docker("ps", *([] if running else ["-a"]), "-q", "--filter", f"label=minipaas={home}").split()


def du_bytes(path: Path) -> int:
    """Allocated bytes under path, each inode once, links not followed (as `du`)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, names in os.walk(path):
        for entry in [folder, *(os.path.join(folder, n) for n in (*dirs, *names))]:
            st = os.lstat(entry)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def counter(command: Sequence[str]) -> int | None:
    """Lines a command prints (iptables rules, neighbours), None when it cannot run."""
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return len(result.stdout.splitlines()) if result.returncode == 0 else None


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return "?"


def timed(args: Sequence[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(list(args), env=env, capture_output=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr.decode(errors='replace')}")
    return time.monotonic() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_quiet(limit: float, *, for_seconds: float = 60, give_up: float = 1800) -> str:
    """Wait until the 1-minute load average stays under `limit` for `for_seconds` (at most `give_up`
    seconds); returns the load average then, marked when the machine never got quiet."""
    if limit <= 0:
        return loadavg()
    started = time.monotonic()
    quiet_since: float | None = None
    if os.getloadavg()[0] >= limit:
        log(f"waiting for the 1-minute load average to stay under {limit} for {for_seconds:.0f} s (now {loadavg()})")
    while time.monotonic() - started < give_up:
        if os.getloadavg()[0] < limit:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= for_seconds:
                return loadavg()
        else:
            quiet_since = None
        time.sleep(2)
    log(f"the load average stayed above {limit} for {give_up:.0f} s: measuring anyway")
    return loadavg() + " (not quiet)"
