"""Issue 19, attack 8: a deployer's branch push made a review app with its parent's whole config, and its release
command (`release: env`) printed the parent's SECRET and REDIS_URL with its password, values that `config` hides
from the same key. Through the real sshd and hook, with a real Redis link: a review app a deployer pushed gets
exactly what that key may read (the non-secret values), neither the secrets nor the link's URL nor the service on
its network, and an admin's push keeps today's behaviour until a deployer pushes the branch."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from tests.helpers.host import Paas, commit, docker, git
from tests.helpers.ssh_client import add_key, checkout_for, push
from tests.helpers.sshd import Sshd

SECRET = "top-secret-value-1"
SERVER = """const http = require("http");
http.createServer((req, res) => res.end(Object.keys(process.env).sort().map(k => k + "=" + process.env[k]).join("\\n")
  + "\\n")).listen(process.env.PORT || 5000);
"""


@pytest.fixture(scope="module", autouse=True)
def _redis_image(engine_ready: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Redis service image, built once for the run when the host lacks it (kept on the host after)."""
    from minipaas.build import hostimages
    from minipaas.state.settings import load

    settings = load({"MINIPAAS_HOME": str(tmp_path_factory.mktemp("images-home"))})
    hostimages.ensure(settings, "redis", lambda _line: None)


def env_of(paas: Paas, host: str) -> dict[str, str]:
    response = paas.get("", host=host)
    assert response.status == 200, response
    return dict(line.split("=", 1) for line in response.body.splitlines() if "=" in line)


def network_members(paas: Paas, app: str) -> list[str]:
    from minipaas.state.settings import load

    name = load(paas.env).app_network(app)
    return json.loads(docker("network", "inspect", name, "--format", "{{json .Containers}}")).values()


def on_network(paas: Paas, app: str, container_word: str) -> bool:
    return any(container_word in member["Name"] for member in network_members(paas, app))


def test_a_deployers_review_app_gets_only_what_that_key_may_read(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    add_key(paas, sshd, "alice")  # an admin
    app = paas.new_app("sec")
    paas.run("ssh-keys:grant", "ci", app)
    paas.run("config:set", app, "--secret", f"SECRET={SECRET}", "--no-restart")
    paas.run("config:set", app, "GREETING=hello-public", "--no-restart")
    paas.run("redis:create", "cache")
    paas.run("redis:link", "cache", app)
    redis_url = paas.run("config:get", app, "REDIS_URL").stdout.strip()
    password = urlsplit(redis_url).password
    assert password and len(password) >= 16

    checkout = checkout_for(paas, sshd, app)
    (checkout / "server.js").write_text(SERVER)
    (checkout / "Procfile").write_text("web: node server.js\nrelease: env\n")
    commit(checkout, "prints its environment")
    push(paas, sshd, checkout, "alice")  # the admin deploys the app itself
    parent_env = env_of(paas, f"{app}.paas.test")
    assert parent_env["SECRET"] == SECRET and parent_env["REDIS_URL"] == redis_url  # the app keeps its config

    # What the deployer's key may read: the non-secret values; the secret ones and the link's URL are hidden.
    shown = json.loads(sshd.ssh("ci", "config", app, "--json").stdout)
    assert shown == {"GREETING": "hello-public", "REDIS_URL": "<hidden>", "SECRET": "<hidden>"}
    admin_view = paas.run("config", app).stdout
    assert re.search(rf"^SECRET: +{SECRET}  \(secret\)$", admin_view, re.M), admin_view
    assert re.search(r"^GREETING: +hello-public$", admin_view, re.M), admin_view
    assert "REDIS_URL:" in admin_view and admin_view.count("(secret)") == 2

    # The attack: a branch whose release command prints its environment, pushed with the deployer's key.
    git(checkout, "checkout", "-q", "-b", "feature")
    commit_file = checkout / "branch.txt"
    commit_file.write_text("feature\n")
    commit(checkout, "a branch")
    pushed = push(paas, sshd, checkout, "ci", ref="feature")
    output = pushed.stdout + pushed.stderr
    assert "Running the release command: env" in output and "GREETING=hello-public" in output, output
    assert SECRET not in output and password not in output and "REDIS_URL" not in output, output
    assert f"{app}--feature is a deployer's push: it gets no secret config and no service of {app}" in output
    review_env = env_of(paas, f"feature.{app}.paas.test")
    assert review_env["GREETING"] == "hello-public"
    assert "SECRET" not in review_env and "REDIS_URL" not in review_env
    assert password not in "".join(review_env.values())
    # What the key reads of the review app is exactly what the review app gets.
    review_shown = json.loads(sshd.ssh("ci", "config", f"{app}--feature", "--json").stdout)
    assert review_shown == {"GREETING": "hello-public"}
    assert {k: review_env[k] for k in review_shown} == review_shown
    assert not on_network(paas, f"{app}--feature", "redis")  # nor does it reach the parent's Redis
    assert "not given (secret; a deployer pushed this branch): REDIS_URL, SECRET" in \
        paas.run("config", f"{app}--feature").stdout
    # Its log keeps what the pusher saw: nothing secret there either.
    releases_info = sshd.ssh("ci", "releases:info", f"{app}--feature", "1").stdout
    assert "GREETING=hello-public" in releases_info and SECRET not in releases_info

    # An admin's push keeps today's behaviour: the review app gets the parent's whole config and its Redis...
    git(checkout, "checkout", "-q", "-b", "admin-branch", "master")
    commit_file.write_text("admin\n")
    commit(checkout, "an admin's branch")
    by_admin = push(paas, sshd, checkout, "alice", ref="admin-branch")
    assert f"SECRET={SECRET}" in by_admin.stderr, by_admin.stderr
    assert env_of(paas, f"admin-branch.{app}.paas.test")["REDIS_URL"] == f"{redis_url}/1"  # its own (review-apps-db)
    assert on_network(paas, f"{app}--admin-branch", "redis")
    # ...until a deployer pushes that branch: from then on, what the deployer may read, and no Redis.
    commit_file.write_text("the deployer's now\n")
    commit(checkout, "the deployer's commit")
    taken = push(paas, sshd, checkout, "ci", ref="admin-branch")
    assert SECRET not in taken.stderr and password not in taken.stderr, taken.stderr
    assert "is a deployer's push" in taken.stderr
    after = env_of(paas, f"admin-branch.{app}.paas.test")
    assert after["GREETING"] == "hello-public" and "SECRET" not in after and "REDIS_URL" not in after
    assert not on_network(paas, f"{app}--admin-branch", "redis")
    paas.run("ps:restart", f"{app}--admin-branch")  # any later release of it too
    assert "SECRET" not in env_of(paas, f"admin-branch.{app}.paas.test")
    assert env_of(paas, f"{app}.paas.test")["SECRET"] == SECRET  # the parent keeps its own


def test_a_link_url_stays_secret_and_a_rotated_secret_keeps_its_mark(paas: Paas) -> None:
    app = paas.new_app("mark")
    paas.run("redis:create", "marks")
    paas.run("redis:link", "marks", app)
    refused = paas.run("config:set", app, "--public", "REDIS_URL=redis://x", check=False)
    assert refused.returncode == 1 and refused.stderr.strip() == \
        "error: REDIS_URL is set by a service link, whose URL is always secret"
    paas.run("config:set", app, "--secret", "TOKEN=one", "--no-restart")
    paas.run("config:set", app, "TOKEN=two", "--no-restart")  # rotated without the flag: still secret
    assert re.search(r"^TOKEN: +two  \(secret\)$", paas.run("config", app).stdout, re.M)
    paas.run("config:set", app, "--public", "TOKEN=two", "--no-restart")
    assert re.search(r"^TOKEN: +two$", paas.run("config", app).stdout, re.M)
    both = paas.run("config:set", app, "--secret", "--public", "X=1", check=False)
    assert both.returncode == 1 and both.stderr == "error: give --secret or --public, not both\n"
