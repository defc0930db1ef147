"""Review apps through real pushes: a branch live at its own URL, replaced without a failed request,
gone without a trace when the branch is deleted; hostile branch names; review-apps-max."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

from tests.helpers.host import APPS, Paas, commit, docker, git
from tests.helpers.load import stop_wrk

DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def listed(paas: Paas) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in json.loads(paas.run("apps:list", "--json").stdout)}


def image_tags(paas: Paas, app: str) -> list[str]:
    return docker("images", "--format", "{{.Tag}}", paas.repository(app)).split()


def wait_for_body(paas: Paas, host: str, text: str, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    body = ""
    while time.monotonic() < end:
        response = paas.get("", host=host)
        body = response.body
        if response.status == 200 and body == text:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{host} answered {body!r}, not {text!r}")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_branch_is_live_at_its_own_url_replaced_without_a_failed_request_and_gone_with_the_branch(
        paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("config:set", app, "SHARED=parent", "OWN=parent")
    server = checkout / "server.js"
    git(checkout, "checkout", "-q", "-b", "feature/Login")
    server.write_text(server.read_text().replace("from my own Dockerfile", "from the login branch"))
    sha = commit(checkout, "login page")
    pushed = paas.push(checkout, "feature/Login").stderr
    review, host = f"{app}--feature-login", f"feature-login.{app}.paas.test"
    assert f"-----> Review app {review} for branch feature/Login" in pushed, pushed
    assert f"=====> {review} release 1 is live at http://{host}:{paas.port}/" in pushed, pushed
    assert paas.get("", host=host).body == "from the login branch\n"
    assert paas.get(app).body == "from my own Dockerfile\n"  # the app keeps its own
    assert f"feature-login-{sha[:7]}" in image_tags(paas, app)  # tagged with the short sha

    # Its config: the parent's values, its own overrides winning.
    paas.run("config:set", review, "OWN=review")
    env = paas.run("run", review, "--", "sh", "-c", "echo $SHARED $OWN").stdout
    assert env.strip().splitlines()[-1] == "parent review"
    assert paas.run("config:get", app, "OWN").stdout.strip() == "parent"
    rows = listed(paas)
    assert rows[review]["parent"] == app and rows[review]["branch"] == "feature/Login"
    assert rows[review]["url"] == f"http://{host}:{paas.port}/"
    serving = [r["release"] for r in json.loads(paas.run("ps", review, "--json").stdout) if r["health"] == "serving"]
    assert serving == [2]  # the config change's release

    # A second push of the branch, under load on the review URL: not one request fails.
    paas.run("settings:set", review, "drain-seconds", "1")
    load = subprocess.Popen(["wrk", "-d", "120s", "-t2", "-c8", "--timeout", "10s", "-H", f"Host: {host}",
                             f"http://127.0.0.1:{paas.port}/"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        server.write_text(server.read_text().replace("login branch", "login branch, again"))
        second = commit(checkout, "again")
        paas.push(checkout, "feature/Login")
        wait_for_body(paas, host, "from the login branch, again\n")
    finally:
        counts = stop_wrk(load)
    assert counts["requests"] > 100 and counts["socket_errors"] == 0 and counts["non_2xx"] == 0, counts["output"]
    history = json.loads(paas.run("releases", review, "--json").stdout)
    newest = [(r["number"], r["kind"], r["status"]) for r in history][:2]
    assert newest == [(3, "build", "live"), (2, "config", "superseded")]

    # Deleting the branch removes every trace: containers, images, vhost, network, config, its row.
    deleted = paas.push(checkout, ":feature/Login").stderr
    assert f"feature/Login deleted: review app {review} removed" in deleted, deleted
    assert not [c for c in paas.container_names() if review in c]
    assert not [t for t in image_tags(paas, app) if t.startswith("feature-login-")]
    assert sha[:7] not in " ".join(image_tags(paas, app)) and second[:7] not in " ".join(image_tags(paas, app))
    assert not (paas.home / "nginx" / "sites" / f"{review}.conf").exists()
    assert not docker("network", "ls", "-q", "--filter", f"name={paas.instance}-{review}").split()
    assert review not in listed(paas)
    assert paas.get("", host=host).status == 404
    assert paas.get(app).body == "from my own Dockerfile\n"
    assert paas.run("config", review, check=False).returncode != 0


def test_hostile_branch_names_get_valid_distinct_hosts_as_static_review_sites(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "static-site", prefix="site")
    index = checkout / "index.html"
    original = paas.get(app).body
    branches = ["feature/login", "Feature/Login", "release/1.2.3", "fix-ü-ß", "x" * 200, "日本語", "Ünïcode", "a.b_c+d"]
    hosts = {}
    for branch in branches:
        git(checkout, "checkout", "-q", "-B", branch, "master")
        index.write_text(f"<p>branch {branch}</p>\n")
        commit(checkout, f"on {branch}")
        output = paas.push(checkout, branch).stderr
        found = re.search(rf"=====> ({re.escape(app)}--[a-z0-9-]+) release 1 is live at http://([^/:]+):\d+/", output)
        assert found, output
        review, host = found.groups()
        slug = review.removeprefix(f"{app}--")
        assert DNS_LABEL.fullmatch(slug) and host == f"{slug}.{app}.paas.test", (branch, review, host)
        hosts[branch] = host
    assert len(set(hosts.values())) == len(branches)  # names that slug alike get distinct slugs
    assert hosts["feature/login"] == f"feature-login.{app}.paas.test"
    assert re.fullmatch(rf"feature-login-[0-9a-f]{{6}}\.{app}\.paas\.test", hosts["Feature/Login"])
    assert len(hosts["x" * 200].split(".")[0]) == 63
    for branch, host in hosts.items():
        response = paas.get("", host=host)
        assert response.status == 200 and f"branch {branch}" in response.body, (branch, response)
    assert paas.get(app).body == original  # the app keeps its own
    assert not paas.containers()  # static review sites: no container
    git(checkout, "checkout", "-q", "master")
    for branch in branches:
        paas.push(checkout, f":{branch}")
    assert [name for name in listed(paas)] == [app]
    assert sorted(p.name for p in (paas.home / "nginx" / "sites").glob(f"{app}*")) == [f"{app}.conf"]


def test_beyond_review_apps_max_the_least_recently_pushed_is_stopped_until_its_next_push(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "review-apps-max", "1")
    for branch in ("one", "two"):
        git(checkout, "checkout", "-q", "-B", branch, "master")
        commit(checkout, branch)
        output = paas.push(checkout, branch).stderr
    assert f"-----> Stopped review app {app}--one (one): more than review-apps-max (1) run" in output, output
    assert paas.get("", host=f"one.{app}.paas.test").status == 503
    assert paas.get("", host=f"two.{app}.paas.test").status == 200
    git(checkout, "checkout", "-q", "one")
    commit(checkout, "one again")
    again = paas.push(checkout, "one").stderr
    assert f"Stopped review app {app}--two (two)" in again, again
    assert paas.get("", host=f"one.{app}.paas.test").status == 200
    # The parent's destroy takes its review apps along.
    paas.run("apps:destroy", app, "--force")
    assert not paas.containers() and listed(paas) == {}
    assert not image_tags(paas, app)


def test_review_app_names_are_kept_for_review_apps(paas: Paas) -> None:
    app = paas.new_app()
    refused = paas.run("apps:create", f"{app}--x", check=False)
    assert refused.returncode != 0 and "`--` is kept for review apps" in refused.stderr


def test_a_rejected_first_push_of_a_branch_leaves_no_review_app(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    git(checkout, "checkout", "-q", "-b", "broken")
    (checkout / "Dockerfile").write_text("FROM minipaas/node:26\nRUN exit 3\n")
    commit(checkout, "broken build")
    rejected = paas.push(checkout, "broken", expect_ok=False).stderr
    assert "push rejected" in rejected, rejected
    assert list(listed(paas)) == [app] and not paas.repo_ref(app, "refs/heads/broken")
    assert not (paas.home / "nginx" / "sites" / f"{app}--broken.conf").exists()
    assert [c for c in paas.container_names() if "--broken" in c] == []
    assert paas.get("", host=f"broken.{app}.paas.test").status == 404
