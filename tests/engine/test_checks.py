"""Health checks against the real engine: a CHECKS file gates the deploy, and a crash its restart policy hid
is reported with its exit code (the parsing, pure: tests/unit/test_checks.py)."""

from __future__ import annotations

import pytest

from minipaas.adapters import engine
from minipaas.deploy import health
from minipaas.errors import DeployFailed
from tests.helpers.cluster_nodes import wait_for
from tests.helpers.host import APPS, Paas, commit, docker


def test_checks_file_gates_the_deploy(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "healthcheck-timeout", "3")
    (checkout / "CHECKS").write_text("WAIT=0\n/ text the app never says\n")
    commit(checkout, "a check that cannot pass")
    result = paas.push(checkout, expect_ok=False)
    assert "did not pass GET / containing 'text the app never says'" in result.stderr
    assert paas.get(app).status == 200

    (checkout / "CHECKS").write_text("/ from my own Dockerfile\n")
    commit(checkout, "a check that passes")
    assert "passed: GET / containing 'from my own Dockerfile'" in paas.push(checkout).stderr



def test_a_crash_its_restart_policy_hid_is_reported_with_its_exit_code(paas: Paas) -> None:
    """Once the restart policy has started a crashed container again, the engine says exit code 0 (CI saw
    "exited with code 0" for an app that exited with 4); the check reads the code from the engine's events."""
    app, _ = paas.deploy(APPS / "crash-later")
    name = paas.container(f"{app}.crasher.1")
    docker("run", "-d", "--name", name, "--label", f"minipaas={paas.home}", "--restart", "unless-stopped",
           "--entrypoint", "sh", paas.image(app, 1), "-c", "echo NEEDED is not set; sleep 2; exit 4")
    restarted = wait_for(lambda: (c := engine.inspect(name)).status == "running" and c.restarts > 0 and c,
                         "the container to run again after its first exit")
    assert isinstance(restarted, engine.Container)
    assert restarted.exit_code == 0  # the engine's own word on a process it started again
    assert engine.last_exit_code(restarted) == 4
    with pytest.raises(DeployFailed, match="exited with code 4 before answering") as failed:
        health.run(health.Plan(30, health.default_checks("/")),
                   health.Container(restarted.id, restarted.name, network="", port=health.WEB_PORT),
                   progress=lambda _: None)
    assert "NEEDED is not set" in str(failed.value.detail)

