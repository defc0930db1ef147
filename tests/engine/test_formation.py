"""Process types, release commands and scaling, with real containers."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.helpers.host import APPS, Paas, commit
from tests.helpers.load import LUA, start_wrk, stop_wrk


def ps(paas: Paas, app: str) -> list[dict]:
    return json.loads(paas.run("ps", app, "--json").stdout)


def wait_for(predicate, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_release_command_runs_before_the_switch_and_its_failure_aborts(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "procfile")
    first = paas.push(checkout).stderr
    assert "Running the release command: node release.js" in first and "release phase ran" in first
    paas.run("config:set", app, "FAIL_RELEASE=1", "--no-restart")
    (checkout / "web.js").write_text((checkout / "web.js").read_text().replace('"v1"', '"v2"'))
    commit(checkout, "v2")
    result = paas.push(checkout, expect_ok=False)
    assert "release command exited with code 7" in result.stderr and "migration failed" in result.stderr
    assert paas.get(app).body.startswith("web v1")
    assert [r["process"] for r in ps(paas, app)] == ["web"]


def test_workers_scale_and_survive_deploys(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "procfile")
    assert paas.run("ps:scale", app).stdout.split() == ["web=1", "worker=0"]
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("ps:scale", app, "worker=2")
    wait_for(lambda: len([r for r in ps(paas, app) if r["process"] == "worker"]) == 2)
    assert sorted(r["process"] for r in ps(paas, app)) == ["web", "worker", "worker"]
    wait_for(lambda: "worker tick" in paas.run("logs", app, "-n", "5").stdout, limit=10)
    assert "worker tick" in paas.run("logs", app, "-n", "5").stdout
    commit(checkout, "redeploy")
    paas.push(checkout)
    wait_for(lambda: len(ps(paas, app)) == 3)
    rows = ps(paas, app)
    assert sorted(r["process"] for r in rows) == ["web", "worker", "worker"] and {r["release"] for r in rows} == {2}
    bad = paas.run("ps:scale", app, "nosuch=1", check=False)
    assert bad.returncode == 1 and "no process type nosuch" in bad.stderr
    assert paas.run("ps:scale", app, "web=99", check=False).returncode == 1


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_scaling_web_1_3_1_under_load_drops_nothing(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "procfile")
    paas.run("settings:set", app, "drain-seconds", "1")
    load = start_wrk(paas, app, "-t2", "-c16", "-s", str(LUA))
    try:
        time.sleep(1)
        paas.run("ps:scale", app, "web=3")
        hosts = {paas.get(app).body.split(" on ")[1] for _ in range(30)}
        assert len(hosts) == 3  # nginx balances over all three
        paas.run("ps:scale", app, "web=1")
        wait_for(lambda: len(paas.containers()) == 1)
        time.sleep(1)
    finally:
        counts = stop_wrk(load)
    assert len(paas.containers()) == 1
    assert counts["requests"] > 1000 and counts["socket_errors"] == 0 and counts["non_2xx"] == 0, counts["output"]


def test_resource_limits_and_hardening_reach_the_containers(paas: Paas) -> None:
    from tests.helpers.host import docker

    app, _ = paas.deploy(APPS / "procfile")
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("resource:limit", app, "--memory", "256m", "--cpus", "0.5", "--pids", "128", "--read-only")
    assert paas.get(app).status == 200
    [row] = [r for r in ps(paas, app) if r["health"] == "serving"]
    config = json.loads(docker("inspect", row["name"]))[0]["HostConfig"]
    assert config["Memory"] == 256 * 1024 * 1024 and config["NanoCpus"] == 500_000_000
    assert config["PidsLimit"] == 128 and config["ReadonlyRootfs"] is True and "/tmp" in config["Tmpfs"]
    assert config["CapDrop"] == ["ALL"] and "no-new-privileges" in config["SecurityOpt"]
    user = docker("exec", row["name"], "id", "-u").strip()
    assert user == "61000"  # minipaas base images: not a host login account
    wrote = paas.run("run", app, "--", "sh", "-c", "touch /srv/x", check=False)
    assert wrote.returncode != 0  # read-only root filesystem, one-off containers too
    assert paas.run("run", app, "--", "sh", "-c", "touch /tmp/x").returncode == 0
    bad = paas.run("resource:limit", app, "--cpus", "lots", check=False)
    assert bad.returncode == 1 and "invalid value" in bad.stderr
