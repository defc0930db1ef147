"""ps:restore after the Docker engine restarts: every app answers again.

This restarts the machine's Docker engine, so it runs last (hence the file name), once the other worker's tests
have ended (conftest's `engine_to_itself`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import APPS, EXAMPLE, Paas

pytestmark = pytest.mark.usefixtures("engine_to_itself")  # no other worker's test runs through the restart


def engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def restart_engine() -> None:
    if os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True, check=True).stdout)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        with open("/var/log/minipaas-dockerd.log", "ab") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while not engine_up() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engine_up(), "the Docker engine did not come back"


def test_every_app_answers_after_an_engine_restart_and_ps_restore(paas: Paas) -> None:
    web, _ = paas.deploy(EXAMPLE)
    other, _ = paas.deploy(APPS / "dockerfile")
    site, _ = paas.deploy(APPS / "static-site")
    paas.run("config:set", web, "GREETING=still here")
    restart_engine()
    # Containers come back (restart policy) but perhaps at other addresses: restore re-reads them.
    paas.run("ps:restore")
    assert paas.get(web).body.startswith("still here")
    assert paas.get(other).body == "from my own Dockerfile\n"
    assert "Static home" in paas.get(site).body


def test_rows_and_keys_survive_an_engine_restart_and_services_come_back_before_apps(paas: Paas) -> None:
    """Services' data are in named volumes; ps:restore starts the services first, then the apps that need them."""
    import json

    app, _ = paas.deploy(APPS / "services-app", prefix="svc")
    paas.run("postgres:create", "db")
    paas.run("redis:create", "cache")
    paas.run("postgres:link", "db", app)
    paas.run("redis:link", "cache", app)
    for _ in range(3):
        assert paas.get(app, "/write", method="POST", body="").status == 200
    restart_engine()
    restored = paas.run("ps:restore").stdout
    assert restored.index("postgres service db is running") < restored.index(f"{app}: release")
    assert json.loads(paas.get(app, "/count").body) == {"rows": 3, "keys": 3}
    assert paas.get(app, "/write", method="POST", body="").status == 200
    assert json.loads(paas.get(app, "/count").body) == {"rows": 4, "keys": 4}
