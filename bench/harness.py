"""Shared by the benchmarks: an isolated minipaas host, git checkouts, timed pushes, stats.

The host is set up the way tests/helpers/host.py does it: a temp MINIPAAS_HOME, a private nginx on a
free loopback port, MINIPAAS_DOMAIN=paas.test, driven through the real CLI and real `git push`.
Everything it creates (apps, containers, images, nginx masters, the temp dir) goes on `close()`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello"
CA = Path("/etc/ssl/certs/ca-certificates.crt")
DOMAIN = "paas.test"
GIT_USER = ("-c", "user.name=bench", "-c", "user.email=bench@minipaas.test")
# server.js of examples/hello answers "<greeting> from minipaas (node vX)"; the marker goes after "minipaas".
_MARKER_RE = re.compile(r"from minipaas( \[[^\]]*\])? \(")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quit_nginx(pid_file: Path, wait: float = 10) -> None:
    """Stop the nginx master of that pid file gracefully (SIGQUIT) and wait until it is gone; none: nothing."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + wait
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def run(args: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True, timeout: float = 900, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run a program (argument list, never a shell); text output; AssertionError with its output on failure."""
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, timeout=timeout, input=input_bytes)
    out = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                      result.stderr.decode(errors="replace"))
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def docker(*args: str, check: bool = True, timeout: float = 900) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout


def git(path: Path, *args: str) -> str:
    return run(["git", *GIT_USER, *args], cwd=path).stdout


def commit(path: Path, message: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


def new_marker() -> str:
    return uuid.uuid4().hex[:12]


def set_marker(checkout: Path, marker: str) -> None:
    """Change server.js so that GET / answers with `marker` in its text (a source-only change)."""
    server = checkout / "server.js"
    text, count = _MARKER_RE.subn(f"from minipaas [{marker}] (", server.read_text(encoding="utf-8"), count=1)
    if count != 1:
        raise RuntimeError(f"{server}: no 'from minipaas (' text to put a marker in")
    server.write_text(text, encoding="utf-8")


def bust_dependencies(checkout: Path) -> None:
    """Give package.json a unique description: the `COPY package.json ...` layer and `npm ci` after it rerun."""
    path = checkout / "package.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["description"] = f"minipaas benchmark {uuid.uuid4()}"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def median_min_max(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


# -- timed pushes --------------------------------------------------------------------------

@dataclass
class Push:
    """One `git push`, its output lines with arrival times (seconds since the push started)."""

    returncode: int
    seconds: float  # until `git push` exited
    served: float | None  # until GET / through nginx first answered 200 with the marker
    lines: list[tuple[float, str]]

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, needle: str) -> float | None:
        for at, line in self.lines:
            if needle in line:
                return at
        return None


def _strip_remote(line: str) -> str:
    return line.removeprefix("remote:").replace("\x1b[K", "").strip()


class Poller(threading.Thread):
    """Polls GET / (a new connection each time, as a first visitor would) until `marker` is served."""

    def __init__(self, port: int, host_header: str, marker: str, started: float, interval: float = 0.01,
                 address: str = "127.0.0.1") -> None:
        super().__init__(daemon=True)
        self.port, self.host_header, self.marker, self.started = port, host_header, marker, started
        self.interval, self.address = interval, address
        self.served: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.address, self.port, timeout=2)
            try:
                conn.request("GET", "/", headers={"Host": self.host_header, "Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                if resp.status == 200 and self.marker in body:
                    self.served = time.monotonic() - self.started
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            self.stop.wait(self.interval)


def timed_push(checkout: Path, refspec: str, *, env: dict[str, str], port: int = 0, app: str = "",
               marker: str | None = None, serve_timeout: float = 60) -> Push:
    """`git push paas <refspec>`, timing each output line; with a marker, also when nginx serves it."""
    started = time.monotonic()
    poller = Poller(port, f"{app}.{DOMAIN}", marker, started) if marker else None
    if poller:
        poller.start()
    proc = subprocess.Popen(["git", "push", "paas", refspec], cwd=checkout, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    buffer = b""
    while True:
        chunk = proc.stdout.read1(65536)
        now = time.monotonic() - started
        if not chunk:
            break
        buffer += chunk
        parts = re.split(rb"[\r\n]", buffer)
        buffer = parts.pop()
        lines.extend((now, _strip_remote(p.decode(errors="replace"))) for p in parts if p.strip())
    if buffer.strip():
        lines.append((time.monotonic() - started, _strip_remote(buffer.decode(errors="replace"))))
    returncode = proc.wait()
    seconds = time.monotonic() - started
    served = None
    if poller:
        if returncode == 0:
            poller.join(serve_timeout)
        poller.stop.set()
        poller.join(5)
        served = poller.served
    return Push(returncode, seconds, served, lines)


# -- the host ------------------------------------------------------------------------------

@dataclass
class BenchHost:
    home: Path
    work: Path
    port: int
    env: dict[str, str]
    keep: bool = False
    apps: list[str] = field(default_factory=list)
    network_created: bool = False

    @property
    def settings_network(self) -> str:
        return self.env.get("MINIPAAS_NETWORK", "minipaas")

    def cli(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "minipaas", *args], env=self.env, check=check, timeout=timeout)

    def create_app(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.cli("apps:create", name)
        self.apps.append(name)
        return name

    def checkout(self, app: str, source: Path = EXAMPLE) -> Path:
        path = self.work / f"{app}-src"
        shutil.copytree(source, path, ignore=shutil.ignore_patterns("node_modules"))
        git(path, "init", "-q", "-b", "master")
        git(path, "remote", "add", "paas", str(self.home / "repos" / f"{app}.git"))
        return path

    def push(self, checkout: Path, refspec: str = "master") -> None:
        run(["git", "push", "-q", "paas", refspec], cwd=checkout, env=self.env)

    def get(self, app: str, path: str = "/") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": f"{app}.{DOMAIN}"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def web_containers(self, app: str) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=minipaas={self.home}", "--filter",
                      f"label=minipaas.app={app}", "--filter", "label=minipaas.process=web").split()

    def wait_retired(self, app: str, timeout: float = 60) -> bool:
        """Wait until only the live web container is left (the background retirement is done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.web_containers(app)) <= 1:
                return True
            time.sleep(0.25)
        return False

    def destroy_app(self, app: str) -> None:
        self.cli("apps:destroy", app, "--force", check=False)
        if app in self.apps:
            self.apps.remove(app)

    def close(self) -> None:
        for app in list(self.apps):
            self.destroy_app(app)
        for container in docker("ps", "-aq", "--filter", f"label=minipaas={self.home}", check=False).split():
            docker("rm", "-f", container, check=False)
        for pid_file in (self.home / "nginx" / "run").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGQUIT)  # graceful stop
        if self.network_created:
            docker("network", "rm", self.settings_network, check=False)  # fails (fine) while others use it
        if not self.keep:
            time.sleep(0.5)  # let the nginx masters go before their files do
            shutil.rmtree(self.home.parent, ignore_errors=True)


@contextlib.contextmanager
def bench_host(*, keep: bool = False) -> Iterator[BenchHost]:
    """An initialised, isolated minipaas host; torn down on exit (also on errors and Ctrl-C)."""
    try:
        import docker  # noqa: F401

        import minipaas.cli  # noqa: F401
    except ImportError:
        raise SystemExit("minipaas is not importable: run with /opt/minipaas/venv/bin/python") from None
    # Short (the router's unix socket path is limited), and passable by nginx's www-data workers:
    # /tmp/tmpXXX folders are 0700, so the home lives in a 0711 folder of /var/tmp (as in the tests).
    top = Path(tempfile.mkdtemp(prefix="mpbench-", dir="/var/tmp"))
    top.chmod(0o711)
    home, work = top / "home", top / "work"
    work.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "MINIPAAS_HOME": str(home),
        "MINIPAAS_NGINX": "private",
        "MINIPAAS_HTTP_PORT": str(port),
        "MINIPAAS_DOMAIN": DOMAIN,
        # The metrics' Prometheus port is one per host (README): the host's own instance may hold 9145.
        "MINIPAAS_METRICS_PORT": str(free_port()),
        "GIT_TERMINAL_PROMPT": "0",
        # MINIPAAS_BENCH_CODE: measure another checkout's minipaas with this bench (another design).
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("MINIPAAS_BENCH_CODE", ""), str(ROOT),
                                                  os.environ.get("PYTHONPATH", "")) if p),
        # The host's builder (BuildKit where its Docker has it) unless MINIPAAS_BUILDER says otherwise.
        "MINIPAAS_BUILDER": os.environ.get("MINIPAAS_BUILDER", "auto"),
    }
    if CA.exists():
        env["MINIPAAS_BUILD_CA"] = str(CA)
    network = env.get("MINIPAAS_NETWORK", "minipaas")
    existed = run(["docker", "network", "inspect", network], check=False).returncode == 0
    host = BenchHost(home=home, work=work, port=port, env=env, keep=keep, network_created=not existed)
    try:
        host.cli("init")
        log(f"minipaas host in {home}, private nginx on 127.0.0.1:{port}")
        yield host
    finally:
        log("cleaning up: apps, containers, nginx masters" + ("" if keep else ", temp dir"))
        host.close()


def machine() -> str:
    """A one-line description of this machine for the report."""
    cpus = os.cpu_count() or 0
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = "?"
    engine = docker("version", "--format", "{{.Server.Version}}", check=False).strip() or "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpus} CPUs, Debian {debian}, Docker engine {engine}, load average at start {load}"


def table_row(name: str, values: Sequence[float], ratio_text: str = "") -> str:
    """One Markdown row: median, min, max and count of `values` (seconds), and an optional ratio."""
    if not values:
        return f"| {name} | - | - | - | 0 | {ratio_text} |"
    med, low, high = median_min_max(values)
    return f"| {name} | {med:.2f} | {low:.2f} | {high:.2f} | {len(values)} | {ratio_text} |"


def phase_durations(push: Push, spans: Sequence[tuple[str, str | None, str | None]]) -> list[float | None]:
    """Seconds between the first lines matching each span's start and end marks (None: push start/end)."""
    out: list[float | None] = []
    for _name, start, end in spans:
        t0 = 0.0 if start is None else push.first(start)
        t1 = push.seconds if end is None else push.first(end)
        out.append(None if t0 is None or t1 is None else t1 - t0)
    return out



# -- wrk -----------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float
    requests: int
    non_2xx_3xx: int
    socket_errors: int
    p50_ms: float | None
    p99_ms: float | None


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS_MS[match.group(2)] if match else None


def wrk(url: str, headers: dict[str, str], *, threads: int, connections: int, seconds: int,
        script: Path | None = None) -> WrkResult:
    """One wrk run (keep-alive unless the headers say `Connection: close`), with its latency percentiles."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    result = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    done = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if result.returncode != 0 or not done or not rps:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{out}\n{result.stderr}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    pct = dict(re.findall(r"^\s*(\d+)%\s+(\S+)", out, re.M))
    return WrkResult(float(rps.group(1)), int(done.group(1)), int(non2xx.group(1)) if non2xx else 0,
                     sum(int(g) for g in errors.groups()) if errors else 0,
                     _ms(pct["50"]) if "50" in pct else None, _ms(pct["99"]) if "99" in pct else None)
