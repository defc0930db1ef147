"""ps:restore after the Docker engine restarts: every app answers again.

This restarts the machine's Docker engine, so it is marked `engine_restart`: it runs last (tests/helpers/workers.py
orders by that marker), once the other worker's tests have ended (`engine_to_itself`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.helpers.faults import assert_repaired, first_release, push_paused_at, release, releases
from tests.helpers.host import APPS, EXAMPLE, Paas, docker

# No other worker's test runs through the restart; other homes' apps run again after it.
pytestmark = [pytest.mark.engine_restart, pytest.mark.usefixtures("engine_to_itself", "leaves_the_host_as_found")]


def engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def others_running(paas: Paas) -> dict[str, set[str]]:
    """The running containers of every other minipaas home on this engine (the host's own instance...), by home."""
    found: dict[str, set[str]] = {}
    for line in docker("ps", "--filter", "label=minipaas", "--format", '{{.Names}} {{.Label "minipaas"}}').splitlines():
        name, _, home = line.partition(" ")
        if home.startswith("/") and home != str(paas.home):
            found.setdefault(home, set()).add(name)
    return found


@pytest.fixture
def leaves_the_host_as_found(paas: Paas) -> Iterator[None]:
    """After the engine restart, what ran of other homes runs again (their watchers restore it): the suite leaves
    the host's own instance as it found it. A home whose watcher does not (no watcher runs) is restored here."""
    before = others_running(paas)
    yield
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = others_running(paas)
        if all(names <= now.get(home, set()) for home, names in before.items()):
            return
        time.sleep(1)
    for home in before:
        if os.path.isdir(home):
            subprocess.run([sys.executable, "-m", "minipaas", "ps:restore"], env={**os.environ, "MINIPAAS_HOME": home},
                           capture_output=True, timeout=600)


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


def test_the_watcher_brings_every_app_back_by_itself_after_an_engine_restart(paas: Paas) -> None:
    """A package upgrade restarts dockerd: the engine stops every container and starts none (their restart policy
    is for crashes). No one runs a command: the home's watcher sees the engine return and restores. `ps:restore`
    by hand afterwards finds everything in place.

    The same restart meets a push in the middle of its deploy (its new container started, not yet health-checked:
    the hook paused there, minipaas/faultpoints.py): the push fails in one line or goes live, and either way that app
    serves afterwards too (the watcher's restore waits for the push to let go of its lock), with no pending release,
    container, image, network or route left over."""
    web, _ = paas.deploy(EXAMPLE)
    other, _ = paas.deploy(APPS / "dockerfile")
    site, _ = paas.deploy(APPS / "static-site")
    paas.run("config:set", web, "GREETING=still here")
    from minipaas.running import watcher
    from minipaas.state.settings import load

    assert watcher.running(load(paas.env)) is not None  # every deploy starts it
    pushed, checkout = first_release(paas)
    release(checkout, "v2")
    paused = push_paused_at(paas, checkout, "started")
    restart_engine()
    os.kill(paused.hook, signal.SIGCONT)
    output, _ = paused.process.communicate(timeout=600)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if all(paas.get(app).status == 200 for app in (web, other, pushed)):
            break
        time.sleep(0.5)
    said = [line.split("!", 1)[1].strip() for line in output.splitlines() if line.startswith("remote: !")]
    assert "Traceback" not in output and "internal error" not in output, output
    if paused.process.returncode != 0:
        assert said[0] and said[-1] == "push rejected; the previous release keeps serving", output
    live = max(n for n, (status, _, _) in releases(paas, pushed).items() if status == "live")
    print(f"\nFAULT engine restarted mid-deploy: push {'rejected: ' + said[0] if said else 'went live'}; "
          f"release {live} serves", flush=True)
    assert_repaired(paas, pushed, live, "v1\n" if live == 1 else "v2\n")
    assert paas.get(web).body.startswith("still here")
    assert paas.get(other).body == "from my own Dockerfile\n"
    assert "Static home" in paas.get(site).body
    for app in (web, other):  # the retirement the engine's stop interrupted goes through once it answers again
        deadline = time.monotonic() + 60
        while True:
            rows = json.loads(paas.run("ps", app, "--json").stdout)
            if [(r["state"], r["health"]) for r in rows] == [("running", "serving")] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [(r["state"], r["health"]) for r in rows] == [("running", "serving")], rows
    log = (paas.home / "logs" / "watch.log").read_text()
    assert "the engine is back; restoring every app (ps:restore)" in log, log
    # The containers the engine stopped on its way down are no crashes (no `crash` event, no notification): the
    # watcher says so once its grace after their end (watcher.CRASH_GRACE) is over.
    watch_log = paas.home / "logs" / "watch.log"
    deadline = time.monotonic() + 60
    while "went down with the engine: not a crash" not in watch_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "went down with the engine: not a crash" in watch_log.read_text(), watch_log.read_text()
    said = paas.run("events", "-n", "200").stdout
    assert not [line for line in said.splitlines() if f"crash {web}" in line or f"crash {other}" in line], said
    # Containers came back perhaps at other addresses: ps:restore re-reads them, and changes nothing that serves.
    paas.run("ps:restore")
    assert paas.get(web).body.startswith("still here") and paas.get(other).status == 200


def test_rows_and_keys_survive_an_engine_restart_and_services_come_back_before_apps(paas: Paas) -> None:
    """Services' data are in named volumes; ps:restore starts the services first, then the apps that need them."""

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

