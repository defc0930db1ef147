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
               link of `dashboard:login --key`), the app is asked to print N lines 0.2-0.3 s apart (after a
               warm-up line both followers had), and each line's arrival (wall clock, the same kernel's) is
               compared with the time the app wrote into it; --log-runs R times on the same host.
  page         with --browser as well: a headless Chromium (Selenium, started as tests/engine/test_dashboard_browser.py
               starts it), logged in by another minted link, has the app's logs page open while the same lines
               come; a MutationObserver in the page stamps each line's text node when static/dashboard.js adds
               it, at the next frame's start (requestAnimationFrame) and after that frame (a task posted from
               it), with the page's `performance.timeOrigin + performance.now()`. Both clocks are checked: the
               app's stamp must fall within the request that made it print, the page's clock is read against
               this process's over WebDriver round trips (the bounds are in the output).

    /opt/minipaas/venv/bin/python bench/dashboard.py [--requests 50] [--lines 20] [--log-lines 0] [--log-runs 1]
                                                     [--browser] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# Installed in the logs page: each `said` line static/dashboard.js adds to #log, with the page's wall clock when
# it was added (the observer's callback is the microtask right after the script's `appendChild`), at the start of
# the next frame (requestAnimationFrame: its style, layout and paint follow) and once that frame is done (a task
# posted from the frame's callback runs after the frame's rendering steps).
OBSERVER = """
const now = () => performance.timeOrigin + performance.now();
window.seenLines = [];
new MutationObserver((records) => {
  const added = now();
  for (const record of records) for (const node of record.addedNodes) {
    const m = /^said (\\S+) (\\S+)/.exec(node.textContent);
    if (!m) continue;
    const seen = {n: m[1], printed: parseFloat(m[2]), added: added, frame: null, painted: null};
    window.seenLines.push(seen);
    requestAnimationFrame(() => {
      seen.frame = now();
      const after = new MessageChannel();
      after.port1.onmessage = () => { seen.painted = now(); };
      after.port2.postMessage(null);
    });
  }
}).observe(document.getElementById("log"), {childList: true});
return document.visibilityState;
"""


def chromium(profile: Path) -> Any:
    """A headless Chromium started as tests/engine/test_dashboard_browser.py starts it (Debian's chromium and
    driver)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise SystemExit("--browser needs the selenium package (pip install selenium)") from None
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise SystemExit("--browser needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                         "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP *.paas.test 127.0.0.1, MAP paas.test 127.0.0.1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def browser_clock_offset(driver: Any) -> tuple[float, float]:
    """Bounds (ms) of the page's clock (timeOrigin + now) minus this process's wall clock: the tightest of a few
    round trips (the page's reading was taken between the two host readings around it)."""
    bounds = []
    for _ in range(5):
        before = time.time() * 1000
        page = float(driver.execute_script("return performance.timeOrigin + performance.now();"))
        after = time.time() * 1000
        bounds.append((page - after, page - before))
    return min(bounds, key=lambda b: b[1] - b[0])


def reached(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    if not reached(condition, timeout):
        raise SystemExit(f"timed out waiting for {what}")


def printer_host(h: Any) -> str:
    """One app on the bench host that prints a stamped line on GET /say/<n>; alice an admin key; the dashboard up."""
    import harness

    app = h.create_app("dashlog")
    checkout = h.checkout(app)
    server = checkout / "server.js"
    server.write_text(server.read_text().replace("const port =", SAY_ROUTE + "\nconst port =", 1))
    harness.commit(checkout, "a route that prints a stamped line")
    h.push(checkout)
    key = h.work / "alice"
    harness.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)])
    harness.run([sys.executable, "-m", "minipaas", "ssh-keys:add", "alice", "--role", "admin"], env=h.env,
                input_bytes=key.with_suffix(".pub").read_bytes())
    h.cli("ps:restore")
    return app


def log_in(h: Any) -> httpx.Client:
    """A client of the dashboard through the host's nginx, logged in by a link of `dashboard:login --key`."""
    import harness

    link = h.cli("dashboard:login", "--key", "alice").stdout.strip()
    client = httpx.Client(base_url=f"http://127.0.0.1:{h.port}", timeout=30,
                          headers={"Host": f"dashboard.{harness.DOMAIN}:{h.port}"})
    deadline = time.monotonic() + 30
    while client.get(link.split(str(h.port), 1)[1]).status_code != 200:  # the dashboard may be starting
        if time.monotonic() > deadline:
            raise SystemExit("the dashboard did not log in within 30 s")
        time.sleep(0.2)
    return client


def one_run(h: Any, app: str, client: httpx.Client, driver: Any, run: int, lines: int) -> dict[str, list[float]]:
    """One run: the stream's client (and the page, with a browser) follow while the app prints `lines` lines
    0.2-0.3 s apart (apart enough that nothing arrives together, at no fixed phase to the page's frames)."""
    printed: dict[str, float] = {}  # the app's stamp, from the line
    arrived: dict[str, float] = {}  # at the stream's client
    window: dict[str, tuple[float, float]] = {}  # the request that made the app print it: sent, answered
    if driver is not None:
        driver.get(f"http://dashboard.paas.test:{h.port}/apps/{app}/logs")
        until(lambda: driver.execute_script("return document.getElementById('log-state').textContent;")
              == "following", "the logs page to follow")
        if driver.execute_script(OBSERVER) != "visible":
            raise SystemExit("the page is not visible: its frames would be throttled")

    def page_has(n: str) -> bool:
        return driver is None or n in driver.execute_script("return window.seenLines.map((s) => s.n);")

    with client.stream("GET", f"/apps/{app}/logs/stream") as stream:
        def follow() -> None:
            for line in stream.iter_lines():
                if line.startswith(f"data: said {run}-"):
                    at = time.time() * 1000
                    n, stamp = line.removeprefix("data: said ").split()
                    arrived[n], printed[n] = at, float(stamp)
                    if n == f"{run}-end":
                        return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        # Both followers' engine calls made: a line each has (not a sleep), before the timed ones.
        for k in range(60):
            h.get(app, f"/say/{run}-w{k}")
            if reached(lambda: f"{run}-w{k}" in arrived and page_has(f"{run}-w{k}"), 0.5):  # noqa: B023
                break
        else:
            raise SystemExit("the warm-up lines reached neither the stream's client nor the page in 30 s")
        for i in range(lines):
            sent = time.time() * 1000
            h.get(app, f"/say/{run}-{i}")
            window[f"{run}-{i}"] = (sent, time.time() * 1000)
            time.sleep(random.uniform(0.2, 0.3))
        h.get(app, f"/say/{run}-end")
        reader.join(30)
    timed = list(window)
    missing = [n for n in timed if n not in arrived]
    if missing:
        raise SystemExit(f"lines the stream's client never had: {missing}")
    out = {"stream": [arrived[n] - printed[n] for n in timed],
           "stamp_outside_request": [float(not window[n][0] <= printed[n] <= window[n][1]) for n in timed]}
    if driver is not None:
        until(lambda: page_has(f"{run}-end"), "the page's last line")
        until(lambda: driver.execute_script("return window.seenLines.every((s) => s.painted !== null);"),
              "the page's frames", 5)
        seen = {s["n"]: s for s in driver.execute_script("return window.seenLines;")}
        if any(n not in seen for n in timed):
            raise SystemExit(f"lines the page never showed: {[n for n in timed if n not in seen]}")
        for kind in ("added", "frame", "painted"):
            out[kind] = [seen[n][kind] - seen[n]["printed"] for n in timed]
        low, high = browser_clock_offset(driver)
        out["clock_offset_low"], out["clock_offset_high"] = [low], [high]
    return out


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p95": ordered[max(0, int(len(ordered) * 0.95) - 1)],
            "max": ordered[-1]}


def app_log_latency(lines: int, runs: int, browser: bool) -> dict[str, object]:
    """A followed app's line, from its print to a client of the dashboard's stream through nginx and, with
    `browser`, to a headless Chromium's page (see above); `runs` runs of `lines` lines, on one host."""
    import harness

    with harness.bench_host() as h:
        app = printer_host(h)
        client = log_in(h)
        driver = None
        try:
            if browser:
                driver = chromium(h.work / "chromium")
                driver.get(h.cli("dashboard:login", "--key", "alice").stdout.strip())
                until(lambda: "Apps" in driver.title, "the browser to log in")
            per_run = [one_run(h, app, client, driver, run, lines) for run in range(runs)]
        finally:
            if driver is not None:
                driver.quit()
            client.close()
    result: dict[str, object] = {"app_log_lines": lines, "app_log_runs": runs, "machine": harness.machine()}
    for kind in per_run[0]:
        if kind.startswith(("stamp_", "clock_")):
            continue
        spreads = [spread(r[kind]) for r in per_run]
        prefix = "app_log" if kind == "stream" else f"page_{kind}"
        result[f"{prefix}_median_ms"] = round(statistics.median(s["median"] for s in spreads), 1)
        result[f"{prefix}_p95_ms"] = round(statistics.median(s["p95"] for s in spreads), 1)
        result[f"{prefix}_max_ms"] = round(max(s["max"] for s in spreads), 1)
        result[f"{prefix}_run_medians_ms"] = [round(s["median"], 1) for s in spreads]
    result["app_stamps_outside_their_request"] = int(sum(sum(r["stamp_outside_request"]) for r in per_run))
    if browser:
        result["page_clock_minus_host_ms"] = [round(min(r["clock_offset_low"][0] for r in per_run), 1),
                                              round(max(r["clock_offset_high"][0] for r in per_run), 1)]
    return result


ROWS = (("app_log", "the stream's client (httpx, through nginx): the baseline"),
        ("page_added", "the page: the line's text node added to `#log` (MutationObserver)"),
        ("page_frame", "the page: the next frame begins (requestAnimationFrame)"),
        ("page_painted", "the page: that frame rendered (a task after it)"))


def table(result: dict[str, object]) -> str:
    """The log phase as a Markdown table: medians over the runs of each run's median and 95th percentile."""
    out = [f"{result['app_log_runs']} runs of {result['app_log_lines']} lines; {result['machine']}", "",
           "| from the app's print to | median | 95th percentile | max | each run's median |",
           "| --- | --- | --- | --- | --- |"]
    for key, name in ROWS:
        if f"{key}_median_ms" in result:
            medians = ", ".join(f"{m:.1f}" for m in result[f"{key}_run_medians_ms"])  # type: ignore[attr-defined]
            out.append(f"| {name} | {result[f'{key}_median_ms']:.1f} ms | {result[f'{key}_p95_ms']:.1f} ms | "
                       f"{result[f'{key}_max_ms']:.1f} ms | {medians} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--log-lines", type=int, default=0, help="app log lines to time (0: none; needs the engine)")
    parser.add_argument("--log-runs", type=int, default=1, help="runs of --log-lines lines, on one host")
    parser.add_argument("--browser", action="store_true",
                        help="also to a headless Chromium's logs page (needs chromium, chromedriver, selenium)")
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
        result.update(app_log_latency(args.log_lines, args.log_runs, args.browser))
        print(table(result))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
