"""Running apps: ps, logs, restart without downtime, stop and start, repair after a crash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker


def test_ps_and_logs_show_the_running_release(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    assert row["name"] == paas.container(f"{app}.web.1") and row["state"] == "running" and row["health"] == "serving"
    assert "listening on 5000" in paas.run("logs", app, "-n", "20").stdout
    table = paas.run("ps", app).stdout
    assert paas.container(f"{app}.web.1") in table and "serving" in table


def test_ps_never_calls_a_stopped_container_live(paas: Paas) -> None:
    """A container stopped behind minipaas' back (as an engine going down stops them all) is `down`, not `live`."""
    app, _ = paas.deploy(APPS / "dockerfile")
    docker("stop", "-t", "1", paas.container(f"{app}.web.1"))
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    assert row["state"] in ("exited", "crashed") and (row["health"], row["release"]) == ("down", 1), row
    assert " down " in paas.run("ps", app).stdout
    paas.run("ps:restore")
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    assert (row["state"], row["health"]) == ("running", "serving"), row


def test_restart_replaces_the_container_and_stop_start_toggle_traffic(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("ps:restart", app)
    assert paas.get(app).status == 200
    names = [r["name"] for r in json.loads(paas.run("ps", app, "--json").stdout) if r["health"] == "serving"]
    assert names == [paas.container(f"{app}.web.2")]
    paas.run("ps:stop", app)
    stopped = paas.get(app)
    assert stopped.status == 503 and "not running" in stopped.body
    paas.run("ps:start", app)
    assert paas.get(app).status == 200


def test_an_app_stopped_with_ps_stop_stays_stopped_across_ps_restore(paas: Paas) -> None:
    stopped, _ = paas.deploy(APPS / "dockerfile", prefix="stopped")
    running, _ = paas.deploy(APPS / "dockerfile", prefix="running")
    paas.run("ps:stop", stopped)
    for container in paas.container_names():  # a reboot: the engine comes back with every container stopped
        docker("stop", "-t", "1", container)
    restored = paas.run("ps:restore").stdout
    assert f"{stopped}: stopped with ps:stop; left so (`ps:start {stopped}` starts it)" in restored, restored
    assert paas.get(stopped).status == 503 and paas.get(running).status == 200
    paas.run("ps:start", stopped)
    assert paas.get(stopped).status == 200
    again = paas.run("ps:restore").stdout
    assert f"{stopped}: release 1 serving at" in again, again
    # A deploy starts a stopped app too, and it is no longer stopped for ps:restore.
    paas.run("ps:stop", running)
    paas.run("ps:restart", running)
    assert paas.get(running).status == 200
    assert f"{running}: release 2 serving at" in paas.run("ps:restore").stdout


def test_start_brings_back_containers_that_are_gone(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("ps:stop", app)
    for container in paas.containers():
        docker("rm", "-f", container)
    started = paas.run("ps:start", app).stdout
    assert f"{app}: containers of release 1 are gone; starting new ones" in started, started
    assert paas.get(app).body == "from my own Dockerfile\n"
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    assert row["health"] == "serving" and row["state"] == "running"


def test_restore_goes_on_past_an_app_that_cannot_come_back(paas: Paas) -> None:
    broken, _ = paas.deploy(APPS / "dockerfile", prefix="broken")
    fine, _ = paas.deploy(APPS / "dockerfile", prefix="fine")
    # The broken app loses its containers, its image and its source (a disk lost): nothing to start.
    for container in paas.container_names():
        if f".{broken}." in container:
            docker("rm", "-f", container)
    docker("rmi", "-f", paas.image(broken, 1))
    shutil.rmtree(paas.home / "repos" / f"{broken}.git" / "objects")
    (paas.home / "repos" / f"{broken}.git" / "objects").mkdir()
    for container in paas.container_names():  # the fine app's: stopped as a reboot stops them
        if f".{fine}." in container:
            docker("stop", "-t", "1", container)
    result = paas.run("ps:restore", check=False)
    assert result.returncode == 1, result.stdout
    assert f"{broken}:" in result.stdout and f"{fine}: release 1 serving at" in result.stdout, result.stdout
    assert result.stderr.strip().splitlines()[-1] == f"error: not restored: {broken}", result.stderr
    assert "Traceback" not in result.stderr
    assert paas.get(fine).body == "from my own Dockerfile\n"


def test_a_deploy_killed_midway_is_repaired_by_the_next_one(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    server = checkout / "server.js"
    # The next release takes a while to listen, long enough to kill its deploy during the health check.
    server.write_text("setTimeout(() => {\n" + server.read_text().replace("own", "slow") + "}, 20000);\n")
    commit(checkout, "slow to start")
    subprocess.run(["git", "--git-dir", str(paas.home / "repos" / f"{app}.git"), "fetch", "-q", str(checkout),
                    "master:slow"], check=True, env=paas.env)
    deploy = subprocess.Popen([*paas.command(), "deploy", app, "slow"], env=paas.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(paas.containers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(deploy.pid, signal.SIGKILL)  # a crash: no cleanup code runs
    deploy.wait()
    assert len(paas.containers()) == 2  # the half-done release's container is still there
    assert paas.get(app).body == "from my own Dockerfile\n"  # and the old release still serves

    server.write_text(server.read_text().replace("20000", "0"))
    commit(checkout, "fixed")
    paas.push(checkout)
    assert paas.get(app).body == "from my slow Dockerfile\n"
    statuses = {r["number"]: (r["status"], r["message"]) for r in
                json.loads(paas.run("releases", app, "--json").stdout)}
    assert statuses[2] == ("failed", "interrupted")
    assert statuses[3][0] == "live"
    assert not any(n.endswith(".web.2") for n in paas.container_names())


def test_restore_restarts_the_proxy_after_it_was_killed(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    masters = [int(p.read_text()) for p in (paas.home / "nginx" / "run").glob("*.pid")]
    for master in masters:
        os.kill(master, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{m}/cmdline").exists() and Path(f"/proc/{m}/cmdline").read_bytes() for m in masters):
        assert time.monotonic() < deadline, "nginx's master outlived SIGKILL"
        time.sleep(0.02)
    paas.run("ps:restore")
    assert paas.get(app).body == "from my own Dockerfile\n"
