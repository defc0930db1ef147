"""The core pipeline through real git pushes: build, health check, switch, record, retire."""

from __future__ import annotations

import json
import subprocess
import time

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker, git, step_cached


def releases(paas: Paas, app: str) -> list[dict]:
    return json.loads(paas.run("releases", app, "--json").stdout)


def test_first_deploy_serves_the_app_and_records_the_release(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    resp = paas.get(app)
    assert resp.status == 200
    assert "Hello from minipaas" in resp.body
    echoed = paas.get(app, "/echo", method="POST", body="posted body")
    assert echoed.body == "posted body"

    [rel] = releases(paas, app)
    sha = git(checkout, "rev-parse", "HEAD").strip()
    assert (rel["number"], rel["status"], rel["sha"], rel["buildpack"]) == (1, "live", sha, "node")
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", paas.image(app, 1)))
    assert labels["minipaas.app"] == app and labels["minipaas.release"] == "1" and labels["minipaas.sha"] == sha
    # The final image runs as the node user in production mode, without the build CA.
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", paas.image(app, 1)))
    assert config["User"] == "node"
    assert "NODE_ENV=production" in config["Env"]
    assert not any("CA" in e for e in config["Env"])
    files = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, 1), "-c",
                            "ls /usr/local/share; ls /app"], capture_output=True, text=True).stdout
    assert "minipaas-build-ca.pem" not in files and "node_modules" in files
    # The container is named after its release and a crash restarts it, ten times at most (as dokku does).
    inspect = json.loads(docker("inspect", paas.container(f"{app}.web.1")))[0]
    assert inspect["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 10}
    assert inspect["HostConfig"]["Memory"] > 0


def test_redeploy_reuses_the_dependency_layer_and_retires_the_old_container(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    paas.run("settings:set", app, "drain-seconds", "1")
    server = checkout / "server.js"
    server.write_text(server.read_text().replace("from minipaas", "from release two"))
    commit(checkout, "source-only change")
    paas.push(checkout)
    assert "from release two" in paas.get(app).body
    # The npm install step came from the cache: a source-only change reuses the dependency layer.
    log = paas.builder_log(app)
    assert step_cached(log, "RUN npm ci"), log
    assert [r["status"] for r in releases(paas, app)] == ["live", "superseded"]
    deadline = time.monotonic() + 30
    while len(paas.containers()) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    names = docker("ps", "-a", "--filter", f"label=minipaas={paas.home}", "--format", "{{.Names}}").split()
    assert names == [paas.container(f"{app}.web.2")]


def test_pushing_the_live_commit_again_is_a_no_op(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    result = paas.push(checkout, "master:main")  # same commit, the other default deploy branch
    assert "already live" in result.stderr
    assert len(releases(paas, app)) == 1


def test_failed_build_rejects_the_push_and_keeps_the_old_release(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    live_sha = paas.repo_ref(app)
    package = checkout / "package.json"
    data = json.loads(package.read_text())
    data["dependencies"]["minipaas-no-such-package-anywhere"] = "1.0.0"
    package.write_text(json.dumps(data))
    (checkout / "package-lock.json").unlink()
    commit(checkout, "broken dependency")
    result = paas.push(checkout, expect_ok=False)
    assert "build failed" in result.stderr
    assert "push rejected" in result.stderr
    assert paas.repo_ref(app) == live_sha
    assert paas.get(app).status == 200
    assert [r["status"] for r in releases(paas, app)] == ["failed", "live"]
    assert len(paas.containers()) == 1


def test_crashing_app_is_rejected_with_its_log_and_the_old_release_serves(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    before = paas.get(app).body
    crashing = paas.checkout(app + "-x", APPS / "crashing")
    git(crashing, "remote", "set-url", "paas", str(paas.home / "repos" / f"{app}.git"))
    result = paas.push(crashing, extra=("--force",), expect_ok=False)
    assert "exited with code 3" in result.stderr
    assert "boom (the crashing fixture)" in result.stderr
    assert paas.get(app).body == before
    assert len(paas.containers()) == 1
    assert releases(paas, app)[0]["status"] == "failed"


def test_app_with_its_own_dockerfile(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    assert paas.get(app).body == "from my own Dockerfile\n"
    assert releases(paas, app)[0]["buildpack"] == "dockerfile"


def test_with_review_apps_off_other_branches_are_only_accepted_and_deploy_branch_deletion_is_refused(
        paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    paas.run("settings:set", app, "review-apps", "off")
    git(checkout, "checkout", "-q", "-b", "feature")
    commit(checkout, "feature work")
    result = paas.push(checkout, "feature")
    assert "feature accepted, not deployed (review-apps is off" in result.stderr
    assert len(releases(paas, app)) == 1
    assert [a["name"] for a in json.loads(paas.run("apps:list", "--json").stdout)] == [app]
    refused = paas.push(checkout, ":master", expect_ok=False)
    assert "deleting it is refused" in refused.stderr
    assert paas.repo_ref(app)


def test_config_values_round_trip_exactly_into_the_container(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    values = {
        "SPACES": "a value with  spaces ",
        "QUOTES": "it's \"quoted\" `tick` $(not run)",
        "EQUALS": "a=b=c",
        "NEWLINES": "line one\nline two\n",
        "UNICODE": "héllo wörld ✓ 日本",
    }
    paas.run("config:set", app, *(f"{k}={v}" for k, v in values.items()))
    stored = json.loads(paas.run("config", app, "--json").stdout)
    assert stored == values
    for key, value in values.items():
        assert paas.run("config:get", app, key).stdout == value + "\n"
        assert paas.get(app, f"/env/{key}").body == value
    assert releases(paas, app)[0]["kind"] == "config"
    paas.run("config:unset", app, "SPACES")
    assert paas.get(app, "/env/SPACES").status == 404


def test_a_second_deploy_waits_for_the_lock(paas: Paas) -> None:
    import fcntl

    app, checkout = paas.deploy(EXAMPLE)
    commit(checkout, "another release")
    with open(paas.home / "locks" / f"{app}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pusher = subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env=paas.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2)
        assert pusher.poll() is None  # held up by the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
    output, _ = pusher.communicate(timeout=300)
    assert pusher.returncode == 0, output
    assert "Waiting for another deploy" in output
    assert releases(paas, app)[0]["status"] == "live"


def test_destroy_leaves_nothing_behind(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    refused = paas.run("apps:destroy", app, check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    paas.run("apps:destroy", app, "--force")
    assert paas.containers() == []
    assert docker("images", "-q", paas.repository(app)) == ""
    assert not (paas.home / "repos" / f"{app}.git").exists()
    assert not (paas.home / "nginx" / "sites" / f"{app}.conf").exists()
    assert not (paas.home / "nginx" / "upstreams" / f"{app}.conf").exists()
    assert paas.get(app).status == 404
    assert json.loads(paas.run("apps:list", "--json").stdout) == []


def test_dockerfile_app_listening_on_its_exposed_port(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "exposed")
    assert paas.get(app).body == "on port 3000\n"


def test_build_script_runs_and_dev_dependencies_are_dropped(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "with-build")
    assert paas.get(app).body == "built with a dev dependency: true\n"
    modules = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, 1), "-c",
                              "ls node_modules"], capture_output=True, text=True).stdout
    assert "is-number" not in modules


def test_a_node_version_that_does_not_exist_is_refused_in_one_line(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, EXAMPLE)
    package = checkout / "package.json"
    data = json.loads(package.read_text())
    data["engines"]["node"] = "^99.0.0"
    package.write_text(json.dumps(data))
    commit(checkout, "wants node 99")
    result = paas.push(checkout, expect_ok=False)
    assert "no Node.js release satisfies engines.node '^99.0.0'; the newest ones are 26." in result.stderr
    assert paas.containers() == []
