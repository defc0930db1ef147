#!/usr/bin/env python3
"""The dashboard's costs (issue 21), on a home of its own with SQLite rows (no engine, no nginx):

  apps page    100 apps, each with 2 review apps (300 in all, 3 releases each), as an admin: the server's time
               for GET / through the whole Starlette app (TestClient, in process: routing, the guard, the
               session and key lookup, `views.apps_rows`, the template), median and 95th percentile of --requests;
  idle memory  the real process (`minipaas dashboard`, uvicorn on its unix socket): its resident set (VmRSS)
               after the apps page, and after each page kind once and 2 s idle;
  push line    a line appended to a push's log (deploy/pushlog.py, as the hook writes it) until it arrives at a
               client following /apps/<app>/push/stream over the socket: median of --lines.
  app log line with --log-lines N (needs the engine: a real host from bench/harness.py, one push of
               examples/hello with a route that prints `said <n> <its wall clock in ms>` to stdout): a client
               follows /apps/<app>/logs/stream through the host's nginx (`dashboard.paas.test`, logged in by a
               link of `dashboard:login --key`), the app is asked to print N lines 0.2 s apart, and each line's
               arrival (wall clock, the same kernel's) is compared with the time the app wrote into it.

    /opt/minipaas/venv/bin/python bench/dashboard.py [--requests 50] [--lines 20] [--log-lines 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from minipaas.access import sessions  # noqa: E402
from minipaas.access.access import Principal  # noqa: E402
from minipaas.dashboard import web  # noqa: E402
from minipaas.deploy import pushlog  # noqa: E402
from minipaas.progress import Lines  # noqa: E402
from minipaas.state import store  # noqa: E402
from minipaas.state.host import Host  # noqa: E402
from minipaas.state.settings import load  # noqa: E402

APPS, REVIEWS, RELEASES = 100, 2, 3


def make_home(top: Path) -> tuple[dict[str, str], Host, Principal]:
    home = top / "home"
    (home / "nginx" / "run").mkdir(parents=True)
    env = {**os.environ, "MINIPAAS_HOME": str(home), "MINIPAAS_DOMAIN": "paas.test", "MINIPAAS_NGINX": "private",
           "MINIPAAS_AUTHORIZED_KEYS": str(top / "authorized_keys")}
    host = Host(load(env))
    fp = "SHA256:" + "A" * 43
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) "
                   "VALUES ('alice', 'admin', ?, 'ssh-ed25519', 'AAAA', ?)", (fp, store.now()))
        for i in range(APPS):
            names = [(f"app-{i:03d}", None, None)] + [
                (f"app-{i:03d}--branch-{j}", f"app-{i:03d}", f"feature/{j}") for j in range(REVIEWS)]
            for name, parent, branch in names:
                db.execute("INSERT INTO apps (name, created_at, parent, branch, pushed_at, life) "
                           "VALUES (?, ?, ?, ?, ?, 'x')", (name, store.now(), parent, branch, store.now()))
                for n in range(1, RELEASES + 1):
                    db.execute("INSERT INTO releases (app, number, kind, sha, buildpack, status, pusher, created_at, "
                               "tests) VALUES (?, ?, 'build', ?, 'node', ?, 'alice', ?, 'passed')",
                               (name, n, f"{n:07d}abcdef", "live" if n == RELEASES else "superseded", store.now()))
    return env, host, Principal("alice", "admin", fp, frozenset())


def apps_page(host: Host, who: Principal, requests: int) -> dict[str, float]:
    client = TestClient(web.create_app(host.settings), base_url="http://dashboard.paas.test")
    client.get(f"/login/{sessions.mint_link(host, who)}")
    client.get("/")  # templates compiled, connections opened
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get("/")
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200 and response.text.count('data-app="') == APPS * (1 + REVIEWS)
    times.sort()
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(len(times) * 0.95) - 1], 1)}


def process(env: dict[str, str], host: Host, who: Principal, lines: int) -> dict[str, float]:
    socket_path = host.settings.nginx_dir / "dashboard" / "dashboard.sock"
    child = subprocess.Popen([sys.executable, "-m", "minipaas", "dashboard"], env={**env, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)),
                              base_url="http://dashboard.paas.test", timeout=30)
        client.get(f"/login/{sessions.mint_link(host, who)}")
        client.get("/")
        time.sleep(1)
        first = rss_mb(child.pid)
        for path in ("/", "/apps/app-000", "/apps/app-000/push", "/static/dashboard.css", "/nope"):
            client.get(path)
        latencies = push_latency(client, host, lines)
        time.sleep(2)
        return {"apps_page_only_rss_mb": first, "idle_rss_mb": rss_mb(child.pid),
                "push_line_median_ms": round(statistics.median(latencies), 1),
                "push_line_max_ms": round(max(latencies), 1)}
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=10)


def rss_mb(pid: int) -> float:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return round(rss / 1024, 1)


def push_latency(client: httpx.Client, host: Host, lines: int) -> list[float]:
    log = pushlog.start(host.settings, "app-000")
    say = Lines(open(os.devnull, "w"))  # noqa: SIM115
    say.copy_to(log)
    written: dict[str, float] = {}
    arrived: dict[str, float] = {}
    with client.stream("GET", "/apps/app-000/push/stream") as stream:
        def write() -> None:
            for i in range(lines):
                time.sleep(0.15)
                written[f"line {i}"] = time.perf_counter()
                say(f"line {i}")
            say.copy_to(None)
            pushlog.finish(log, True)

        writer = threading.Thread(target=write)
        writer.start()
        for line in stream.iter_lines():
            if line.startswith("data: line "):
                arrived[line.removeprefix("data: ")] = time.perf_counter()
            if line.startswith("event: end"):
                break
        writer.join()
    return [(arrived[k] - written[k]) * 1000 for k in written]


SAY_ROUTE = """
app.get("/say/:n", (req, res) => {
  console.log(`said ${req.params.n} ${(performance.timeOrigin + performance.now()).toFixed(3)}`);
  res.send("said\\n");
});
"""


def app_log_latency(lines: int) -> dict[str, float | str]:
    """A followed app's line, from its print to a client of the dashboard's stream through nginx (see above)."""
    import harness

    with harness.bench_host() as h:
        app = h.create_app("dashlog")
        checkout = h.checkout(app)
        server = checkout / "server.js"
        text = server.read_text()
        server.write_text(text.replace("const port =", SAY_ROUTE + "\nconst port =", 1))
        harness.commit(checkout, "a route that prints a stamped line")
        h.push(checkout)
        key = h.work / "alice"
        harness.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)])
        harness.run([sys.executable, "-m", "minipaas", "ssh-keys:add", "alice", "--role", "admin"], env=h.env,
                    input_bytes=key.with_suffix(".pub").read_bytes())
        h.cli("ps:restore")
        link = h.cli("dashboard:login", "--key", "alice").stdout.strip()
        client = httpx.Client(base_url=f"http://127.0.0.1:{h.port}", timeout=30,
                              headers={"Host": f"dashboard.{harness.DOMAIN}:{h.port}"})
        deadline = time.monotonic() + 30
        while client.get(link.split(str(h.port), 1)[1]).status_code != 200:  # the dashboard may be starting
            if time.monotonic() > deadline:
                raise SystemExit("the dashboard did not log in within 30 s")
            time.sleep(0.2)
        printed: dict[str, float] = {}
        arrived: dict[str, float] = {}
        with client.stream("GET", f"/apps/{app}/logs/stream") as stream:
            def ask() -> None:
                time.sleep(1)  # the stream's engine call made
                for i in range(lines):
                    h.get(app, f"/say/{i}")
                    time.sleep(0.2)
                h.get(app, "/say/end")

            asker = threading.Thread(target=ask)
            asker.start()
            for line in stream.iter_lines():
                if line.startswith("data: said "):
                    now = time.time() * 1000
                    _, n, at = line.removeprefix("data: ").split()
                    if n == "end":
                        break
                    arrived[n], printed[n] = now, float(at)
            asker.join()
        client.close()
        latencies = sorted(arrived[n] - printed[n] for n in printed)
    return {"app_log_lines": len(latencies), "app_log_median_ms": round(statistics.median(latencies), 1),
            "app_log_p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 1),
            "app_log_max_ms": round(latencies[-1], 1), "machine": harness.machine()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--log-lines", type=int, default=0, help="app log lines to time (0: none; needs the engine)")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as top:
        env, host, who = make_home(Path(top))
        os.environ.update({k: env[k] for k in ("MINIPAAS_HOME", "MINIPAAS_DOMAIN", "MINIPAAS_NGINX")})
        result: dict[str, object] = {"apps_page": apps_page(host, who, args.requests),
                                     **process(env, host, who, args.lines)}
    if args.log_lines:
        for name in ("MINIPAAS_HOME", "MINIPAAS_DOMAIN", "MINIPAAS_NGINX"):
            os.environ.pop(name, None)
        result.update(app_log_latency(args.log_lines))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
