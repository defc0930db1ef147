"""Zero downtime, counted: steady load through nginx across 10 consecutive deploys, no failed request.

The app under load has no SIGTERM handler (the Dockerfile fixture: plain node http), so a request
that reached a container being retired would fail: the count proves none does.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.helpers.host import APPS, Paas, commit
from tests.helpers.load import LUA, no_failed_request, start_wrk, stop_wrk

DEPLOYS = 10


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
