"""Issue 19, attack 10: one deployer push put 58 containers live (3 process types x 19 in app.json's formation), and
12 branches made 12 review apps, each keeping a /26 of the shared pool. Through the real sshd and hook: containers
per app stop at `max-containers`, review apps at `review-apps-limit` (the refusal is one line, before anything is
made), both raised by an admin only; and an app holds a network only while it has containers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.helpers.host import APPS, Paas, commit, git
from tests.helpers.pushes import pushed_error_lines
from tests.helpers.ssh_client import add_key, assert_refused, checkout_for, push
from tests.helpers.sshd import Sshd


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def network(paas: Paas, app: str) -> str:
    from minipaas.state.settings import load

    return load(paas.env).app_network(app)


def has_network(paas: Paas, app: str) -> bool:
    return subprocess.run(["docker", "network", "inspect", network(paas, app)], capture_output=True).returncode == 0


def running(paas: Paas, app: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in json.loads(paas.run("ps", app, "--json").stdout):
        if row["state"] == "running" and row["health"] != "retiring":
            counts[row["process"]] = counts.get(row["process"], 0) + 1
    return counts


def formation(checkout, **counts: int) -> None:
    (checkout / "app.json").write_text(json.dumps({"formation": {t: {"quantity": n} for t, n in counts.items()}}))
    commit(checkout, f"formation {counts}")


def test_a_deployer_cannot_pass_max_containers_and_an_admin_may_raise_it(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app("many")
    paas.run("ssh-keys:grant", "ci", app)
    checkout = checkout_for(paas, sshd, app, APPS / "procfile")
    (checkout / "Procfile").write_text("web: node web.js\nworker: node worker.js\nclock: node worker.js\n")
    formation(checkout, web=19, worker=19, clock=19)

    # The attack: 57 containers from one push.
    refused = push(paas, sshd, checkout, "ci", ok=False)
    assert pushed_error_lines(refused) == [
        f"!     {app} would run 57 containers (web=19 clock=19 worker=19), more than its max-containers (20); "
        "it can be raised to 28 at most"], refused.stderr
    assert "Building" not in refused.stderr and "Starting" not in refused.stderr  # refused before the build
    assert paas.containers() == [] and not has_network(paas, app)
    assert json.loads(paas.run("apps:list", "--json").stdout)[0]["release"] is None
    # The deployer may neither scale nor raise the limit.
    assert_refused(sshd.ssh("ci", "settings:set", app, "max-containers", "28"), "may not run settings:set")
    assert_refused(sshd.ssh("ci", "ps:scale", app, "web=19"), "may not run ps:scale")

    # Within the limit the same app deploys.
    formation(checkout, web=1, worker=1, clock=1)
    push(paas, sshd, checkout, "ci")
    assert running(paas, app) == {"web": 1, "worker": 1, "clock": 1}
    # ps:scale counts the types together, whoever scales: an admin beyond the limit is told how to raise it.
    paas.run("settings:set", app, "max-containers", "4")
    beyond = paas.run("ps:scale", app, "web=2", "worker=2", check=False)
    assert beyond.returncode == 1 and beyond.stderr == (
        f"error: {app} would run 5 containers (web=2 clock=1 worker=2), more than its max-containers (4); "
        f"an admin may raise it: minipaas settings:set {app} max-containers 5\n")
    assert running(paas, app) == {"web": 1, "worker": 1, "clock": 1}  # nothing changed
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("ps:scale", app, "web=2", "clock=0")
    wait_for("web=2 worker=1", lambda: running(paas, app) == {"web": 2, "worker": 1})
    paas.run("settings:set", app, "max-containers", "5")  # an admin raises it
    paas.run("ps:scale", app, "web=2", "worker=2", "clock=1")
    wait_for("5 containers", lambda: running(paas, app) == {"web": 2, "worker": 2, "clock": 1})
    # A later push of a bigger formation than the stored counts allow is refused too (ps:scale's counts win).
    formation(checkout, web=1, worker=1, clock=1)
    paas.run("settings:set", app, "max-containers", "4")
    again = push(paas, sshd, checkout, "ci", ok=False)
    assert "more than its max-containers (4)" in again.stderr, again.stderr
    assert paas.get(app).status == 200  # the previous release keeps serving


def test_review_apps_stop_at_review_apps_limit_and_an_admin_may_raise_it(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app("branches")
    paas.run("ssh-keys:grant", "ci", app)
    checkout = checkout_for(paas, sshd, app, APPS / "static-site")
    push(paas, sshd, checkout, "ci")
    branches = [f"b{n}" for n in range(1, 21)]
    for branch in [*branches, "b21"]:
        git(checkout, "branch", branch, "master")
    made = push(paas, sshd, checkout, "ci", ref=branches[0])
    rest = subprocess.run(["git", "push", "paas", *branches[1:]], cwd=checkout, env=sshd.git_env(paas.env, "ci"),
                          capture_output=True, text=True, timeout=600)
    assert rest.returncode == 0, rest.stderr
    # The 20th says, in one line, that the next one will be refused, and how the limit is raised.
    assert "review-apps-limit" not in made.stderr
    assert (f"{app} has 20 review apps, its review-apps-limit: another branch is refused until one is deleted or "
            f"an admin raises it (settings:set {app} review-apps-limit N)") in rest.stderr, rest.stderr
    reviews = sorted(a["name"] for a in json.loads(paas.run("apps:list", "--json").stdout) if a["name"] != app)
    assert len(reviews) == 20

    before = sorted(p.name for p in (paas.home / "nginx" / "sites").iterdir())
    refused = push(paas, sshd, checkout, "ci", ok=False, ref="b21")
    assert pushed_error_lines(refused) == [
        f"!     {app} has 20 review apps and review-apps-limit is 20: b21 gets none; delete a branch (git push paas "
        f":BRANCH), or an admin raises it: minipaas settings:set {app} review-apps-limit 21"], refused.stderr
    # Nothing left behind: no app, no vhost, no branch, no commit kept, no network.
    assert len(json.loads(paas.run("apps:list", "--json").stdout)) == 21
    assert sorted(p.name for p in (paas.home / "nginx" / "sites").iterdir()) == before
    assert paas.repo_ref(app, "refs/heads/b21") == ""
    assert not any(has_network(paas, name) for name in (app, f"{app}--b21", *reviews))  # static: no network at all
    assert_refused(sshd.ssh("ci", "settings:set", app, "review-apps-limit", "21"), "may not run settings:set")

    paas.run("settings:set", app, "review-apps-limit", "21")  # an admin raises it
    push(paas, sshd, checkout, "ci", ref="b21")
    assert paas.get("", host=f"b21.{app}.paas.test").status == 200
    # Counted whether running or stopped: a branch deleted gives its room back, nothing else does.
    git(checkout, "branch", "b22", "master")
    assert "b22 gets none" in push(paas, sshd, checkout, "ci", ok=False, ref="b22").stderr
    push(paas, sshd, checkout, "ci", ref=":b1")
    push(paas, sshd, checkout, "ci", ref="b22")


def test_an_app_holds_a_network_only_while_it_has_containers(paas: Paas) -> None:
    # A static site holds none, nor do its review sites.
    site, site_checkout = paas.deploy(APPS / "static-site", prefix="site")
    git(site_checkout, "checkout", "-q", "-b", "topic")
    commit(site_checkout, "topic")
    paas.push(site_checkout, "topic")
    assert not has_network(paas, site) and not has_network(paas, f"{site}--topic")
    # A first push that fails to build leaves none.
    broken = paas.new_app("broken")
    paas.push(paas.checkout(broken, APPS / "bad-build"), expect_ok=False)
    assert not has_network(paas, broken)
    # A container app holds one while its containers are there (stopped ones too)...
    app, checkout = paas.deploy(APPS / "dockerfile")
    assert has_network(paas, app)
    paas.run("ps:stop", app)
    assert has_network(paas, app)
    paas.run("ps:start", app)
    # ...and gives it back when its last container goes: here, it became a static site.
    paas.run("settings:set", app, "drain-seconds", "0")
    site_remote = paas.checkout(app + "-site", APPS / "static-site")
    subprocess.run(["git", "remote", "set-url", "paas", str(paas.home / "repos" / f"{app}.git")], cwd=site_remote,
                   check=True)
    paas.push(site_remote, extra=("--force",))
    wait_for("the old containers retired and the network gone", lambda: not has_network(paas, app))
    assert paas.get(app).status == 200
    # A container app again: a network again, and it goes with the app.
    paas.push(checkout, extra=("--force",))
    assert has_network(paas, app) and paas.get(app).body == "from my own Dockerfile\n"
    paas.run("apps:destroy", app, "--force")
    assert not has_network(paas, app)


@pytest.fixture
def redis_image(engine_ready: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    from minipaas.build import hostimages
    from minipaas.state.settings import load

    settings = load({"MINIPAAS_HOME": str(tmp_path_factory.mktemp("images-home"))})
    hostimages.ensure(settings, "redis", lambda _line: None)


def test_a_link_makes_no_network_for_an_app_not_deployed_yet(paas: Paas, redis_image: None) -> None:
    app = paas.new_app("linked")
    paas.run("redis:create", "kv")
    paas.run("redis:link", "kv", app)
    assert not has_network(paas, app)
    checkout = paas.checkout(app, APPS / "dockerfile")
    paas.push(checkout)  # its network is made now, with the service on it
    members = json.loads(subprocess.run(["docker", "network", "inspect", network(paas, app), "--format",
                                         "{{json .Containers}}"], capture_output=True, text=True,
                                        check=True).stdout).values()
    assert any("redis" in member["Name"] for member in members), members
    paas.run("ps:scale", app, "web=0")
    wait_for("the last container retired and the network gone", lambda: not has_network(paas, app))
    still = subprocess.run(["docker", "ps", "--filter", f"label=minipaas={paas.home}", "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert [name for name in still if "redis" in name], still  # the service runs on, off the network
    paas.run("ps:scale", app, "web=1")
    assert has_network(paas, app) and paas.get(app).status == 200
