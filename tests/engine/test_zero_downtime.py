"""Zero downtime, counted: steady load through nginx across 10 consecutive deploys, no failed request.

The app under load has no SIGTERM handler (the Dockerfile fixture: plain node http), so a request
that reached a container being retired would fail: the count proves none does.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.host import APPS, Paas, commit

LUA = Path(__file__).resolve().parents[1] / "load" / "mixed.lua"
DEPLOYS = 10


def start_wrk(paas: Paas, app: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-d", "300s", "--timeout", "10s", "-H", f"Host: {app}.paas.test", *extra,
         f"http://127.0.0.1:{paas.port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_wrk(proc: subprocess.Popen[str]) -> dict[str, int]:
    proc.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
    output, _ = proc.communicate(timeout=30)
    counts = {"requests": int(re.search(r"(\d+) requests in", output).group(1))}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counts["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    counts["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    counts["output"] = output  # type: ignore[assignment]
    return counts


def no_failed_request(counts: dict[str, int], *, more_than: int) -> None:
    """wrk's counts (stop_wrk): more than `more_than` requests, no socket error, no answer outside 2xx/3xx."""
    assert counts["requests"] > more_than, counts["output"]
    assert counts["socket_errors"] == 0, counts["output"]
    assert counts["non_2xx"] == 0, counts["output"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_ten_deploys_under_keepalive_and_close_load_fail_no_request(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "drain-seconds", "1")  # retirements happen while the load runs
    keepalive = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    closing = start_wrk(paas, app, "-t1", "-c4", "-H", "Connection: close")
    try:
        time.sleep(1)
        server = checkout / "server.js"
        for n in range(DEPLOYS):
            server.write_text(server.read_text().replace("Dockerfile", f"Dockerfile ({n})", 1)
                              if n == 0 else server.read_text().replace(f"({n - 1})", f"({n})"))
            commit(checkout, f"deploy {n}")
            paas.push(checkout)
        deadline = time.monotonic() + 60
        while len(paas.containers()) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # old containers get SIGTERM and go, still under load
        time.sleep(1)
    finally:
        ka = stop_wrk(keepalive)
        cl = stop_wrk(closing)
    assert len(paas.containers()) == 1
    assert f"({DEPLOYS - 1})" in paas.get(app).body
    for counts in (ka, cl):
        no_failed_request(counts, more_than=1000)
