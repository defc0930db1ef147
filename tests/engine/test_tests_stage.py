"""Tests as image layers, through real pushes: a Node app's tests run in a test stage of its build, a failure
rejects the push and changes nothing live, a passing build ships an image without the test stage's files or
devDependencies, an unchanged build reuses the test layer, and the `tests` setting, `-o skip-tests` and
`-o no-cache` (admins', or a deployer's where allowed) say otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.host import APPS, Paas, commit, git, step_cached
from tests.helpers.sshd import Sshd

TEST_STEP = "RUN touch /tmp/minipaas-tests-passed # Running tests"  # in the step's line, whichever builder prints it
FAILING_TEST = """const test = require("node:test");
const assert = require("node:assert");
test("the answer", () => assert.strictEqual(6 * 7, 41, "the answer should have been 41"));
"""


@pytest.fixture(params=["legacy", "buildkit"])
def builder(request: pytest.FixtureRequest, paas: Paas) -> str:
    paas.env["MINIPAAS_BUILDER"] = request.param
    return str(request.param)


def newest(paas: Paas, app: str) -> dict[str, object]:
    return json.loads(paas.run("releases", app, "--json").stdout)[0]


def in_image(paas: Paas, app: str, release: int, script: str) -> str:
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, release), "-c", script],
                          capture_output=True, text=True, check=True).stdout


def remote_lines(output: str) -> list[str]:
    return [line.removeprefix("remote: ").rstrip() for line in output.splitlines() if line.startswith("remote: ")]


def test_tests_run_as_a_layer_gate_the_push_and_stay_out_of_the_image(paas: Paas, builder: str) -> None:
    app = paas.new_app("tested")
    checkout = paas.checkout(app, APPS / "tested")
    first = remote_lines(paas.push(checkout).stderr)
    assert "-----> Running tests: npm test" in first
    assert any(line.startswith("-----> Tests passed in ") and line.endswith("s") for line in first), first
    # The tests' own output is held while they pass: the pusher sees the steps.
    assert not any("the answer is a number" in line for line in first), first
    assert paas.get(app).body == "tested v1; ms: yes; is-number: no\n"
    release = newest(paas, app)
    assert release["tests"] == "passed" and isinstance(release["tests_seconds"], float)
    # The shipped image: the build's /app without the test stage's output or the devDependency.
    assert in_image(paas, app, 1, "ls /app; ls /app/node_modules") == \
        "app.test.js\nnode_modules\npackage-lock.json\npackage.json\nserver.js\nms\n"
    table = paas.run("releases", app).stdout.splitlines()
    assert "TESTS" in table[0].split() and "passed" in table[1].split()

    # Nothing new (an empty commit: a new sha, the same files): the test layer is reused, nothing runs again.
    commit(checkout, "nothing new")
    again = remote_lines(paas.push(checkout).stderr)
    assert "-----> Tests (cached)" in again and "-----> Running tests: npm test" not in again, again
    assert step_cached(paas.builder_log(app), TEST_STEP)
    assert newest(paas, app)["tests"] == "passed" and newest(paas, app)["tests_seconds"] is None
    assert "passed (cached)" in paas.run("releases:info", app, "2").stdout

    # A failing test: the push is rejected with the tests' output, the branch and the live release stay.
    live_sha = paas.repo_ref(app)
    (checkout / "app.test.js").write_text(FAILING_TEST)
    (checkout / "server.js").write_text((checkout / "server.js").read_text().replace("v1", "v2"))
    commit(checkout, "a failing test")
    failed = paas.push(checkout, expect_ok=False)
    lines = remote_lines(failed.stderr)
    assert "!     tests failed: npm test" in lines, lines
    assert any("the answer should have been 41" in line and line.startswith("!     ") for line in lines), lines
    assert lines[-1] == "!     push rejected; the previous release keeps serving"
    assert paas.repo_ref(app) == live_sha
    assert paas.get(app).body == "tested v1; ms: yes; is-number: no\n"
    rejected = newest(paas, app)
    assert (rejected["status"], rejected["tests"]) == ("failed", "failed")
    assert "the answer should have been 41" in paas.run("releases:info", app, str(rejected["number"])).stdout

    # The same commit with `-o skip-tests`: it ships, and its release says the tests were skipped.
    skipped = remote_lines(paas.push(checkout, extra=("-o", "skip-tests")).stderr)
    assert "-----> Tests skipped: -o skip-tests" in skipped and "-----> Running tests: npm test" not in skipped
    assert paas.get(app).body == "tested v2; ms: yes; is-number: no\n"
    assert newest(paas, app)["tests"] == "skipped"


def test_a_source_change_reruns_the_tests_on_the_cached_install(paas: Paas, builder: str) -> None:
    app = paas.new_app("tested")
    checkout = paas.checkout(app, APPS / "tested")
    paas.push(checkout)
    (checkout / "server.js").write_text((checkout / "server.js").read_text().replace("v1", "v2"))
    commit(checkout, "a source change")
    lines = remote_lines(paas.push(checkout).stderr)
    assert "-----> Running tests: npm test" in lines and "-----> Tests (cached)" not in lines, lines
    log = paas.builder_log(app)
    install = "RUN npm ci --no-audit --no-fund"
    assert step_cached(log, install), log
    # The prune is off the source's path: an unchanged install keeps it cached too.
    assert step_cached(log, "RUN npm prune --omit=dev --no-audit --no-fund"), log
    assert paas.get(app).body == "tested v2; ms: yes; is-number: no\n"

    # -o no-cache: every step runs again, the install included.
    commit(checkout, "rebuild from scratch")
    cold = remote_lines(paas.push(checkout, extra=("-o", "no-cache")).stderr)
    assert "-----> Building without the layer cache (-o no-cache)" in cold
    assert "-----> Running tests: npm test" in cold
    assert not step_cached(paas.builder_log(app), install)


def test_the_tests_setting(paas: Paas) -> None:
    app = paas.new_app("tested")
    checkout = paas.checkout(app, APPS / "tested")
    (checkout / "app.test.js").write_text(FAILING_TEST)
    commit(checkout, "a failing test")
    assert "invalid value" in paas.run("settings:set", app, "tests", "sometimes", check=False).stderr
    paas.run("settings:set", app, "tests", "off")
    lines = remote_lines(paas.push(checkout).stderr)
    assert "-----> Tests skipped: the tests setting is off" in lines
    assert newest(paas, app)["tests"] == "skipped"

    # review-only: only review apps (`app--branch`) run them; this app is not one.
    paas.run("settings:set", app, "tests", "review-only")
    commit(checkout, "again")
    assert "-----> Tests skipped: the tests setting is review-only" in remote_lines(paas.push(checkout).stderr)
    git(checkout, "checkout", "-q", "-b", "feature")  # its review app runs them: the failing test rejects it
    commit(checkout, "on a branch")
    refused = remote_lines(paas.push(checkout, "feature", expect_ok=False).stderr)
    assert "!     tests failed: npm test" in refused, refused
    assert paas.get("", host=f"feature.{app}.paas.test").status == 404  # and leaves no review app


def test_deployers_may_skip_tests_only_where_an_admin_allowed_it(paas: Paas, sshd: Sshd) -> None:
    paas.run("ssh-keys:add", "ci", "--role", "deployer", input=sshd.key("ci").with_suffix(".pub").read_text())
    paas.run("ssh-keys:add", "alice", input=sshd.key("alice").with_suffix(".pub").read_text())
    app = paas.new_app("tested")
    paas.run("ssh-keys:grant", "ci", app)
    checkout = paas.checkout(app, APPS / "tested")
    git(checkout, "remote", "set-url", "paas", sshd.url(app))

    def push(user: str, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "push", *options, "paas", "master"], cwd=checkout,
                              env=sshd.git_env(paas.env, user), capture_output=True, text=True, timeout=600)

    for option in ("skip-tests", "no-cache"):
        refused = push("ci", "-o", option)
        assert refused.returncode != 0
        assert f"!     push option {option} is for admins on {app}" in "\n".join(remote_lines(refused.stderr))
        assert paas.repo_ref(app) == "" and paas.get(app).status != 200
    allowed = push("ci")  # without options a deployer pushes as before, tests and all
    assert allowed.returncode == 0 and "-----> Tests passed in " in allowed.stderr

    paas.run("settings:set", app, "deployer-push-options", "skip-tests")
    bad = paas.run("settings:set", app, "deployer-push-options", "skip-tests,rm", check=False)
    assert "invalid value" in bad.stderr
    commit(checkout, "a second push")
    skipped = push("ci", "-o", "skip-tests")
    assert skipped.returncode == 0 and "-----> Tests skipped: -o skip-tests" in skipped.stderr, skipped.stderr
    commit(checkout, "a third push")
    assert push("ci", "-o", "no-cache").returncode != 0  # still only the one allowed
    commit(checkout, "an admin's push")
    assert push("alice", "-o", "no-cache").returncode == 0  # admins always may
    assert newest(paas, app)["pusher"] == "alice"


def test_the_example_app_without_tests_builds_as_before(paas: Paas, tmp_path: Path) -> None:
    app, _ = paas.deploy()
    assert newest(paas, app)["tests"] == ""
    assert "Running tests" not in paas.run("releases:info", app, "1").stdout
