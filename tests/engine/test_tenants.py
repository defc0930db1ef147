"""Tenants stay in their lane: a deployer's build cannot read other apps' images, grants end with their
app, and two minipaas instances on one Docker engine never touch each other's containers, images or keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker, paas_host
from tests.helpers.pushes import image_exists, pushed_error_lines
from tests.helpers.ssh_client import add_key, assert_refused, checkout_for, push
from tests.helpers.sshd import Sshd

LEAKS = {
    "copy-from": "FROM minipaas/node:26\nCOPY --from={victim} /srv /leak\nCMD [\"ls\", \"/leak\"]\n",
    "from": "FROM {victim}\n",
    "from-arg": "ARG BASE={victim}\nFROM $BASE\n",
    "mount-from": "FROM minipaas/node:26\nRUN --mount=type=bind,from={victim},target=/v cp -r /v /leak\n",
    "syntax": "# syntax={victim}\nFROM minipaas/node:26\n",
}


@pytest.mark.parametrize("how", sorted(LEAKS))
def test_a_deployers_build_cannot_read_another_apps_image(paas: Paas, sshd: Sshd, how: str) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    victim = paas.new_app("victim")
    paas.push(paas.checkout(victim, APPS / "dockerfile"))
    victim_image = paas.image(victim, 1)
    assert image_exists(victim_image)

    attacker = paas.new_app("attacker")
    paas.run("ssh-keys:grant", "ci", attacker)
    checkout = checkout_for(paas, sshd, attacker)
    (checkout / "Dockerfile").write_text(LEAKS[how].format(victim=victim_image))
    commit(checkout, f"leak {how}")
    result = push(paas, sshd, checkout, "ci", ok=False)

    errors = pushed_error_lines(result)
    assert len(errors) == 1 and "is not allowed" in errors[0], errors
    assert (victim_image in errors[0]) if how != "syntax" else "`# syntax=` is not allowed" in errors[0], errors
    assert paas.builder_log(attacker) == ""  # refused before the builder ran at all
    assert not image_exists(paas.image(attacker, 1))
    assert json.loads(paas.run("apps:list", "--json").stdout)[0]["release"] is None
    assert paas.get(victim).body == "from my own Dockerfile\n"


def test_images_an_admin_allowed_can_be_built_from(paas: Paas) -> None:
    app = paas.new_app()
    allowed = f"allowed-base-{app}:1"
    docker("tag", "minipaas/node:26", allowed)
    try:
        checkout = paas.checkout(app, APPS / "dockerfile")
        dockerfile = checkout / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text().replace("FROM minipaas/node:26", f"FROM {allowed}"))
        commit(checkout, "another base")
        refused = paas.push(checkout, expect_ok=False)
        assert f"FROM {allowed} is not allowed" in refused.stderr
        assert f"settings:set {app} build-images" in refused.stderr  # says how an admin allows it

        paas.run("settings:set", app, "build-images", f"allowed-base-{app}:*")
        paas.push(checkout)
        assert paas.get(app).body == "from my own Dockerfile\n"
        bad = paas.run("settings:set", app, "build-images", "a;b", check=False)
        assert bad.returncode == 1 and bad.stderr.startswith("error: invalid value 'a;b' for build-images")
    finally:
        subprocess.run(["docker", "rmi", allowed], capture_output=True)


def test_grants_end_with_their_app(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app("granted")
    paas.run("ssh-keys:grant", "ci", app)
    assert json.loads(paas.run("ssh-keys:list", "--json").stdout)[0]["apps"] == [app]

    destroyed = paas.run("apps:destroy", app, "--force")
    assert "removed the grants of ci" in destroyed.stdout
    assert json.loads(paas.run("ssh-keys:list", "--json").stdout)[0]["apps"] == []
    audit = json.loads(paas.run("events", app, "--json").stdout)
    assert any(e["outcome"] == "grants removed: ci" and e["command"] == f"apps:destroy {app}" for e in audit)

    # A new app under the old name is not open to the old grant.
    paas.run("apps:create", app)
    checkout = checkout_for(paas, sshd, app)
    assert_refused(push(paas, sshd, checkout, "ci", ok=False), f"may not push to {app}")
    assert_refused(sshd.ssh("ci", "releases", app), f"no access to app {app}")


def test_two_instances_on_one_engine_keep_to_their_own(paas: Paas, tmp_path: Path) -> None:
    keys_file = tmp_path / "authorized_keys"
    keys_file.write_text("# a line the host's administrator wrote\n")
    paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(keys_file)
    paas.deploy(EXAMPLE, prefix="hello")  # some other app on the first instance
    app = "hello"
    paas.run("apps:create", app)
    paas.push(paas.checkout(app, EXAMPLE))
    first_container = docker("inspect", "--format", "{{.Id}}", paas.container(f"{app}.web.1")).strip()

    with paas_host(tmp_path / "second", MINIPAAS_AUTHORIZED_KEYS=str(keys_file)) as other:
        assert other.instance != paas.instance
        other.run("apps:create", app)
        other.push(other.checkout(app, APPS / "dockerfile"))
        assert other.get(app).body == "from my own Dockerfile\n"
        assert "Hello" in paas.get(app).body  # each serves its own app of the same name
        assert image_exists(paas.image(app, 1)) and image_exists(other.image(app, 1))

        # ssh keys: each instance owns its block of the shared authorized_keys; the rest is kept.
        key_a, key_b = tmp_path / "a", tmp_path / "b"
        for key in (key_a, key_b):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        paas.run("ssh-keys:add", "alice", input=key_a.with_suffix(".pub").read_text())
        other.run("ssh-keys:add", "bob", input=key_b.with_suffix(".pub").read_text())
        text = keys_file.read_text()
        assert "minipaas:alice" in text and "minipaas:bob" in text
        assert text.startswith("# a line the host's administrator wrote\n")
        paas.run("ssh-keys:remove", "alice")
        text = keys_file.read_text()
        assert "minipaas:alice" not in text and "minipaas:bob" in text and "administrator wrote" in text

        other.run("apps:destroy", app, "--force")
        assert not image_exists(other.image(app, 1))
        assert image_exists(paas.image(app, 1))
        assert "Hello" in paas.get(app).body

    # A second instance given the first one's name on purpose: it refuses to touch what is not its own.
    with paas_host(tmp_path / "clash", MINIPAAS_INSTANCE=paas.instance) as clash:
        clash.run("apps:create", app)
        result = clash.push(clash.checkout(app, APPS / "dockerfile"), expect_ok=False)
        errors = pushed_error_lines(result)
        assert len(errors) == 1 and "is not this minipaas instance's" in errors[0], errors
        assert docker("inspect", "--format", "{{.Id}}", paas.container(f"{app}.web.1")).strip() == first_container
        assert docker("inspect", "--format", "{{index .Config.Labels \"minipaas\"}}",
                      paas.image(app, 1)).strip() == str(paas.home)
        assert "Hello" in paas.get(app).body


def _free_uid() -> int:
    import pwd

    taken = {p.pw_uid for p in pwd.getpwall()}
    return next(uid for uid in range(59001, 59999) if uid not in taken)


def _environ_as(account: str, pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", account, "--", "cat", f"/proc/{pid}/environ"],
                          capture_output=True, text=True)


def test_a_host_account_cannot_read_an_apps_environment(paas: Paas) -> None:
    import pwd

    uid = _free_uid()
    account = f"mpuid{uid}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-u", str(uid), account],
                   check=True)
    try:
        # A buildpack app runs as minipaas' own app user: no account of this host shares its uid.
        app = paas.new_app()
        first = paas.push(paas.checkout(app, EXAMPLE))
        assert "is live" in first.stderr and "runs as uid" not in first.stderr
        paas.run("config:set", app, "SECRET_TOKEN=s3cret")
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", paas.container(f"{app}.web.2")).strip())
        with open(f"/proc/{pid}/status") as status:
            assert next(line for line in status if line.startswith("Uid:")).split()[2] == "61000"
        denied = _environ_as(account, pid)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert "s3cret" not in denied.stdout

        # An image that runs as a host account's uid: that account could read the config, and the push says so.
        other = paas.new_app("uid")
        checkout = paas.checkout(other, APPS / "dockerfile")
        dockerfile = checkout / "Dockerfile"
        gid = pwd.getpwuid(uid).pw_gid
        dockerfile.write_text(dockerfile.read_text().replace("USER node", f"USER {uid}:{gid}"))
        commit(checkout, "run as a host account's uid")
        pushed = paas.push(checkout)
        assert f"runs as uid {uid}, which is this host's account {account}" in pushed.stderr
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", paas.container(f"{other}.web.1")).strip())
        assert _environ_as(account, pid).returncode == 0  # the threat the warning is about is real
    finally:
        subprocess.run(["userdel", account], capture_output=True)
