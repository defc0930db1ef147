"""Push output a person can read, and deploys that survive what operations throw at them: a closed pipe,
a pusher who leaves, a rejected push retried, a vanished image, a crashing app, IPv6, dokku's app.json."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker

NOISE = [re.compile(p, re.M) for p in (r"^remote: +#\d+ ", r" ---> ", r"Removing intermediate container",
                                         r"\x1b\[", r"npm notice", r"Successfully (built|tagged)")]


def wait_for(condition, timeout: float = 120, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def releases(paas: Paas, app: str) -> list[dict[str, object]]:
    return json.loads(paas.run("releases", app, "--json").stdout)


def change(checkout: Path, old: str, new: str, file: str = "server.js") -> str:
    path = checkout / file
    path.write_text(path.read_text().replace(old, new))
    return commit(checkout, f"{old} -> {new}")


def test_push_output_shows_steps_and_the_package_managers_lines_only(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, EXAMPLE)
    output = paas.push(checkout).stderr
    for noise in NOISE:
        assert not noise.search(output), (noise.pattern, output)
    steps = [line for line in output.splitlines() if line.startswith("remote: -----> ")]
    assert any("npm ci" in line or "dependencies" in line.lower() for line in steps), output
    assert any(f"is live at http://{app}.paas.test" in line for line in output.splitlines()), output

    change(checkout, "from minipaas", "from a verbose push")
    verbose = paas.push(checkout, extra=("-o", "verbose")).stderr
    assert re.search(r"^remote: +(#\d+ \[|Step \d+/\d+ : )", verbose, re.M), verbose  # the builder's own lines
    assert "from a verbose push" in paas.get(app).body


def test_a_failed_build_shows_its_output_once_and_a_first_push_says_nothing_was_deployed(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "dockerfile")
    (checkout / "Dockerfile").write_text('FROM minipaas/node:26\nRUN M=boom; echo "${M}-marker" && exit 3\n')
    commit(checkout, "a build that fails")
    output = paas.push(checkout, expect_ok=False).stderr
    assert output.count("boom-marker") == 1, output
    errors = [line.removeprefix("remote: ").strip() for line in output.splitlines() if line.startswith("remote: !")]
    assert len(errors) == 2 and errors[0].startswith("!     build failed:"), output
    assert errors[1] == "!     push rejected; nothing was deployed"

    info = paas.run("releases:info", app, "1").stdout
    assert re.search(r"^created_at: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", info, re.M), info
    assert re.search(r"^buildpack: +dockerfile$", info, re.M) and re.search(r"^status: +failed$", info, re.M)
    assert "boom-marker" in info  # the failed release keeps its log


def test_a_closed_output_pipe_never_aborts_a_deploy(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    paas.run("settings:set", app, "review-apps", "off")
    change(checkout, "from minipaas", "after head -1")
    paas.push(checkout, "master:later")  # another branch: accepted, not deployed
    deploy = subprocess.Popen([*paas.command(), "deploy", app, "later"], env=paas.env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    assert deploy.stdout is not None
    first = deploy.stdout.readline()  # what `| head -1` reads, before it goes away
    deploy.stdout.close()
    assert first and deploy.wait(timeout=600) == 0
    newest = releases(paas, app)[0]
    assert newest["status"] == "live" and newest["number"] == 2
    assert "after head -1" in paas.get(app).body
    assert f"{app} release 2 is live" in paas.run("releases:info", app, "2").stdout  # all it said is in its log


def test_a_pusher_who_goes_away_does_not_stop_the_deploy(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    sha = change(checkout, "from minipaas", "after the pusher left")
    pusher = subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env=paas.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert pusher.stderr is not None
    for line in pusher.stderr:
        if "-----> Building" in line:
            break
    pusher.send_signal(signal.SIGKILL)  # the laptop lid closes
    pusher.wait(timeout=30)
    wait_for(lambda: releases(paas, app)[0]["status"] == "live" and releases(paas, app)[0]["sha"] == sha,
             timeout=300, what="the release to go live without its pusher")
    assert "after the pusher left" in paas.get(app).body


def test_deploy_retries_the_last_pushed_commit_after_a_rejection(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "crash-later")
    paas.run("settings:set", app, "healthcheck-timeout", "10")
    paas.push(checkout)
    (checkout / "server.js").write_text("if (!process.env.NEEDED) { console.error('NEEDED is not set'); "
                                        "process.exit(4); }\n" + (checkout / "server.js").read_text())
    needs = commit(checkout, "needs NEEDED")
    rejected = paas.push(checkout, expect_ok=False).stderr
    assert "exited with code 4" in rejected and "NEEDED is not set" in rejected
    assert paas.get(app).body == "up\n"

    paas.run("config:set", app, "NEEDED=yes", "--no-restart")
    deployed = paas.run("deploy", app)
    assert "release 3 is live" in deployed.stdout, deployed.stdout
    assert releases(paas, app)[0]["sha"] == needs
    assert paas.get(app).body == "needed: yes\n"


def test_restore_rebuilds_a_release_whose_image_is_gone(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    paas.run("config:set", app, "GREETING=Restored")
    paas.run("config:set", app, "GREETING=Later", "--no-restart")  # stored only: not what runs
    for container in paas.containers():
        docker("rm", "-f", container)
    docker("rmi", "-f", paas.image(app, 1))
    output = paas.run("ps:restore").stdout
    assert f"The image {paas.image(app, 1)} is gone; building" in output, output
    assert paas.get(app).body.startswith("Restored from minipaas")  # the config of the live release
    newest = releases(paas, app)[0]
    assert newest["status"] == "live" and newest["kind"] == "rebuild"


def test_a_crashed_web_container_says_so_with_its_exit_code_and_last_lines(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "crash-later")
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    policy = json.loads(docker("inspect", "--format", "{{json .HostConfig.RestartPolicy}}", row["name"]))
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 10}
    docker("update", "--restart", "no", row["name"])  # as after its tenth restart, without the wait
    with contextlib.suppress(ConnectionError, http.client.HTTPException):  # it may go before answering
        paas.get(app, "/crash")
    wait_for(lambda: json.loads(paas.run("ps", app, "--json").stdout)[0]["state"] == "crashed", timeout=60,
             what="the crash")
    [row] = json.loads(paas.run("ps", app, "--json").stdout)
    assert row["exit_code"] == 3 and "about to crash on purpose" in row["last_lines"]
    table = paas.run("ps", app).stdout
    assert "crashed (exit 3)" in table and "about to crash on purpose" in table


def test_every_vhost_answers_on_ipv6_too(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    conn = http.client.HTTPConnection("::1", paas.port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": f"{app}.paas.test"})
        response = conn.getresponse()
        assert response.status == 200 and "Hello from minipaas" in response.read().decode()
        conn.request("GET", "/", headers={"Host": "nobody.paas.test"})
        response = conn.getresponse()
        assert response.status == 404 and b"no app" in response.read()
    finally:
        conn.close()


def test_app_json_healthchecks_run_as_dokku_runs_them(paas: Paas) -> None:
    # Like dokku's checks-root app: / answers 404 and app.json checks /, so the push is rejected.
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "app-json-checks")
    output = paas.push(checkout, expect_ok=False).stderr
    assert "did not pass root (GET /) in 8 attempts (last: HTTP 404)" in output, output
    assert "not run: alive" in output
    # Content checks, as dokku's nodejs-express app has them.
    (checkout / "app.json").write_text(json.dumps({"healthchecks": {"web": [
        {"type": "startup", "name": "check-1", "path": "/health", "content": "ok from", "attempts": 10,
         "wait": 1, "timeout": 5}]}}))
    commit(checkout, "check /health")
    passed = paas.push(checkout).stderr
    assert "passed: check-1 (GET /health containing 'ok from')" in passed, passed
    (checkout / "app.json").write_text(json.dumps({"healthchecks": {"web": [
        {"path": "/health", "content": "something else", "attempts": 10, "wait": 0.5}]}}))
    commit(checkout, "a content check that fails")
    failed = paas.push(checkout, expect_ok=False).stderr
    assert "HTTP 200 without 'something else'" in failed and paas.get(app, "/health").status == 200
    (checkout / "app.json").write_text('{"healthchecks": {"web": [{"attempts": "many"}]}}')
    commit(checkout, "a bad app.json")
    bad = paas.push(checkout, expect_ok=False).stderr
    assert "attempts must be a number from 1 to 3600" in bad


def test_builds_leave_nothing_behind(paas: Paas) -> None:
    paas.env["MINIPAAS_BUILDER"] = "legacy"  # the builder that keeps images of build stages
    app, _ = paas.deploy(EXAMPLE)
    mine = docker("images", "-a", "-q", "--filter", f"label=minipaas.app={app}",
                  "--filter", f"label=minipaas={paas.home}").split()
    assert len(set(mine)) >= 2  # the release and its build stage, both labelled as the app's
    paas.run("apps:destroy", app, "--force")
    assert docker("images", "-a", "-q", "--filter", f"label=minipaas.app={app}").split() == []
